/**
 * Records (`docs/records.md`): JSON documents with a version, read, written and watched.
 *
 * A `RecordWatch` follows one record and always holds its current value: it applies a `patch`
 * only to the version it follows (same epoch, version + 1) and reads the record again by itself
 * whenever it cannot — a change it missed, a reconnect (after which it also subscribes again).
 * It never applies a patch to the wrong version.
 */
import { Emitter } from "./emitter.js";
import { PlexusError } from "./errors.js";
/** A watched record: `value` and `version` are current; `change` events follow every version. */
export class RecordWatch extends Emitter {
    id;
    mode;
    /** Resolves with the record once subscribed. */
    ready;
    #state;
    #ops;
    #offs = [];
    #resyncs = 0;
    #closed = false;
    #syncing = false;
    constructor(ops, id, mode) {
        super();
        this.id = id;
        this.mode = mode;
        this.#ops = ops;
        this.#state = { id, value: null, version: 0, epoch: "" };
        // Listening before subscribing: no change after the subscribe is missed.
        this.#offs.push(ops.onRecord((c) => this.#onChange(c)));
        this.#offs.push(ops.onReconnected(() => void this.#resync(true)));
        this.ready = ops.subscribeRecord(id, mode).then((s) => {
            this.#take(s);
            return this.#state;
        });
    }
    get value() {
        return this.#state.value;
    }
    get version() {
        return this.#state.version;
    }
    get state() {
        return { ...this.#state };
    }
    /** How many times the watch read the record again. */
    get resyncs() {
        return this.#resyncs;
    }
    /** Ends the watch and its subscription. */
    async close() {
        if (this.#closed)
            return;
        this.#closed = true;
        for (const off of this.#offs)
            off();
        await this.#ops.unsubscribeRecord(this.id).catch(() => { });
    }
    #take(s) {
        // A read may be older than changes applied meanwhile: keep the newest.
        if (s.epoch !== this.#state.epoch || s.version >= this.#state.version)
            this.#state = { ...s, id: this.id };
    }
    #onChange(c) {
        if (this.#closed || c.id !== this.id)
            return;
        const s = this.#state;
        const sameEpoch = c.epoch === s.epoch;
        if (sameEpoch && c.version <= s.version)
            return;
        if (c.deleted) {
            this.#state = { id: this.id, value: null, version: c.version, epoch: c.epoch };
        }
        else if (c.value !== undefined) {
            this.#state = { id: this.id, value: c.value, version: c.version, epoch: c.epoch };
        }
        else if (c.patch !== undefined && sameEpoch && c.version === s.version + 1) {
            let value;
            try {
                value = applyPatch(s.value, c.patch);
            }
            catch {
                void this.#resync(false);
                return;
            }
            this.#state = { id: this.id, value, version: c.version, epoch: c.epoch };
        }
        else {
            void this.#resync(false);
            return;
        }
        this.emit("change", this.state);
    }
    async #resync(subscribe) {
        if (this.#closed || (this.#syncing && !subscribe))
            return;
        this.#syncing = true;
        this.#resyncs += 1;
        try {
            let fresh;
            if (subscribe) {
                try {
                    fresh = await this.#ops.subscribeRecord(this.id, this.mode);
                }
                catch (e) {
                    if (e instanceof PlexusError && e.code === 108)
                        fresh = await this.#ops.getRecord(this.id);
                    else
                        throw e;
                }
            }
            else {
                fresh = await this.#ops.getRecord(this.id);
            }
            this.#take(fresh);
            this.emit("change", this.state);
        }
        catch (e) {
            this.emit("error", e instanceof PlexusError ? e : new PlexusError("protocol", String(e)));
        }
        finally {
            this.#syncing = false;
        }
    }
}
/** Applies an RFC 6902 JSON Patch to a copy of `doc`; throws when an operation fails. */
export function applyPatch(doc, ops) {
    let root = structuredClone(doc);
    for (const op of ops)
        root = applyOne(root, op);
    return root;
}
function parsePointer(path) {
    if (path === "")
        return [];
    if (!path.startsWith("/"))
        throw new Error(`bad JSON pointer ${path}`);
    return path
        .slice(1)
        .split("/")
        .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}
function isContainer(v) {
    return typeof v === "object" && v !== null;
}
function get(doc, tokens) {
    let cur = doc;
    for (const t of tokens) {
        if (Array.isArray(cur))
            cur = cur[index(cur, t, false)];
        else if (isContainer(cur) && Object.prototype.hasOwnProperty.call(cur, t))
            cur = cur[t];
        else
            throw new Error(`no value at ${t}`);
    }
    return cur;
}
function index(arr, token, adding) {
    if (adding && token === "-")
        return arr.length;
    if (!/^(0|[1-9][0-9]*)$/.test(token))
        throw new Error(`bad array index ${token}`);
    const i = Number(token);
    if (i > arr.length || (!adding && i === arr.length))
        throw new Error(`index ${i} out of range`);
    return i;
}
function add(doc, tokens, value) {
    if (tokens.length === 0)
        return value;
    const parent = get(doc, tokens.slice(0, -1));
    const last = tokens[tokens.length - 1];
    if (Array.isArray(parent))
        parent.splice(index(parent, last, true), 0, value);
    else if (isContainer(parent))
        parent[last] = value;
    else
        throw new Error("the parent is not a container");
    return doc;
}
function remove(doc, tokens) {
    if (tokens.length === 0)
        throw new Error("cannot remove the root");
    const parent = get(doc, tokens.slice(0, -1));
    const last = tokens[tokens.length - 1];
    if (Array.isArray(parent))
        parent.splice(index(parent, last, false), 1);
    else if (isContainer(parent) && Object.prototype.hasOwnProperty.call(parent, last))
        delete parent[last];
    else
        throw new Error(`no value at ${last}`);
    return doc;
}
function equal(a, b) {
    if (a === b)
        return true;
    if (Array.isArray(a) && Array.isArray(b))
        return a.length === b.length && a.every((x, i) => equal(x, b[i]));
    if (isContainer(a) && isContainer(b) && !Array.isArray(a) && !Array.isArray(b)) {
        const ka = Object.keys(a);
        const kb = Object.keys(b);
        return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && equal(a[k], b[k]));
    }
    return false;
}
function applyOne(doc, op) {
    const tokens = parsePointer(op.path);
    switch (op.op) {
        case "add":
            return add(doc, tokens, structuredClone(op.value));
        case "remove":
            return remove(doc, tokens);
        case "replace":
            get(doc, tokens);
            return add(tokens.length === 0 ? doc : remove(doc, tokens), tokens, structuredClone(op.value));
        case "move": {
            const from = parsePointer(op.from ?? "");
            const value = get(doc, from);
            return add(remove(doc, from), tokens, value);
        }
        case "copy":
            return add(doc, tokens, structuredClone(get(doc, parsePointer(op.from ?? ""))));
        case "test":
            if (!equal(get(doc, tokens), op.value))
                throw new Error(`test failed at ${op.path}`);
            return doc;
        default:
            throw new Error(`unknown operation ${op.op}`);
    }
}

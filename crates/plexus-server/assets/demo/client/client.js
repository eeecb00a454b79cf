/**
 * The Plexus client: one WebSocket connection to a Plexus server (native protocol v1), kept
 * alive. It answers pings, notices a silent server, reconnects with jittered exponential
 * backoff, authenticates again, restores every subscription with recovery, and sends the
 * requests that waited meanwhile. Mirrors the Rust client (`crates/plexus-client`).
 */
import { backoffDelay, backoffWithDefaults } from "./backoff.js";
import { ErrorCode, shouldReconnect } from "./codes.js";
import { loadCodec, toBytes } from "./codec.js";
import { Emitter } from "./emitter.js";
import { RecordWatch } from "./records.js";
import { PlexusError } from "./errors.js";
import { Subscription, } from "./subscription.js";
/** The client's name and version, sent in `connect` for the server's logs. */
export const CLIENT_NAME = "plexus-ts/0.1.0";
/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;
const OPEN = 1;
/** How long `disconnect()` waits for the server to answer the close frame. */
const CLOSE_GRACE_MS = 1000;
function num(value) {
    return typeof value === "number" ? value : Number(value ?? 0);
}
function str(value) {
    return typeof value === "string" ? value : undefined;
}
function isFrame(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
/** `data` or `binary` of a frame into an object's fields (`data: null` is a value). */
function payloadOf(frame) {
    if (frame.binary !== undefined && frame.binary !== null)
        return { binary: toBytes(frame.binary) };
    if ("data" in frame)
        return { data: frame.data };
    return {};
}
/** An application value as the `data` or `binary` field of a request. */
function payloadFields(value, required) {
    if (value instanceof Uint8Array)
        return { binary: value };
    if (value instanceof ArrayBuffer)
        return { binary: new Uint8Array(value) };
    if (value === undefined)
        return required ? { data: null } : {};
    return { data: value };
}
function toPublication(frame) {
    const p = {
        channel: str(frame.channel) ?? "",
        offset: num(frame.offset),
        epoch: str(frame.epoch) ?? "",
        ...payloadOf(frame),
    };
    if (typeof frame.event === "string")
        p.event = frame.event;
    if (isFrame(frame.publisher)) {
        const pub = frame.publisher;
        p.publisher = { conn: str(pub.conn) ?? "" };
        if (pub.user !== undefined)
            p.publisher.user = str(pub.user);
        if ("info" in pub)
            p.publisher.info = pub.info;
    }
    return p;
}
function toMember(frame) {
    const m = { conn: str(frame.conn) ?? "" };
    if (frame.user !== undefined)
        m.user = str(frame.user);
    if ("info" in frame)
        m.info = frame.info;
    if ("state" in frame)
        m.state = frame.state;
    return m;
}
/**
 * A Plexus client. Create it, add handlers, then `connect()` (the first attempt is not retried)
 * or `start()` (connects in the background, retrying from the first attempt).
 *
 * ```ts
 * const client = new Client({ url: "ws://127.0.0.1:8000/ws" });
 * client.on("state", (s) => console.log("state", s));
 * await client.connect();
 * const sub = client.subscribe("chat:lobby", { history: 20 });
 * sub.on("publication", (p) => console.log(p.offset, p.data));
 * await client.publish("chat:lobby", { text: "hi" });
 * ```
 */
export class Client extends Emitter {
    #opts;
    #codec;
    #state = "idle";
    #conn;
    #info;
    #latencyMs;
    #queue = [];
    #subs = new Map();
    #nextId = 0;
    /** Consecutive attempts that did not reach `connected`. */
    #failed = 0;
    #prevDelayMs = 0;
    #attemptTimer;
    #first;
    #waiters = [];
    #everConnected = false;
    #closedError;
    #mailChain = Promise.resolve();
    #acked = { user: undefined, seq: 0 };
    #host;
    constructor(options) {
        super(options.onHandlerError);
        const positive = (value, fallback) => Math.max(1, Math.floor(value ?? fallback));
        this.#opts = {
            url: options.url,
            encoding: options.encoding ?? "json",
            token: options.token,
            credentials: options.credentials,
            WebSocket: options.WebSocket,
            connectTimeoutMs: positive(options.connectTimeoutMs, 10_000),
            requestTimeoutMs: positive(options.requestTimeoutMs, 10_000),
            reconnect: options.reconnect ?? true,
            backoff: backoffWithDefaults(options.backoff),
            maxQueuedRequests: Math.max(0, Math.floor(options.maxQueuedRequests ?? 256)),
            maxInFlight: positive(options.maxInFlight, 64),
            maxSubscriptions: positive(options.maxSubscriptions, 1024),
            batchBytes: positive(options.batchBytes, 65_536),
            autoAck: options.autoAck ?? true,
            sync: options.sync,
            random: options.random ?? Math.random,
            onHandlerError: options.onHandlerError,
        };
        if (this.#opts.encoding !== "json" && this.#opts.encoding !== "msgpack") {
            throw new PlexusError("config", `unknown encoding ${String(this.#opts.encoding)}`);
        }
        this.#host = {
            unsubscribe: (sub) => this.#unsubscribeSub(sub),
            publish: (channel, data, opts) => this.publish(channel, data, opts),
            history: (channel, opts, req) => this.history(channel, opts, req),
            presence: (channel, opts) => this.presence(channel, opts),
            presenceStats: (channel, opts) => this.presenceStats(channel, opts),
            setPresenceState: (sub, state, expireMs, opts) => this.#setSubPresenceState(sub, state, expireMs, opts),
        };
    }
    /** `idle`, `connecting`, `connected` or `closed` (final). */
    get state() {
        return this.#state;
    }
    /** The current connection, while connected. */
    get info() {
        return this.#state === "connected" ? this.#info : undefined;
    }
    /** The last round-trip time the server measured, in ms. */
    get latencyMs() {
        return this.#latencyMs;
    }
    /**
     * Connects and resolves once connected and authenticated. The first attempt is not retried:
     * a network error or refused credentials reject, and the client is closed. After that, lost
     * connections are re-opened automatically. On a client already started, waits for the
     * connection.
     */
    connect() {
        if (this.#state !== "idle")
            return this.waitConnected();
        const promise = new Promise((resolve, reject) => {
            this.#first = { resolve, reject };
        });
        this.#begin();
        return promise;
    }
    /** Connects in the background, retrying with backoff from the first attempt. */
    start() {
        if (this.#state === "idle")
            this.#begin();
    }
    /** Resolves when connected (at once if connected); rejects when the client closes first. */
    waitConnected(timeoutMs) {
        if (this.#state === "connected" && this.#info)
            return Promise.resolve(this.#info);
        if (this.#state === "closed")
            return Promise.reject(this.#closedError ?? closedError());
        return new Promise((resolve, reject) => {
            let timer;
            const waiter = {
                resolve: (info) => {
                    clearTimeout(timer);
                    resolve(info);
                },
                reject: (error) => {
                    clearTimeout(timer);
                    reject(error);
                },
            };
            this.#waiters.push(waiter);
            if (timeoutMs !== undefined) {
                timer = setTimeout(() => {
                    this.#waiters = this.#waiters.filter((w) => w !== waiter);
                    reject(new PlexusError("timeout", `not connected within ${timeoutMs} ms`));
                }, timeoutMs);
            }
        });
    }
    /**
     * Closes the connection with code 1000 and stops for good: no reconnect, every waiting
     * request fails with `closed`, every subscription ends (`client_closed`).
     */
    async disconnect() {
        if (this.#state === "closed")
            return;
        const conn = this.#conn;
        const error = closedError("the client was disconnected", 1000);
        if (conn)
            this.#detach(conn, error);
        this.#finish(error, () => this.emit("disconnected", { code: 1000, reason: "client disconnect", willReconnect: false }));
        if (conn && (conn.ws.readyState === OPEN || conn.ws.readyState === 0)) {
            await new Promise((resolve) => {
                const timer = setTimeout(resolve, CLOSE_GRACE_MS);
                conn.ws.onclose = () => {
                    clearTimeout(timer);
                    resolve();
                };
                try {
                    conn.ws.close(1000, "client disconnect");
                }
                catch {
                    clearTimeout(timer);
                    resolve();
                }
            });
        }
    }
    /**
     * Drops the current connection and connects again (after the usual backoff delay), as after a
     * lost connection: subscriptions are restored with recovery.
     */
    reconnect() {
        const conn = this.#conn;
        if (conn) {
            const reason = "reconnect requested by the client";
            this.#end(conn, { connected: conn.phase === "ready", code: undefined, reason, error: new PlexusError("disconnected", reason), final: false });
        }
        else if (this.#attemptTimer !== undefined) {
            clearTimeout(this.#attemptTimer);
            this.#attemptTimer = undefined;
            void this.#attempt();
        }
    }
    // ---- requests ------------------------------------------------------------------------------
    /**
     * Calls a command (RPC). `data` is any JSON value, or bytes (`Uint8Array`). Resolves with the
     * handler's answer (a JSON value, or a `Uint8Array` for a binary answer); rejects with a
     * `PlexusError` (`kind: "server"` and `code`: 103 unknown method, ≥ 1000 the application's…).
     */
    call(method, data, options) {
        return this.#request("call", { method, ...payloadFields(data, false) }, (r) => {
            const payload = payloadOf(r);
            return payload.binary ?? payload.data ?? null;
        }, options);
    }
    /** Publishes to a channel (any JSON value, or bytes); resolves with where it landed. */
    publish(channel, data, options) {
        const params = { channel, ...payloadFields(data, true) };
        if (options?.event !== undefined)
            params.event = options.event;
        return this.#request("publish", params, (r) => ({ offset: num(r.offset), epoch: str(r.epoch) ?? "" }), options);
    }
    /** Reads a channel's kept publications (oldest first unless `reverse`). */
    history(channel, options = {}, request) {
        const params = { channel };
        if (options.since !== undefined)
            params.since = options.since;
        if (options.limit !== undefined)
            params.limit = options.limit;
        if (options.reverse)
            params.reverse = true;
        return this.#request("history", params, (r) => ({
            publications: Array.isArray(r.publications) ? r.publications.filter(isFrame).map(toPublication) : [],
            offset: num(r.offset),
            epoch: str(r.epoch) ?? "",
        }), request);
    }
    /** Who is in a channel. */
    presence(channel, options) {
        return this.#request("presence", { channel }, (r) => (Array.isArray(r.members) ? r.members.filter(isFrame).map(toMember) : []), options);
    }
    /** How many connections and unique users are in a channel. */
    presenceStats(channel, options) {
        return this.#request("presence_stats", { channel }, (r) => ({ connections: num(r.connections), users: num(r.users) }), options);
    }
    /**
     * Sets (or with `null` clears) this connection's ephemeral presence state in a subscribed
     * channel. Through a `Subscription`, the state is also restored after reconnects.
     */
    setPresenceState(channel, state, options = {}) {
        const sub = this.#subs.get(channel);
        if (sub)
            return this.#setSubPresenceState(sub, state, options.expireMs, options);
        return this.#presenceStateRequest(channel, state, options.expireMs, options);
    }
    /** When `user` was last present in `channel`. */
    lastSeen(channel, user, options) {
        return this.#request("last_seen", { channel, user }, (r) => {
            const seen = { online: r.online === true };
            if (r.last_seen_ms !== undefined)
                seen.lastSeenMs = num(r.last_seen_ms);
            return seen;
        }, options);
    }
    /** Reads metadata: name exactly one of `conn` (this connection), `user` (this user), `channel`. */
    getMeta(target, options) {
        const params = {};
        if (target.conn !== undefined)
            params.conn = target.conn;
        if (target.user !== undefined)
            params.user = target.user;
        if (target.channel !== undefined)
            params.channel = target.channel;
        return this.#request("get_meta", params, (r) => (isFrame(r.value) ? r.value : {}), options);
    }
    /** Replaces (or with `merge`, shallow-merges) this connection's metadata object. */
    setMeta(value, options = {}) {
        const params = { value };
        if (options.merge)
            params.merge = true;
        return this.#request("set_meta", params, () => undefined, options);
    }
    // ---- records -------------------------------------------------------------------------------
    /** Reads a record (`value: null` at `version: 0` when it does not exist). */
    getRecord(id, options) {
        return this.#request("record_get", { id }, toRecordState, options);
    }
    /**
     * Replaces a record's value (creating it). With `expect`, only while the record is at that
     * version (0: only when it does not exist); otherwise rejects with code 121
     * (`version_conflict`, the current version in `data.version`).
     */
    setRecord(id, value, options = {}) {
        const params = { id, value };
        if (options.expect !== undefined)
            params.expect = options.expect;
        return this.#request("record_set", params, toRecordVersion, options);
    }
    /** Applies an RFC 6902 JSON Patch, whole or not at all (code 122). `expect` as for `setRecord`. */
    patchRecord(id, patch, options = {}) {
        const params = { id, patch };
        if (options.expect !== undefined)
            params.expect = options.expect;
        return this.#request("record_patch", params, toRecordVersion, options);
    }
    /** Deletes a record (code 119 when there is none). `expect` as for `setRecord`. */
    deleteRecord(id, options = {}) {
        const params = { id };
        if (options.expect !== undefined)
            params.expect = options.expect;
        return this.#request("record_delete", params, toRecordVersion, options);
    }
    /**
     * Watches a record: `watch.value` is always its current value, `change` events follow each
     * version, and the watch resyncs by itself (a missed change, a reconnect). `mode: "patch"`
     * receives patches and applies them here. `await watch.ready` for the first value.
     */
    watchRecord(id, options = {}) {
        const ops = {
            subscribeRecord: (rid, mode) => this.#request("record_subscribe", { id: rid, mode }, toRecordState),
            getRecord: (rid) => this.getRecord(rid),
            unsubscribeRecord: (rid) => this.#request("record_unsubscribe", { id: rid }, () => undefined, {}, [ErrorCode.NOT_SUBSCRIBED]),
            onRecord: (handler) => this.on("record", handler),
            onReconnected: (handler) => this.on("connected", (e) => {
                if (e.reconnected)
                    handler();
            }),
        };
        return new RecordWatch(ops, id, options.mode ?? "full");
    }
    /** Acknowledges this user's durable messages up to `seq`; resolves with how many still wait. */
    ack(seq, options) {
        return this.#request("ack", { seq }, (r) => ({ pending: num(r.pending) }), options);
    }
    // ---- subscriptions -------------------------------------------------------------------------
    /**
     * Subscribes to a channel. Returns the `Subscription` at once (add handlers before anything
     * arrives); `sub.ready` resolves with the first `subscribed` event. Throws `already_subscribed`
     * when this client holds the channel (except a server-side subscription, which is adopted),
     * `queue_full` above `maxSubscriptions`, `closed` after the client stopped.
     */
    subscribe(channel, options = {}) {
        if (this.#state === "closed")
            throw this.#closedError ?? closedError();
        const existing = this.#subs.get(channel);
        if (existing) {
            if (existing._serverSide) {
                existing._serverSide = false;
                existing._options = { ...options, since: undefined, history: undefined };
                return existing;
            }
            throw new PlexusError("already_subscribed", `already subscribed to \`${channel}\``);
        }
        if (this.#subs.size >= this.#opts.maxSubscriptions) {
            throw new PlexusError("queue_full", `${this.#subs.size} subscriptions are held already (maxSubscriptions)`);
        }
        const sub = new Subscription(channel, { ...options }, this.#host, false, this.#opts.onHandlerError);
        this.#subs.set(channel, sub);
        const ready = this.#conn?.phase === "ready";
        if (options.failFast && !ready) {
            this.#endSub(sub, { channel, reason: "subscribe_failed", error: new PlexusError("disconnected", "the connection is down") });
            return sub;
        }
        const timeoutMs = Math.max(1, options.timeoutMs ?? this.#opts.requestTimeoutMs);
        sub._readyTimer = setTimeout(() => {
            if (sub._settled || this.#subs.get(channel) !== sub)
                return;
            const error = new PlexusError("timeout", `no subscribe reply within ${timeoutMs} ms`);
            // Nobody awaits this unsubscribe; it only tells the server to drop a late subscription.
            this.#unsubscribeSub(sub, { channel, reason: "subscribe_failed", error }).catch(() => { });
        }, timeoutMs);
        sub._state = "queued";
        this.#queue.push({ t: "sub", sub });
        this.#pumpCurrent();
        return sub;
    }
    /** The subscription to `channel`, if this client holds one. */
    getSubscription(channel) {
        return this.#subs.get(channel);
    }
    /** Every subscription this client holds. */
    subscriptions() {
        return [...this.#subs.values()];
    }
    /** Unsubscribes from a channel (a no-op when neither side holds it). */
    unsubscribe(channel) {
        const sub = this.#subs.get(channel);
        if (sub)
            return this.#unsubscribeSub(sub);
        if (this.#conn?.phase !== "ready")
            return Promise.resolve();
        return this.#request("unsubscribe", { channel }, () => undefined, {}, [ErrorCode.NOT_SUBSCRIBED]);
    }
    // ---- internals: requests -------------------------------------------------------------------
    #request(op, params, map, options = {}, okCodes = []) {
        if (this.#state === "closed")
            return Promise.reject(this.#closedError ?? closedError());
        return new Promise((resolve, reject) => {
            const ready = this.#conn?.phase === "ready";
            if (options.failFast && !ready) {
                reject(new PlexusError("disconnected", "the connection is down"));
                return;
            }
            const queued = this.#queue.reduce((n, item) => n + (item.t === "req" ? 1 : 0), 0);
            if (queued >= this.#opts.maxQueuedRequests) {
                reject(new PlexusError("queue_full", `${queued} requests are waiting already (maxQueuedRequests)`));
                return;
            }
            const req = { op, params, map: map, okCodes, resolve, reject, timer: undefined, done: false };
            const timeoutMs = Math.max(1, options.timeoutMs ?? this.#opts.requestTimeoutMs);
            req.timer = setTimeout(() => {
                if (req.done)
                    return;
                req.done = true;
                // A request still queued leaves the queue; one in flight keeps its slot until the reply.
                this.#queue = this.#queue.filter((item) => item.t !== "req" || item.req !== req);
                reject(new PlexusError("timeout", `no reply to \`${op}\` within ${timeoutMs} ms`));
            }, timeoutMs);
            this.#queue.push({ t: "req", req });
            this.#pumpCurrent();
        });
    }
    #settle(req, error, result) {
        if (req.done)
            return;
        req.done = true;
        clearTimeout(req.timer);
        if (error !== undefined) {
            const e = isFrame(error) ? PlexusError.fromBody(error) : new PlexusError("protocol", "an error reply without a body");
            if (e.code !== undefined && req.okCodes.includes(e.code)) {
                req.resolve(req.map({}));
            }
            else {
                req.reject(e);
            }
            return;
        }
        try {
            req.resolve(req.map(isFrame(result) ? result : {}));
        }
        catch (e) {
            req.reject(new PlexusError("protocol", `undecodable reply to \`${req.op}\`: ${String(e)}`));
        }
    }
    #fail(req, error) {
        if (req.done)
            return;
        req.done = true;
        clearTimeout(req.timer);
        req.reject(error);
    }
    #pumpCurrent() {
        if (this.#conn)
            this.#pump(this.#conn);
    }
    /** Sends queued items while the in-flight limit allows. */
    #pump(conn) {
        if (conn.phase !== "ready" || conn.ended)
            return;
        while (conn.pending.size < conn.maxInFlight && this.#queue.length > 0) {
            const item = this.#queue.shift();
            if (item.t === "req") {
                if (!item.req.done)
                    this.#sendReq(conn, item.req);
            }
            else {
                this.#sendSubscribe(conn, item.sub);
            }
        }
    }
    #sendReq(conn, req) {
        const id = ++this.#nextId;
        const frame = { id, op: req.op };
        if (req.params !== undefined)
            frame.params = req.params;
        if (!this.#write(conn, frame, (size) => this.#fail(req, tooLarge(size, conn.maxOutBytes))))
            return;
        conn.pending.set(id, { t: "req", req });
    }
    /** A request whose reply nobody waits for (restoring presence state, a repair's unsubscribe). */
    #sendInternal(conn, op, params) {
        const id = ++this.#nextId;
        if (this.#write(conn, { id, op, params }, () => { }))
            conn.pending.set(id, { t: "internal" });
    }
    /** Queues one frame on the connection; false (and `tooBig` called) when it is too large. */
    #write(conn, frame, tooBig) {
        const codec = this.#codec;
        const encoded = codec.encode(frame);
        const size = codec.size(encoded);
        if (size > conn.maxOutBytes) {
            tooBig(size);
            return false;
        }
        conn.outbox.push({ frame: encoded, size });
        if (!conn.flushQueued) {
            conn.flushQueued = true;
            queueMicrotask(() => this.#flush(conn));
        }
        return true;
    }
    /** Writes the queued frames, batched into as few messages as the size limits allow. */
    #flush(conn) {
        conn.flushQueued = false;
        if (conn.ended || conn.ws.readyState !== OPEN || conn.outbox.length === 0)
            return;
        const codec = this.#codec;
        const limit = Math.min(this.#opts.batchBytes, conn.maxOutBytes);
        const outbox = conn.outbox;
        conn.outbox = [];
        let batch = [];
        let bytes = 0;
        const send = () => {
            if (batch.length === 0)
                return;
            try {
                conn.ws.send(codec.join(batch));
            }
            catch {
                // The socket is closing; its close event ends the session.
            }
            batch = [];
            bytes = 0;
        };
        const separator = codec.encoding === "json" ? 1 : 0;
        for (const { frame, size } of outbox) {
            if (batch.length > 0 && bytes + separator + size > limit)
                send();
            bytes += (batch.length > 0 ? separator : 0) + size;
            batch.push(frame);
        }
        send();
    }
    // ---- internals: connection lifecycle -------------------------------------------------------
    #setState(state) {
        if (this.#state === state)
            return;
        this.#state = state;
        this.emit("state", state);
    }
    #isClosed() {
        return this.#state === "closed";
    }
    #begin() {
        this.emit("connecting", { attempt: 1, delayMs: 0 });
        this.#setState("connecting");
        void this.#attempt();
    }
    async #attempt() {
        this.#attemptTimer = undefined;
        if (this.#state === "closed")
            return;
        let codec;
        try {
            codec = await loadCodec(this.#opts.encoding);
        }
        catch (e) {
            return this.#afterAttempt(failed(new PlexusError("config", `cannot load the ${this.#opts.encoding} codec: ${String(e)}`), true));
        }
        if (this.#isClosed())
            return; // disconnect() while the codec loaded
        this.#codec = codec;
        const WS = this.#opts.WebSocket ?? globalThis.WebSocket;
        if (!WS) {
            return this.#afterAttempt(failed(new PlexusError("config", "no WebSocket implementation: pass the `WebSocket` option (for example the `ws` package)"), true));
        }
        let ws;
        try {
            ws = new WS(this.#opts.url, codec.subprotocol);
        }
        catch (e) {
            return this.#afterAttempt(failed(new PlexusError("config", `cannot open ${this.#opts.url}: ${String(e)}`), true));
        }
        ws.binaryType = "arraybuffer";
        const conn = {
            ws,
            phase: "hello",
            pending: new Map(),
            info: undefined,
            deadAfterMs: undefined,
            lastFrameAt: Date.now(),
            maxInFlight: this.#opts.maxInFlight,
            maxOutBytes: Number.POSITIVE_INFINITY,
            outbox: [],
            flushQueued: false,
            connectError: undefined,
            handshakeTimer: undefined,
            deadTimer: undefined,
            ended: false,
        };
        this.#conn = conn;
        conn.handshakeTimer = setTimeout(() => {
            const error = conn.connectError ?? new PlexusError("connect", `the connection was not ready within ${this.#opts.connectTimeoutMs} ms`);
            this.#end(conn, failed(error, false));
        }, this.#opts.connectTimeoutMs);
        ws.onopen = () => { };
        ws.onerror = () => { }; // the close event follows and says what happened
        ws.onmessage = (event) => this.#onMessage(conn, event.data);
        ws.onclose = (event) => this.#onClose(conn, event.code, event.reason);
    }
    #onClose(conn, code, reason) {
        if (conn.ended)
            return;
        const connected = conn.phase === "ready";
        const text = reason || (code === 1006 ? "the connection was lost" : `closed by the server with code ${code}`);
        let error;
        if (conn.connectError)
            error = conn.connectError.withCloseCode(code);
        else if (connected || (code >= 4000 && code <= 4999))
            error = closedError(text, code);
        else
            error = new PlexusError("connect", text, { closeCode: code });
        this.#end(conn, { connected, code, reason: text, error, final: false });
    }
    /** Forgets a connection: timers, handlers, in-flight requests (they fail with `error`). */
    #detach(conn, error) {
        if (conn.ended)
            return;
        conn.ended = true;
        if (this.#conn === conn)
            this.#conn = undefined;
        clearTimeout(conn.handshakeTimer);
        clearTimeout(conn.deadTimer);
        conn.ws.onmessage = () => { };
        conn.ws.onclose = () => { };
        for (const pending of conn.pending.values()) {
            if (pending.t === "req")
                this.#fail(pending.req, error);
        }
        conn.pending.clear();
        for (const sub of this.#subs.values()) {
            if (sub._state === "active" || sub._state === "inflight" || sub._state === "retrying") {
                sub._state = "idle";
                sub._inflightId = undefined;
            }
            clearTimeout(sub._retryTimer);
            sub._retryTimer = undefined;
            sub._retryAttempt = 0;
            sub._retryPrevMs = 0;
        }
    }
    /** A session or attempt ended: drop the socket, then reconnect or stop. */
    #end(conn, ended) {
        if (conn.ended)
            return;
        this.#detach(conn, new PlexusError("disconnected", `the connection was lost: ${ended.reason}`));
        if (conn.ws.readyState === OPEN || conn.ws.readyState === 0) {
            try {
                conn.ws.close(1000, "client reconnect");
            }
            catch {
                // already closing
            }
        }
        this.#afterAttempt(ended);
    }
    #afterAttempt(ended) {
        if (this.#state === "closed")
            return;
        const willReconnect = !ended.final && this.#opts.reconnect && shouldReconnect(ended.code);
        const attempt = this.#failed + 1;
        if (ended.connected) {
            this.#failed = 0;
            this.#prevDelayMs = 0;
            this.emit("disconnected", { code: ended.code, reason: ended.reason, willReconnect });
        }
        else {
            this.#failed += 1;
            this.emit("connectFailed", { attempt, error: ended.error });
        }
        if (!willReconnect || (this.#first && !ended.connected)) {
            const error = ended.connected ? closedError(ended.reason, ended.code) : ended.error;
            const announce = !ended.connected && !this.#first;
            this.#finish(error, announce ? () => this.emit("disconnected", { code: ended.code, reason: ended.reason, willReconnect: false }) : undefined);
            return;
        }
        const max = this.#opts.backoff.maxAttempts;
        if (!ended.connected && max !== undefined && this.#failed >= max) {
            const attempts = this.#failed;
            this.#finish(ended.error, () => this.emit("gaveUp", { attempts, error: ended.error }));
            return;
        }
        const delayMs = backoffDelay(this.#opts.backoff, this.#failed + 1, this.#prevDelayMs, this.#opts.random);
        this.#prevDelayMs = delayMs;
        this.emit("connecting", { attempt: this.#failed + 1, delayMs });
        this.#setState("connecting");
        this.#attemptTimer = setTimeout(() => void this.#attempt(), delayMs);
    }
    /** Stops for good: answers everyone still waiting, ends every subscription. */
    #finish(error, announce) {
        if (this.#state === "closed")
            return;
        this.#closedError = error;
        clearTimeout(this.#attemptTimer);
        this.#attemptTimer = undefined;
        this.#state = "closed";
        const queue = this.#queue;
        this.#queue = [];
        for (const item of queue) {
            if (item.t === "req")
                this.#fail(item.req, error);
        }
        const subs = [...this.#subs.values()];
        this.#subs.clear();
        for (const sub of subs) {
            const event = { channel: sub.channel, reason: "client_closed" };
            sub._end(event, error);
            this.emit("unsubscribed", event);
        }
        this.#first?.reject(error);
        this.#first = undefined;
        const waiters = this.#waiters;
        this.#waiters = [];
        for (const w of waiters)
            w.reject(error);
        this.emit("state", "closed");
        announce?.();
    }
    // ---- internals: frames in ------------------------------------------------------------------
    #onMessage(conn, data) {
        if (conn.ended)
            return;
        conn.lastFrameAt = Date.now();
        let frames;
        try {
            frames = this.#codec.decode(data);
        }
        catch {
            return; // an undecodable message is skipped, as the Rust client does
        }
        for (const frame of frames) {
            if (conn.ended)
                return;
            if (typeof frame.id === "number")
                this.#onReply(conn, frame.id, frame);
            else if (typeof frame.push === "string")
                this.#onPush(conn, frame.push, frame);
        }
    }
    #onReply(conn, id, frame) {
        const pending = conn.pending.get(id);
        if (!pending)
            return;
        conn.pending.delete(id);
        switch (pending.t) {
            case "connect":
                if (frame.error !== undefined) {
                    const ended = connectRefused(isFrame(frame.error) ? frame.error : {});
                    if (ended.final)
                        return this.#end(conn, ended);
                    // The close code that follows decides whether to retry; until then, remember why.
                    conn.connectError = ended.error;
                    return;
                }
                if (isFrame(frame.result) && conn.info) {
                    const r = frame.result;
                    conn.info.conn = str(r.conn) ?? conn.info.conn;
                    conn.info.user = str(r.user);
                    if ("info" in r)
                        conn.info.info = r.info;
                    else
                        delete conn.info.info;
                    if (conn.info.user === undefined)
                        delete conn.info.user;
                }
                this.#ready(conn);
                break;
            case "req":
                this.#settle(pending.req, frame.error, frame.result);
                break;
            case "sub":
                this.#onSubscribeReply(conn, pending.sub, id, frame);
                break;
            case "internal":
                break;
        }
        this.#pump(conn);
    }
    #onPush(conn, push, frame) {
        switch (push) {
            case "hello":
                return this.#onHello(conn, frame);
            case "ping":
                this.#write(conn, { op: "pong" }, () => { });
                return;
            case "latency": {
                const rttMs = num(frame.rtt_ms);
                this.#latencyMs = rttMs;
                this.emit("latency", { rttMs });
                return;
            }
            case "pub":
                return this.#onPub(conn, frame);
            case "message":
                this.emit("message", { to: str(frame.to) ?? "connection", ...payloadOf(frame), ...(typeof frame.event === "string" ? { event: frame.event } : {}) });
                return;
            case "mail":
                return this.#onMail(frame);
            case "subscribed":
                return this.#onServerSubscribed(frame);
            case "unsubscribed":
                return this.#onServerUnsubscribed(conn, frame);
            case "join":
            case "leave": {
                const event = { channel: str(frame.channel) ?? "", conn: str(frame.conn) ?? "" };
                if (frame.user !== undefined)
                    event.user = str(frame.user);
                if ("info" in frame)
                    event.info = frame.info;
                this.#subs.get(event.channel)?._emit(push, event);
                this.emit(push, event);
                return;
            }
            case "state": {
                const event = { channel: str(frame.channel) ?? "", conn: str(frame.conn) ?? "" };
                if (frame.user !== undefined)
                    event.user = str(frame.user);
                if ("state" in frame && frame.state !== null)
                    event.state = frame.state;
                this.#subs.get(event.channel)?._emit("presenceState", event);
                this.emit("presenceState", event);
                return;
            }
            case "echo": {
                const event = { event: str(frame.event) ?? "", conn: str(frame.conn) ?? "" };
                if (frame.channel !== undefined)
                    event.channel = str(frame.channel);
                this.emit("echo", event);
                return;
            }
            case "error":
                this.emit("serverError", PlexusError.fromBody(frame));
                return;
            case "record": {
                const change = { id: str(frame.record) ?? "", version: num(frame.version), epoch: str(frame.epoch) ?? "" };
                if ("value" in frame)
                    change.value = frame.value;
                if (Array.isArray(frame.patch))
                    change.patch = frame.patch;
                if (frame.deleted === true)
                    change.deleted = true;
                this.emit("record", change);
                return;
            }
            default:
                return; // a push of a newer server: ignored (protocol section 10)
        }
    }
    #onHello(conn, frame) {
        if (conn.phase !== "hello")
            return;
        const limits = isFrame(frame.limits) ? frame.limits : {};
        const pingIntervalMs = num(frame.ping_interval_ms);
        const maxMissedPongs = num(frame.max_missed_pongs);
        const info = {
            conn: str(frame.conn) ?? "",
            node: str(frame.node) ?? "",
            pingIntervalMs,
            maxMissedPongs,
            limits: {
                maxMessageBytes: num(limits.max_message_bytes ?? Number.POSITIVE_INFINITY),
                maxSubscriptions: num(limits.max_subscriptions),
                maxChannelBytes: num(limits.max_channel_bytes),
                requestsPerSecond: num(limits.requests_per_second),
                requestsBurst: num(limits.requests_burst),
                maxPendingRequests: num(limits.max_pending_requests ?? Number.POSITIVE_INFINITY),
            },
        };
        if (frame.user !== undefined)
            info.user = str(frame.user);
        if ("info" in frame)
            info.info = frame.info;
        conn.info = info;
        conn.deadAfterMs = pingIntervalMs > 0 ? pingIntervalMs * (maxMissedPongs + 1) : undefined;
        conn.maxInFlight = Math.max(1, Math.min(this.#opts.maxInFlight, info.limits.maxPendingRequests || 1));
        conn.maxOutBytes = info.limits.maxMessageBytes > 0 ? info.limits.maxMessageBytes : Number.POSITIVE_INFINITY;
        const hasAuth = this.#opts.token !== undefined || this.#opts.credentials !== undefined;
        const auth = str(frame.auth);
        const sendConnect = auth === "required" || (auth !== "done" && hasAuth);
        if (!sendConnect)
            return this.#ready(conn);
        conn.phase = "auth";
        void this.#sendConnect(conn);
    }
    async #sendConnect(conn) {
        const params = {};
        try {
            const token = typeof this.#opts.token === "function" ? await this.#opts.token() : this.#opts.token;
            const credentials = typeof this.#opts.credentials === "function" ? await this.#opts.credentials() : this.#opts.credentials;
            if (token !== undefined)
                params.token = token;
            if (credentials !== undefined)
                params.credentials = credentials;
        }
        catch (e) {
            this.#end(conn, failed(new PlexusError("connect", `the token or credentials provider failed: ${String(e)}`), false));
            return;
        }
        if (conn.ended)
            return;
        params.version = PROTOCOL_VERSION;
        params.client = CLIENT_NAME;
        if (this.#opts.sync !== undefined)
            params.sync = this.#opts.sync;
        const id = ++this.#nextId;
        if (this.#write(conn, { id, op: "connect", params }, (size) => this.#end(conn, failed(tooLarge(size, conn.maxOutBytes), true)))) {
            conn.pending.set(id, { t: "connect" });
        }
    }
    #ready(conn) {
        const info = conn.info;
        if (!info)
            return;
        conn.phase = "ready";
        clearTimeout(conn.handshakeTimer);
        conn.lastFrameAt = Date.now();
        this.#armDeadTimer(conn);
        this.#info = info;
        if (this.#acked.user !== info.user)
            this.#acked = { user: info.user, seq: 0 };
        // Restore every subscription before anything queued (which may depend on them).
        const restore = [];
        for (const sub of this.#subs.values()) {
            if (sub._state === "idle") {
                sub._state = "queued";
                restore.push({ t: "sub", sub });
            }
        }
        this.#queue.unshift(...restore);
        this.#pump(conn);
        const reconnected = this.#everConnected;
        this.#everConnected = true;
        this.#setState("connected");
        this.emit("connected", { reconnected, info });
        this.#first?.resolve(info);
        this.#first = undefined;
        const waiters = this.#waiters;
        this.#waiters = [];
        for (const w of waiters)
            w.resolve(info);
    }
    /** No frame for `ping_interval_ms × (max_missed_pongs + 1)`: the server is gone. */
    #armDeadTimer(conn) {
        const deadAfterMs = conn.deadAfterMs;
        if (deadAfterMs === undefined || conn.ended)
            return;
        const due = conn.lastFrameAt + deadAfterMs - Date.now();
        conn.deadTimer = setTimeout(() => {
            if (conn.ended)
                return;
            if (Date.now() - conn.lastFrameAt >= deadAfterMs) {
                const reason = `no frame from the server for ${deadAfterMs} ms`;
                this.#end(conn, { connected: true, code: undefined, reason, error: new PlexusError("disconnected", reason), final: false });
            }
            else {
                this.#armDeadTimer(conn);
            }
        }, Math.max(due, 0));
    }
    // ---- internals: subscriptions --------------------------------------------------------------
    #sendSubscribe(conn, sub) {
        if (sub._state !== "queued" || this.#subs.get(sub.channel) !== sub)
            return;
        const params = { channel: sub.channel };
        if (sub._options.token !== undefined)
            params.token = sub._options.token;
        const recover = sub._options.recover !== false;
        if (sub._position && (recover || !sub._everSubscribed)) {
            params.since = { offset: sub._position.offset, epoch: sub._position.epoch };
        }
        else if (!sub._everSubscribed && sub._options.history !== undefined) {
            params.history = sub._options.history;
        }
        const id = ++this.#nextId;
        const tooBig = (size) => this.#endSub(sub, { channel: sub.channel, reason: "subscribe_failed", error: tooLarge(size, conn.maxOutBytes) });
        if (!this.#write(conn, { id, op: "subscribe", params }, tooBig))
            return;
        sub._state = "inflight";
        sub._inflightId = id;
        conn.pending.set(id, { t: "sub", sub });
    }
    #onSubscribeReply(conn, sub, id, frame) {
        // A reply for a subscription that was dropped or re-sent meanwhile is stale.
        if (this.#subs.get(sub.channel) !== sub || sub._inflightId !== id)
            return;
        sub._inflightId = undefined;
        if (frame.error !== undefined) {
            const error = PlexusError.fromBody(isFrame(frame.error) ? frame.error : {});
            return this.#onSubscribeError(conn, sub, error);
        }
        const r = isFrame(frame.result) ? frame.result : {};
        const first = !sub._everSubscribed;
        sub._everSubscribed = true;
        sub._resyncedOnDuplicate = false;
        sub._retryAttempt = 0;
        sub._retryPrevMs = 0;
        const publications = Array.isArray(r.publications) ? r.publications.filter(isFrame).map(toPublication) : [];
        const position = { offset: num(r.offset), epoch: str(r.epoch) ?? "" };
        const recovered = typeof r.recovered === "boolean" ? r.recovered : undefined;
        const missed = recovered === true ? publications : [];
        const history = recovered === undefined && first ? publications : [];
        sub._state = "active";
        sub._position = position;
        if (!first && sub._presenceState !== undefined) {
            // A new connection starts without presence state: set the remembered one again.
            this.#sendInternal(conn, "presence_state", { channel: sub.channel, state: sub._presenceState.state });
        }
        const event = {
            channel: sub.channel,
            position: { ...position },
            resubscribed: !first,
            serverSide: sub._serverSide,
            missed: missed.length,
            history,
        };
        if (recovered !== undefined)
            event.recovered = recovered;
        const reason = str(r.reason);
        if (reason !== undefined)
            event.reason = reason;
        sub._emit("subscribed", event);
        this.emit("subscribed", event);
        sub._resolveReady(event);
        for (const p of missed) {
            if (this.#subs.get(sub.channel) !== sub || sub._state !== "active")
                break;
            this.#deliver(sub, p);
        }
    }
    #onSubscribeError(conn, sub, error) {
        const channel = sub.channel;
        if (!sub._everSubscribed) {
            this.#endSub(sub, { channel, reason: "subscribe_failed", error });
            return;
        }
        if (error.code === ErrorCode.ALREADY_SUBSCRIBED) {
            // The server subscribed this connection itself (an identity channel). Without a repair,
            // what was published while away would be lost: unsubscribe and recover, once.
            if (sub._options.recover !== false && sub._position && !sub._resyncedOnDuplicate) {
                sub._resyncedOnDuplicate = true;
                sub._state = "active";
                this.#resync(conn, sub);
            }
            else {
                sub._state = "active";
            }
            return;
        }
        if (error.isTransient()) {
            sub._state = "retrying";
            sub._retryAttempt += 1;
            const delayMs = backoffDelay(this.#opts.backoff, sub._retryAttempt, sub._retryPrevMs, this.#opts.random);
            sub._retryPrevMs = delayMs;
            sub._retryTimer = setTimeout(() => {
                sub._retryTimer = undefined;
                if (sub._state !== "retrying" || this.#subs.get(channel) !== sub)
                    return;
                sub._state = "queued";
                this.#queue.unshift({ t: "sub", sub });
                this.#pumpCurrent();
            }, delayMs);
            sub._emit("error", { error, willRetry: true });
            this.emit("subscribeFailed", { channel, error, willRetry: true });
            return;
        }
        sub._emit("error", { error, willRetry: false });
        this.emit("subscribeFailed", { channel, error, willRetry: false });
        this.#endSub(sub, { channel, reason: "subscribe_failed", error });
    }
    /** Repairs a subscription: unsubscribe, then subscribe again from the last position. */
    #resync(conn, sub) {
        if (sub._state !== "active")
            return;
        sub._state = "queued";
        this.#sendInternal(conn, "unsubscribe", { channel: sub.channel });
        this.#queue.unshift({ t: "sub", sub });
        this.#pump(conn);
    }
    #onPub(conn, frame) {
        const channel = str(frame.channel);
        const sub = channel === undefined ? undefined : this.#subs.get(channel);
        // While a subscribe or a repair is under way, its result brings what arrives meanwhile.
        if (!sub || sub._state !== "active")
            return;
        const p = toPublication(frame);
        const pos = sub._position;
        if (pos && sub._options.recover !== false) {
            if (p.epoch === pos.epoch && p.offset <= pos.offset)
                return; // seen already
            if (p.epoch !== pos.epoch || p.offset !== pos.offset + 1) {
                this.#resync(conn, sub); // a gap: never silent, repaired from history
                return;
            }
        }
        sub._position = { offset: p.offset, epoch: p.epoch };
        this.#deliver(sub, p);
    }
    #deliver(sub, p) {
        sub._emit("publication", p);
        if (sub._serverSide)
            this.emit("publication", p);
    }
    #onServerSubscribed(frame) {
        const channel = str(frame.channel);
        if (channel === undefined || this.#subs.has(channel))
            return; // our own subscribe settles it
        const sub = new Subscription(channel, {}, this.#host, true, this.#opts.onHandlerError);
        const position = { offset: num(frame.offset), epoch: str(frame.epoch) ?? "" };
        sub._state = "active";
        sub._position = position;
        sub._everSubscribed = true;
        this.#subs.set(channel, sub);
        const event = { channel, position: { ...position }, resubscribed: false, serverSide: true, missed: 0, history: [] };
        sub._resolveReady(event);
        this.emit("subscribed", event);
    }
    #onServerUnsubscribed(conn, frame) {
        const channel = str(frame.channel) ?? "";
        const reason = str(frame.reason) ?? "";
        const sub = this.#subs.get(channel);
        if (!sub)
            return;
        if (reason === "insufficient_state") {
            // The server dropped publications for this connection: subscribe again and recover.
            if (sub._state === "active") {
                sub._state = "queued";
                this.#queue.unshift({ t: "sub", sub });
                this.#pump(conn);
            }
            return;
        }
        this.#endSub(sub, { channel, reason: "server", message: reason });
    }
    #endSub(sub, event) {
        if (this.#subs.get(sub.channel) === sub)
            this.#subs.delete(sub.channel);
        if (sub._state === "ended")
            return;
        sub._end(event, new PlexusError("disconnected", "unsubscribed before the subscription completed"));
        this.emit("unsubscribed", event);
    }
    async #unsubscribeSub(sub, event) {
        if (this.#subs.get(sub.channel) !== sub)
            return;
        const onServer = sub._state === "active" || sub._state === "inflight" || sub._state === "retrying";
        this.#endSub(sub, event ?? { channel: sub.channel, reason: "client" });
        if (!onServer || this.#conn?.phase !== "ready")
            return; // a new connection will not hold it
        await this.#request("unsubscribe", { channel: sub.channel }, () => undefined, {}, [ErrorCode.NOT_SUBSCRIBED]);
    }
    #presenceStateRequest(channel, state, expireMs, options) {
        const params = { channel, state: state === undefined ? null : state };
        if (expireMs !== undefined)
            params.expire_ms = expireMs;
        return this.#request("presence_state", params, () => undefined, options);
    }
    #setSubPresenceState(sub, state, expireMs, options) {
        sub._presenceState = state === null || state === undefined || expireMs !== undefined ? undefined : { state };
        return this.#presenceStateRequest(sub.channel, state, expireMs, options);
    }
    // ---- internals: durable mail ---------------------------------------------------------------
    #onMail(frame) {
        const mail = { seq: num(frame.seq), sentMs: num(frame.sent_ms), ...payloadOf(frame) };
        if (mail.seq <= this.#acked.seq)
            return; // delivered and acknowledged already
        // One at a time, in order: the acknowledgement is cumulative ("up to seq").
        this.#mailChain = this.#mailChain.then(async () => {
            if (mail.seq <= this.#acked.seq)
                return;
            const handlers = this.listenerCount("mail");
            const results = this.emit("mail", mail);
            let ok = handlers > 0;
            for (const result of results) {
                try {
                    await result;
                }
                catch {
                    ok = false; // not acknowledged: the server delivers it again on the next connect
                }
            }
            if (!ok || !this.#opts.autoAck || this.#state === "closed")
                return;
            this.#acked.seq = mail.seq;
            await this.ack(mail.seq).catch(() => { });
        });
    }
}
function closedError(message = "the client is closed", closeCode) {
    return new PlexusError("closed", message, { closeCode });
}
function failed(error, final) {
    return { connected: false, code: undefined, reason: error.message, error, final };
}
function tooLarge(size, max) {
    return new PlexusError("too_large", `the request is ${size} bytes; the server accepts at most ${max}`);
}
/**
 * The server refused `connect`. Bad credentials stay bad: 112, 115 and application codes end
 * the client (the server closes with 4502 / 4506 right after). For other errors the close code
 * that follows decides.
 */
function connectRefused(body) {
    const error = PlexusError.fromBody(body);
    let close;
    if (error.code === ErrorCode.TOKEN_EXPIRED)
        close = 4506;
    else if (error.code === ErrorCode.AUTH_FAILED)
        close = 4502;
    else if (error.code !== undefined && error.code >= ErrorCode.APPLICATION_MIN)
        close = 4502;
    return {
        connected: false,
        code: close,
        reason: `connect refused: ${error.message}`,
        error: error.withCloseCode(close),
        final: close !== undefined,
    };
}
function toRecordState(r) {
    return { id: str(r.id) ?? "", value: r.value ?? null, version: num(r.version), epoch: str(r.epoch) ?? "" };
}
function toRecordVersion(r) {
    return { version: num(r.version), epoch: str(r.epoch) ?? "" };
}

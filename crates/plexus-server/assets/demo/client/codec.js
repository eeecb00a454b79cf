/**
 * Frame encoding: JSON text messages (`plexus.v1.json`) or MessagePack binary messages
 * (`plexus.v1.msgpack`), and batches (several frames in one WebSocket message).
 *
 * MessagePack support is loaded with a dynamic import the first time a client asks for it, so a
 * page that speaks JSON never loads (or needs to resolve) `@msgpack/msgpack`.
 */
const utf8 = new TextEncoder();
function isFrame(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
/** Bytes as standard base64 with padding (RFC 4648), in browsers and Node. */
export function toBase64(bytes) {
    let binary = "";
    const chunk = 0x8000;
    for (let i = 0; i < bytes.length; i += chunk) {
        binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
    }
    return btoa(binary);
}
export function fromBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++)
        bytes[i] = binary.charCodeAt(i);
    return bytes;
}
/** A `binary` field as bytes: MessagePack gives bytes, JSON a base64 string. */
export function toBytes(value) {
    if (value instanceof Uint8Array)
        return value;
    if (value instanceof ArrayBuffer)
        return new Uint8Array(value);
    if (typeof value === "string")
        return fromBase64(value);
    return undefined;
}
function messageBytes(message) {
    if (message instanceof Uint8Array)
        return message;
    if (message instanceof ArrayBuffer)
        return new Uint8Array(message);
    if (ArrayBuffer.isView(message))
        return new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
    if (Array.isArray(message)) {
        // `ws` may hand over fragments when binaryType is "fragments"; never set, but be safe.
        const parts = message.map(messageBytes);
        const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
            out.set(p, at);
            at += p.length;
        }
        return out;
    }
    throw new Error("a binary message was expected");
}
class JsonCodec {
    encoding = "json";
    subprotocol = "plexus.v1.json";
    encode(frame) {
        return JSON.stringify(frame, (key, value) => {
            // The one place bytes travel: a payload's `binary` field, base64 in JSON.
            if (key === "binary" && value instanceof Uint8Array)
                return toBase64(value);
            return value;
        });
    }
    size(frame) {
        return typeof frame === "string" ? utf8.encode(frame).length : frame.length;
    }
    join(frames) {
        return frames.join("\n");
    }
    decode(message) {
        const text = typeof message === "string" ? message : new TextDecoder().decode(messageBytes(message));
        const frames = [];
        for (const line of text.split("\n")) {
            if (line.trim() === "")
                continue;
            const value = JSON.parse(line);
            if (!isFrame(value))
                throw new Error("a frame is not a map");
            frames.push(value);
        }
        return frames;
    }
}
class MsgpackCodec {
    encoding = "msgpack";
    subprotocol = "plexus.v1.msgpack";
    #mp;
    constructor(mp) {
        this.#mp = mp;
    }
    encode(frame) {
        return this.#mp.encode(frame, { ignoreUndefined: true });
    }
    size(frame) {
        return typeof frame === "string" ? utf8.encode(frame).length : frame.length;
    }
    join(frames) {
        if (frames.length === 1)
            return frames[0];
        const parts = frames;
        const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
            out.set(p, at);
            at += p.length;
        }
        return out;
    }
    decode(message) {
        const frames = [];
        for (const value of this.#mp.decodeMulti(messageBytes(message))) {
            if (!isFrame(value))
                throw new Error("a frame is not a map");
            frames.push(value);
        }
        return frames;
    }
}
const json = new JsonCodec();
let msgpack;
/** The codec of an encoding (MessagePack is loaded on first use). */
export function loadCodec(encoding) {
    if (encoding === "json")
        return Promise.resolve(json);
    msgpack ??= import("@msgpack/msgpack").then((mp) => new MsgpackCodec(mp), (error) => {
        msgpack = undefined; // let a later attempt try again
        throw error;
    });
    return msgpack;
}

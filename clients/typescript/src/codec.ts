/**
 * Frame encoding: JSON text messages (`plexus.v1.json`) or MessagePack binary messages
 * (`plexus.v1.msgpack`), and batches (several frames in one WebSocket message).
 *
 * MessagePack support is loaded with a dynamic import the first time a client asks for it, so a
 * page that speaks JSON never loads (or needs to resolve) `@msgpack/msgpack`.
 */

import type { Encoding } from "./types.js";

/** A server or client frame: a map with string keys. */
export type Frame = Record<string, unknown>;

/** One encoded frame, ready to be batched. */
export type EncodedFrame = string | Uint8Array;

export interface Codec {
  readonly encoding: Encoding;
  readonly subprotocol: string;
  encode(frame: Frame): EncodedFrame;
  /** The frame's size in bytes on the wire. */
  size(frame: EncodedFrame): number;
  /** Joins frames into one WebSocket message (a batch). */
  join(frames: EncodedFrame[]): string | Uint8Array;
  /** Every frame of one WebSocket message. Throws on a message that does not decode. */
  decode(message: unknown): Frame[];
}

const utf8 = new TextEncoder();

function isFrame(value: unknown): value is Frame {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Bytes as standard base64 with padding (RFC 4648), in browsers and Node. */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** A `binary` field as bytes: MessagePack gives bytes, JSON a base64 string. */
export function toBytes(value: unknown): Uint8Array | undefined {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === "string") return fromBase64(value);
  return undefined;
}

function messageBytes(message: unknown): Uint8Array {
  if (message instanceof Uint8Array) return message;
  if (message instanceof ArrayBuffer) return new Uint8Array(message);
  if (ArrayBuffer.isView(message)) return new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
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

class JsonCodec implements Codec {
  readonly encoding = "json" as const;
  readonly subprotocol = "plexus.v1.json";

  encode(frame: Frame): string {
    return JSON.stringify(frame, (key, value) => {
      // The one place bytes travel: a payload's `binary` field, base64 in JSON.
      if (key === "binary" && value instanceof Uint8Array) return toBase64(value);
      return value;
    });
  }

  size(frame: EncodedFrame): number {
    return typeof frame === "string" ? utf8.encode(frame).length : frame.length;
  }

  join(frames: EncodedFrame[]): string {
    return frames.join("\n");
  }

  decode(message: unknown): Frame[] {
    const text = typeof message === "string" ? message : new TextDecoder().decode(messageBytes(message));
    const frames: Frame[] = [];
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      const value: unknown = JSON.parse(line);
      if (!isFrame(value)) throw new Error("a frame is not a map");
      frames.push(value);
    }
    return frames;
  }
}

type MsgpackModule = typeof import("@msgpack/msgpack");

class MsgpackCodec implements Codec {
  readonly encoding = "msgpack" as const;
  readonly subprotocol = "plexus.v1.msgpack";
  readonly #mp: MsgpackModule;

  constructor(mp: MsgpackModule) {
    this.#mp = mp;
  }

  encode(frame: Frame): Uint8Array {
    return this.#mp.encode(frame, { ignoreUndefined: true });
  }

  size(frame: EncodedFrame): number {
    return typeof frame === "string" ? utf8.encode(frame).length : frame.length;
  }

  join(frames: EncodedFrame[]): Uint8Array {
    if (frames.length === 1) return frames[0] as Uint8Array;
    const parts = frames as Uint8Array[];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  decode(message: unknown): Frame[] {
    const frames: Frame[] = [];
    for (const value of this.#mp.decodeMulti(messageBytes(message))) {
      if (!isFrame(value)) throw new Error("a frame is not a map");
      frames.push(value);
    }
    return frames;
  }
}

const json = new JsonCodec();
let msgpack: Promise<Codec> | undefined;

/** The codec of an encoding (MessagePack is loaded on first use). */
export function loadCodec(encoding: Encoding): Promise<Codec> {
  if (encoding === "json") return Promise.resolve(json);
  msgpack ??= import("@msgpack/msgpack").then(
    (mp) => new MsgpackCodec(mp),
    (error: unknown) => {
      msgpack = undefined; // let a later attempt try again
      throw error;
    },
  );
  return msgpack;
}

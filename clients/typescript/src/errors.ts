/** The client's one error type: a kind, and the server's code when the server refused. */

import { ErrorCode, isTransientCode } from "./codes.js";

/**
 * What went wrong, coarsely (mirrors `plexus_client::ErrorKind`).
 *
 * - `server`: the server answered with an error; see `code`, `message`, `data`.
 * - `timeout`: no reply within the request's timeout (time spent queued counts).
 * - `disconnected`: the connection dropped while the request was in flight (the server may or
 *   may not have handled it), or the request asked to fail fast while disconnected.
 * - `closed`: the client stopped for good (`disconnect()`, a close code that forbids
 *   reconnecting, refused credentials, attempts exhausted); see `closeCode`.
 * - `queue_full`: the bounded offline queue (or the subscription table) is full.
 * - `too_large`: the request is larger than the server's `max_message_bytes`; it was not sent.
 * - `already_subscribed`: this client already holds the channel (`code` is 108).
 * - `connect`: the WebSocket could not be opened or the handshake did not complete in time.
 * - `protocol`: the server sent a frame this client cannot decode.
 * - `config`: invalid options (no WebSocket implementation, bad URL).
 */
export type ErrorKind =
  | "server"
  | "timeout"
  | "disconnected"
  | "closed"
  | "queue_full"
  | "too_large"
  | "already_subscribed"
  | "connect"
  | "protocol"
  | "config";

export interface PlexusErrorInit {
  code?: number;
  data?: unknown;
  closeCode?: number;
}

/** An error of a client operation. Branch on `kind` and `code`, never on `message`. */
export class PlexusError extends Error {
  readonly kind: ErrorKind;
  /** The server's error code for `server` errors (see `ErrorCode`; ≥ 1000: the application's). */
  readonly code: number | undefined;
  /** Details a server handler attached to its error. */
  readonly data: unknown;
  /** The WebSocket close code that ended the client, for `closed` (and refused credentials). */
  readonly closeCode: number | undefined;

  constructor(kind: ErrorKind, message: string, init: PlexusErrorInit = {}) {
    super(message);
    this.name = "PlexusError";
    this.kind = kind;
    this.code = kind === "already_subscribed" ? ErrorCode.ALREADY_SUBSCRIBED : init.code;
    this.data = init.data;
    this.closeCode = init.closeCode;
  }

  /** Whether the same request may succeed if tried again later. */
  isTransient(): boolean {
    switch (this.kind) {
      case "server":
        return isTransientCode(this.code);
      case "timeout":
      case "disconnected":
      case "queue_full":
      case "connect":
        return true;
      default:
        return false;
    }
  }

  /** A copy with a close code attached. */
  withCloseCode(closeCode: number | undefined): PlexusError {
    return new PlexusError(this.kind, this.message, { code: this.code, data: this.data, closeCode });
  }

  /** @internal An error reply's body as an error. */
  static fromBody(body: { code?: unknown; message?: unknown; data?: unknown }): PlexusError {
    const code = typeof body.code === "number" ? body.code : ErrorCode.INTERNAL;
    const message = typeof body.message === "string" ? body.message : `error ${code}`;
    return new PlexusError("server", message, { code, data: body.data });
  }
}

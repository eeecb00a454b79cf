/** The client's one error type: a kind, and the server's code when the server refused. */
import { ErrorCode, isTransientCode } from "./codes.js";
/** An error of a client operation. Branch on `kind` and `code`, never on `message`. */
export class PlexusError extends Error {
    kind;
    /** The server's error code for `server` errors (see `ErrorCode`; ≥ 1000: the application's). */
    code;
    /** Details a server handler attached to its error. */
    data;
    /** The WebSocket close code that ended the client, for `closed` (and refused credentials). */
    closeCode;
    constructor(kind, message, init = {}) {
        super(message);
        this.name = "PlexusError";
        this.kind = kind;
        this.code = kind === "already_subscribed" ? ErrorCode.ALREADY_SUBSCRIBED : init.code;
        this.data = init.data;
        this.closeCode = init.closeCode;
    }
    /** Whether the same request may succeed if tried again later. */
    isTransient() {
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
    withCloseCode(closeCode) {
        return new PlexusError(this.kind, this.message, { code: this.code, data: this.data, closeCode });
    }
    /** @internal An error reply's body as an error. */
    static fromBody(body) {
        const code = typeof body.code === "number" ? body.code : ErrorCode.INTERNAL;
        const message = typeof body.message === "string" ? body.message : `error ${code}`;
        return new PlexusError("server", message, { code, data: body.data });
    }
}

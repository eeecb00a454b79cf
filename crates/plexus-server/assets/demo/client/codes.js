/**
 * The error codes (in error replies) and close codes (on the WebSocket close frame) of the
 * native protocol v1, as listed in `docs/protocol.md` sections 8.2 and 9. Codes are stable.
 */
/** Error codes Plexus itself sends. Codes from 1000 up belong to the application. */
export const ErrorCode = {
    /** The server failed while handling the request. Retry later. */
    INTERNAL: 100,
    /** The request needs an authenticated connection. */
    UNAUTHORIZED: 101,
    /** The `op` is not an operation of this server. */
    UNKNOWN_OPERATION: 102,
    /** `call` named a method no handler is registered for. */
    METHOD_NOT_FOUND: 103,
    /** Missing or invalid parameters. */
    BAD_REQUEST: 104,
    /** A namespace rule or a guard refused the request. */
    PERMISSION_DENIED: 105,
    /** A limit was reached (subscriptions per connection, connections per user). */
    LIMIT_EXCEEDED: 106,
    /** The channel name is empty, too long or contains control characters. */
    BAD_CHANNEL: 107,
    /** The connection is already subscribed to the channel. */
    ALREADY_SUBSCRIBED: 108,
    /** The connection is not subscribed to the channel. */
    NOT_SUBSCRIBED: 109,
    /** The handler (or the auth hook) did not answer in time. */
    TIMEOUT: 110,
    /** The request exceeded the connection's rate limit; it was not executed. */
    TOO_MANY_REQUESTS: 111,
    /** The token or the credentials were refused (the server then closes with 4502). */
    AUTH_FAILED: 112,
    /** `connect` on a connection that is already authenticated. */
    ALREADY_AUTHENTICATED: 113,
    /** The feature is not enabled on this server or namespace. */
    NOT_AVAILABLE: 114,
    /** The token has expired (the server then closes with 4506). */
    TOKEN_EXPIRED: 115,
    /** More than `max_pending_requests` requests are waiting for a reply. */
    TOO_MANY_PENDING: 116,
    /** A payload could not be converted for delivery. */
    BAD_PAYLOAD: 117,
    /** A backend the server asked is down, slow or answered garbage. Retry later. */
    BACKEND_UNAVAILABLE: 118,
    /** The named room, user or record does not exist. */
    NOT_FOUND: 119,
    /** The target's state refuses the operation (a room or user exists already). */
    CONFLICT: 120,
    /** A record write expected another version; `data.version` is the current one. */
    VERSION_CONFLICT: 121,
    /** A JSON Patch is malformed or does not apply; the record is unchanged. */
    BAD_PATCH: 122,
    /** A record limit: value size, operations per patch, records per group. */
    RECORD_LIMIT: 123,
    /** The first code an application may use for its own errors. */
    APPLICATION_MIN: 1000,
};
/** Close codes the server sends. 4000–4499: reconnect; 4500–4999 and 1000: never reconnect. */
export const CloseCode = {
    NORMAL: 1000,
    MESSAGE_TOO_BIG: 1009,
    SHUTDOWN: 4000,
    SLOW_CONSUMER: 4001,
    HEARTBEAT_TIMEOUT: 4002,
    AUTH_TIMEOUT: 4003,
    INSUFFICIENT_STATE: 4004,
    RECONNECT: 4005,
    FLOOD: 4006,
    BAD_FRAME: 4500,
    UNSUPPORTED_VERSION: 4501,
    AUTH_FAILED: 4502,
    CONNECTION_LIMIT: 4504,
    DISCONNECTED: 4505,
    TOKEN_EXPIRED: 4506,
};
/**
 * Whether a client reconnects after the server closed with `code` (section 9 of the protocol):
 * never after 1000 or 4500–4999; always after 4000–4499 and any other code (1001, 1006, …).
 */
export function shouldReconnect(code) {
    if (code === undefined)
        return true;
    if (code === CloseCode.NORMAL)
        return false;
    if (code >= 4500 && code <= 4999)
        return false;
    return true;
}
/** The server error codes worth retrying later. */
export function isTransientCode(code) {
    return (code === ErrorCode.INTERNAL ||
        code === ErrorCode.TIMEOUT ||
        code === ErrorCode.TOO_MANY_REQUESTS ||
        code === ErrorCode.TOO_MANY_PENDING ||
        code === ErrorCode.BACKEND_UNAVAILABLE);
}

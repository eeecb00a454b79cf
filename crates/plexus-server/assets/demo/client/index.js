/**
 * plexus-client: the TypeScript client of the Plexus real-time messaging server, for browsers
 * and Node 20. See `docs/typescript-client.md`.
 */
export { Client, CLIENT_NAME, PROTOCOL_VERSION } from "./client.js";
export { Subscription } from "./subscription.js";
export { PlexusError } from "./errors.js";
export { RecordWatch, applyPatch } from "./records.js";
export { CloseCode, ErrorCode, isTransientCode, shouldReconnect } from "./codes.js";
export { backoffDelay, backoffWithDefaults } from "./backoff.js";

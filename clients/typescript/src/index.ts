/**
 * plexus-client: the TypeScript client of the Plexus real-time messaging server, for browsers
 * and Node 20. See `docs/typescript-client.md`.
 */

export { Client, CLIENT_NAME, PROTOCOL_VERSION } from "./client.js";
export type { ClientOptions, Provider, WebSocketConstructor, WebSocketLike } from "./client.js";
export { Subscription } from "./subscription.js";
export type { HistoryOptions, PublishOptions, RequestOptions, SubscribeOptions } from "./subscription.js";
export { PlexusError } from "./errors.js";
export { RecordWatch, applyPatch } from "./records.js";
export type { PatchOperation, RecordChange, RecordState, RecordVersion, RecordWatchEvents } from "./records.js";
export type { ErrorKind } from "./errors.js";
export { CloseCode, ErrorCode, isTransientCode, shouldReconnect } from "./codes.js";
export { backoffDelay, backoffWithDefaults } from "./backoff.js";
export type { Backoff, BackoffOptions, Jitter } from "./backoff.js";
export type {
  ClientEvents,
  ConnectionInfo,
  ConnectionState,
  EchoEvent,
  Encoding,
  HistoryPage,
  LastSeen,
  Mail,
  Message,
  Position,
  PresenceEvent,
  PresenceMember,
  PresenceStateEvent,
  PresenceStats,
  Publication,
  Publisher,
  ServerLimits,
  SubscribedEvent,
  SubscriptionEvents,
  UnsubscribedEvent,
} from "./types.js";

/** The values the client hands to the application. */

import type { PlexusError } from "./errors.js";

/** The frame encoding, chosen with the WebSocket subprotocol. */
export type Encoding = "json" | "msgpack";

/** A position in a channel: the offset of the last publication seen and the channel's epoch. */
export interface Position {
  offset: number;
  /** Opaque; compare for equality only. It changes when the channel's history was lost. */
  epoch: string;
}

/** Who published a publication (when the channel's namespace attaches it). */
export interface Publisher {
  conn: string;
  user?: string;
  info?: unknown;
}

/** A publication of a channel. Exactly one of `data` (any JSON value) and `binary` is set. */
export interface Publication {
  channel: string;
  offset: number;
  epoch: string;
  data?: unknown;
  binary?: Uint8Array;
  publisher?: Publisher;
  /** The event name it was published under; absent for the default event. */
  event?: string;
}

/** The limits the server announced in its hello. */
export interface ServerLimits {
  maxMessageBytes: number;
  maxSubscriptions: number;
  maxChannelBytes: number;
  requestsPerSecond: number;
  requestsBurst: number;
  maxPendingRequests: number;
}

/** What the client knows about the current connection. */
export interface ConnectionInfo {
  conn: string;
  node: string;
  /** The authenticated user; absent for an anonymous connection. */
  user?: string;
  info?: unknown;
  pingIntervalMs: number;
  maxMissedPongs: number;
  limits: ServerLimits;
}

/** `idle` until `connect()` or `start()`; `closed` is final. */
export type ConnectionState = "idle" | "connecting" | "connected" | "closed";

/** A subscription (re)established on the server. */
export interface SubscribedEvent {
  channel: string;
  /** The channel's position right after the subscribe (after the recovered publications). */
  position: Position;
  /** False the first time, true after a reconnect or a gap repair. */
  resubscribed: boolean;
  /** The server subscribed this connection on its own (a `subscribed` push). */
  serverSide: boolean;
  /**
   * With a position to recover from: whether every missed publication was delivered. `false`
   * means some are lost to this subscription (see `reason`): load what you need with
   * `history()`. Absent when nothing was to be recovered.
   */
  recovered?: boolean;
  /** Why recovery failed: `epoch_changed`, `history_trimmed`, `too_many`, `not_available`, … */
  reason?: string;
  /** How many recovered publications follow as `publication` events. */
  missed: number;
  /** The last publications asked for with the `history` option, oldest first (first subscribe). */
  history: Publication[];
}

/** Why a subscription ended. */
export interface UnsubscribedEvent {
  channel: string;
  /**
   * `client` (you unsubscribed), `server` (the server removed it; see `message`),
   * `subscribe_failed` (the server refused the subscribe; see `error`), `client_closed` (the
   * client stopped).
   */
  reason: "client" | "server" | "subscribe_failed" | "client_closed";
  message?: string;
  error?: PlexusError;
}

/** A connection joined or left a channel (presence). */
export interface PresenceEvent {
  channel: string;
  conn: string;
  user?: string;
  info?: unknown;
}

/** A connection's ephemeral presence state changed; `state` absent: cleared. */
export interface PresenceStateEvent {
  channel: string;
  conn: string;
  user?: string;
  state?: unknown;
}

/** One member of a channel's presence. */
export interface PresenceMember {
  conn: string;
  user?: string;
  info?: unknown;
  state?: unknown;
}

export interface PresenceStats {
  connections: number;
  users: number;
}

/** A message sent to this connection (`connection`), its user (`user`) or everyone (`all`). */
export interface Message {
  to: "connection" | "user" | "all" | string;
  data?: unknown;
  binary?: Uint8Array;
  /** The event name it was sent under; absent for the default event. */
  event?: string;
}

/** A durable message for this connection's user. */
export interface Mail {
  /** The user's sequence number: +1 per durable message. */
  seq: number;
  data?: unknown;
  binary?: Uint8Array;
  /** When it was sent (Unix ms). */
  sentMs: number;
}

/** Another connection of this user connected, disconnected, joined or left a channel. */
export interface EchoEvent {
  event: "connected" | "disconnected" | "joined" | "left" | string;
  conn: string;
  channel?: string;
}

/** A channel's kept publications, and its current position. */
export interface HistoryPage {
  publications: Publication[];
  offset: number;
  epoch: string;
}

export interface LastSeen {
  online: boolean;
  lastSeenMs?: number;
}

/** The events of a `Client`. */
export interface ClientEvents {
  state: ConnectionState;
  /** Attempt `attempt` (1, 2, … since the last connection) starts after `delayMs`. */
  connecting: { attempt: number; delayMs: number };
  connectFailed: { attempt: number; error: PlexusError };
  connected: { reconnected: boolean; info: ConnectionInfo };
  /** The connection ended; `code` is the close code, if any. `willReconnect: false` is final. */
  disconnected: { code?: number; reason: string; willReconnect: boolean };
  gaveUp: { attempts: number; error: PlexusError };
  latency: { rttMs: number };
  message: Message;
  /** A durable message. Acknowledged automatically once every handler has finished. */
  mail: Mail;
  /** A publication of a server-side subscription. */
  publication: Publication;
  subscribed: SubscribedEvent;
  unsubscribed: UnsubscribedEvent;
  /** Restoring a subscription failed; transient errors are retried with backoff. */
  subscribeFailed: { channel: string; error: PlexusError; willRetry: boolean };
  join: PresenceEvent;
  leave: PresenceEvent;
  presenceState: PresenceStateEvent;
  echo: EchoEvent;
  /** An `error` push: a frame sent without id failed. */
  serverError: PlexusError;
  /** A change of a subscribed record (`RecordWatch` follows them for you). */
  record: import("./records.js").RecordChange;
}

/** The events of a `Subscription`. */
export interface SubscriptionEvents {
  publication: Publication;
  subscribed: SubscribedEvent;
  unsubscribed: UnsubscribedEvent;
  join: PresenceEvent;
  leave: PresenceEvent;
  presenceState: PresenceStateEvent;
  /** A restore failed; `willRetry` tells whether the client tries again. */
  error: { error: PlexusError; willRetry: boolean };
}

/** A channel subscription: its events, its position, and the channel's read operations. */

import { Emitter } from "./emitter.js";
import type { PlexusError } from "./errors.js";
import type {
  HistoryPage,
  Position,
  PresenceMember,
  PresenceStats,
  SubscribedEvent,
  SubscriptionEvents,
  UnsubscribedEvent,
} from "./types.js";

/** Options of `Client.subscribe`. */
export interface SubscribeOptions {
  /**
   * Also return the channel's last `history` publications (oldest first) with the first
   * subscribe, in `SubscribedEvent.history` (when the channel keeps history).
   */
  history?: number;
  /** Start from this position: the first subscribe recovers what was published after it. */
  since?: Position;
  /**
   * Recover missed publications when the subscription is restored after a reconnect, and repair
   * gaps in the live stream (default true). With `false`, a restored subscription starts at the
   * channel's current position and gaps are not repaired.
   */
  recover?: boolean;
  /** A subscription token, for channels that require one. */
  token?: string;
  /** Timeout of the first subscribe, in ms (default: the client's `requestTimeoutMs`). */
  timeoutMs?: number;
  /** Fail at once (instead of waiting in the queue) when the client is not connected. */
  failFast?: boolean;
}

/** Options of `publish`: a request's options and an event name. */
export interface PublishOptions extends RequestOptions {
  /** An event name: subscribers see it as `Publication.event`; Socket.IO clients receive the publication as this event. */
  event?: string;
}

export interface HistoryOptions {
  /** Only publications with an offset greater than this. */
  since?: number;
  /** At most this many (the server caps it). */
  limit?: number;
  /** Newest first. */
  reverse?: boolean;
}

export interface RequestOptions {
  /** Overrides the client's `requestTimeoutMs`; counted from the call, queue time included. */
  timeoutMs?: number;
  /** Fail at once with `disconnected` instead of waiting in the queue while not connected. */
  failFast?: boolean;
}

/** @internal What a subscription needs from its client. */
export interface SubscriptionHost {
  unsubscribe(sub: Subscription): Promise<void>;
  publish(channel: string, data: unknown, options?: PublishOptions): Promise<Position>;
  history(channel: string, options?: HistoryOptions, request?: RequestOptions): Promise<HistoryPage>;
  presence(channel: string, options?: RequestOptions): Promise<PresenceMember[]>;
  presenceStats(channel: string, options?: RequestOptions): Promise<PresenceStats>;
  setPresenceState(sub: Subscription, state: unknown, expireMs: number | undefined, options?: RequestOptions): Promise<void>;
}

/** @internal */
export type SubState = "queued" | "inflight" | "active" | "idle" | "retrying" | "ended";

/**
 * A subscription to one channel, made by `Client.subscribe` (or by the server: `serverSide`).
 *
 * It survives reconnects: the client subscribes again, with the last position it saw, and the
 * server delivers what was missed (`subscribed` with `recovered: true`, then the missed
 * publications) or says it cannot (`recovered: false` and a `reason`). A gap in the live stream
 * (an offset that is not the last + 1) is repaired the same way.
 */
export class Subscription extends Emitter<SubscriptionEvents> {
  readonly channel: string;
  /** Resolves with the first `subscribed` event; rejects when the first subscribe fails. */
  readonly ready: Promise<SubscribedEvent>;

  /** @internal */ _options: SubscribeOptions;
  /** @internal */ _state: SubState = "idle";
  /** @internal */ _position: Position | undefined;
  /** @internal */ _inflightId: number | undefined;
  /** @internal */ _everSubscribed = false;
  /** @internal */ _serverSide: boolean;
  /** @internal */ _presenceState: { state: unknown } | undefined;
  /** @internal */ _retryAttempt = 0;
  /** @internal */ _retryPrevMs = 0;
  /** @internal */ _retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** @internal */ _readyTimer: ReturnType<typeof setTimeout> | undefined;
  /** @internal */ _resyncedOnDuplicate = false;
  /** @internal */ _settled = false;
  #resolve!: (event: SubscribedEvent) => void;
  #reject!: (error: PlexusError) => void;
  #host: SubscriptionHost;

  /** @internal */
  constructor(
    channel: string,
    options: SubscribeOptions,
    host: SubscriptionHost,
    serverSide: boolean,
    onHandlerError?: (error: unknown, event: string) => void,
  ) {
    super(onHandlerError);
    this.channel = channel;
    this._options = options;
    this._position = options.since ? { ...options.since } : undefined;
    this._serverSide = serverSide;
    this.#host = host;
    this.ready = new Promise<SubscribedEvent>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Awaiting `ready` is optional: a rejection nobody awaits must not crash the program.
    this.ready.catch(() => {});
  }

  /** The position of the last publication delivered (or of the subscribe), if known. */
  get position(): Position | undefined {
    return this._position ? { ...this._position } : undefined;
  }

  /** Subscribed on the current connection and delivering publications. */
  get active(): boolean {
    return this._state === "active";
  }

  /** Ended for good (unsubscribed, refused, or the client stopped). */
  get ended(): boolean {
    return this._state === "ended";
  }

  /** Whether the server created this subscription (a `subscribed` push). */
  get serverSide(): boolean {
    return this._serverSide;
  }

  /** Stops the subscription. Unsubscribing from an ended subscription does nothing. */
  unsubscribe(): Promise<void> {
    return this.#host.unsubscribe(this);
  }

  publish(data: unknown, options?: PublishOptions): Promise<Position> {
    return this.#host.publish(this.channel, data, options);
  }

  history(options?: HistoryOptions, request?: RequestOptions): Promise<HistoryPage> {
    return this.#host.history(this.channel, options, request);
  }

  presence(options?: RequestOptions): Promise<PresenceMember[]> {
    return this.#host.presence(this.channel, options);
  }

  presenceStats(options?: RequestOptions): Promise<PresenceStats> {
    return this.#host.presenceStats(this.channel, options);
  }

  /**
   * Sets this connection's ephemeral presence state in the channel (`null` clears it). Without
   * `expireMs`, the state is remembered and set again whenever the subscription is restored.
   */
  setPresenceState(state: unknown, options: RequestOptions & { expireMs?: number } = {}): Promise<void> {
    return this.#host.setPresenceState(this, state, options.expireMs, options);
  }

  /** @internal */
  _emit<K extends keyof SubscriptionEvents>(event: K, value: SubscriptionEvents[K]): unknown[] {
    return this.emit(event, value);
  }

  /** @internal */
  _resolveReady(event: SubscribedEvent): void {
    if (this._settled) return;
    this._settled = true;
    clearTimeout(this._readyTimer);
    this.#resolve(event);
  }

  /** @internal */
  _rejectReady(error: PlexusError): void {
    if (this._settled) return;
    this._settled = true;
    clearTimeout(this._readyTimer);
    this.#reject(error);
  }

  /** @internal */
  _end(event: UnsubscribedEvent, readyError: PlexusError): void {
    this._state = "ended";
    clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    this._rejectReady(event.error ?? readyError);
    this.emit("unsubscribed", event);
  }
}

/** A channel subscription: its events, its position, and the channel's read operations. */
import { Emitter } from "./emitter.js";
/**
 * A subscription to one channel, made by `Client.subscribe` (or by the server: `serverSide`).
 *
 * It survives reconnects: the client subscribes again, with the last position it saw, and the
 * server delivers what was missed (`subscribed` with `recovered: true`, then the missed
 * publications) or says it cannot (`recovered: false` and a `reason`). A gap in the live stream
 * (an offset that is not the last + 1) is repaired the same way.
 */
export class Subscription extends Emitter {
    channel;
    /** Resolves with the first `subscribed` event; rejects when the first subscribe fails. */
    ready;
    /** @internal */ _options;
    /** @internal */ _state = "idle";
    /** @internal */ _position;
    /** @internal */ _inflightId;
    /** @internal */ _everSubscribed = false;
    /** @internal */ _serverSide;
    /** @internal */ _presenceState;
    /** @internal */ _retryAttempt = 0;
    /** @internal */ _retryPrevMs = 0;
    /** @internal */ _retryTimer;
    /** @internal */ _readyTimer;
    /** @internal */ _resyncedOnDuplicate = false;
    /** @internal */ _settled = false;
    #resolve;
    #reject;
    #host;
    /** @internal */
    constructor(channel, options, host, serverSide, onHandlerError) {
        super(onHandlerError);
        this.channel = channel;
        this._options = options;
        this._position = options.since ? { ...options.since } : undefined;
        this._serverSide = serverSide;
        this.#host = host;
        this.ready = new Promise((resolve, reject) => {
            this.#resolve = resolve;
            this.#reject = reject;
        });
        // Awaiting `ready` is optional: a rejection nobody awaits must not crash the program.
        this.ready.catch(() => { });
    }
    /** The position of the last publication delivered (or of the subscribe), if known. */
    get position() {
        return this._position ? { ...this._position } : undefined;
    }
    /** Subscribed on the current connection and delivering publications. */
    get active() {
        return this._state === "active";
    }
    /** Ended for good (unsubscribed, refused, or the client stopped). */
    get ended() {
        return this._state === "ended";
    }
    /** Whether the server created this subscription (a `subscribed` push). */
    get serverSide() {
        return this._serverSide;
    }
    /** Stops the subscription. Unsubscribing from an ended subscription does nothing. */
    unsubscribe() {
        return this.#host.unsubscribe(this);
    }
    publish(data, options) {
        return this.#host.publish(this.channel, data, options);
    }
    history(options, request) {
        return this.#host.history(this.channel, options, request);
    }
    presence(options) {
        return this.#host.presence(this.channel, options);
    }
    presenceStats(options) {
        return this.#host.presenceStats(this.channel, options);
    }
    /**
     * Sets this connection's ephemeral presence state in the channel (`null` clears it). Without
     * `expireMs`, the state is remembered and set again whenever the subscription is restored.
     */
    setPresenceState(state, options = {}) {
        return this.#host.setPresenceState(this, state, options.expireMs, options);
    }
    /** @internal */
    _emit(event, value) {
        return this.emit(event, value);
    }
    /** @internal */
    _resolveReady(event) {
        if (this._settled)
            return;
        this._settled = true;
        clearTimeout(this._readyTimer);
        this.#resolve(event);
    }
    /** @internal */
    _rejectReady(error) {
        if (this._settled)
            return;
        this._settled = true;
        clearTimeout(this._readyTimer);
        this.#reject(error);
    }
    /** @internal */
    _end(event, readyError) {
        this._state = "ended";
        clearTimeout(this._retryTimer);
        this._retryTimer = undefined;
        this._rejectReady(event.error ?? readyError);
        this.emit("unsubscribed", event);
    }
}

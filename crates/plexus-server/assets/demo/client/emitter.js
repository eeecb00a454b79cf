/** A small typed event emitter: one handler throwing never stops the others or the client. */
export class Emitter {
    #handlers = new Map();
    #onHandlerError;
    constructor(onHandlerError) {
        this.#onHandlerError =
            onHandlerError ??
                ((error, event) => {
                    console.error(`plexus-client: a "${event}" handler threw`, error);
                });
    }
    /** Adds a handler; returns a function that removes it. */
    on(event, handler) {
        let set = this.#handlers.get(event);
        if (!set) {
            set = new Set();
            this.#handlers.set(event, set);
        }
        set.add(handler);
        return () => this.off(event, handler);
    }
    /** Adds a handler that runs once. */
    once(event, handler) {
        const off = this.on(event, (e) => {
            off();
            return handler(e);
        });
        return off;
    }
    off(event, handler) {
        this.#handlers.get(event)?.delete(handler);
    }
    /** How many handlers listen to `event`. */
    listenerCount(event) {
        return this.#handlers.get(event)?.size ?? 0;
    }
    /**
     * Calls every handler of `event` in order. Returns what they returned (a promise for async
     * handlers); a handler that threw contributes a rejected promise.
     */
    emit(event, value) {
        const set = this.#handlers.get(event);
        if (!set || set.size === 0)
            return [];
        const results = [];
        for (const handler of [...set]) {
            try {
                const result = handler(value);
                if (result && typeof result.then === "function") {
                    const promise = Promise.resolve(result);
                    promise.catch((error) => this.#onHandlerError(error, String(event)));
                    results.push(promise);
                }
                else {
                    results.push(result);
                }
            }
            catch (error) {
                this.#onHandlerError(error, String(event));
                const failed = Promise.reject(error);
                failed.catch(() => { });
                results.push(failed);
            }
        }
        return results;
    }
}

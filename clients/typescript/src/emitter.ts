/** A small typed event emitter: one handler throwing never stops the others or the client. */

export type Handler<T> = (event: T) => unknown;

export class Emitter<Events extends object> {
  #handlers = new Map<keyof Events, Set<Handler<never>>>();
  #onHandlerError: (error: unknown, event: string) => void;

  constructor(onHandlerError?: (error: unknown, event: string) => void) {
    this.#onHandlerError =
      onHandlerError ??
      ((error, event) => {
        console.error(`plexus-client: a "${event}" handler threw`, error);
      });
  }

  /** Adds a handler; returns a function that removes it. */
  on<K extends keyof Events>(event: K, handler: Handler<Events[K]>): () => void {
    let set = this.#handlers.get(event);
    if (!set) {
      set = new Set();
      this.#handlers.set(event, set);
    }
    set.add(handler as Handler<never>);
    return () => this.off(event, handler);
  }

  /** Adds a handler that runs once. */
  once<K extends keyof Events>(event: K, handler: Handler<Events[K]>): () => void {
    const off = this.on(event, (e) => {
      off();
      return handler(e);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, handler: Handler<Events[K]>): void {
    this.#handlers.get(event)?.delete(handler as Handler<never>);
  }

  /** How many handlers listen to `event`. */
  listenerCount<K extends keyof Events>(event: K): number {
    return this.#handlers.get(event)?.size ?? 0;
  }

  /**
   * Calls every handler of `event` in order. Returns what they returned (a promise for async
   * handlers); a handler that threw contributes a rejected promise.
   */
  protected emit<K extends keyof Events>(event: K, value: Events[K]): unknown[] {
    const set = this.#handlers.get(event);
    if (!set || set.size === 0) return [];
    const results: unknown[] = [];
    for (const handler of [...set]) {
      try {
        const result = (handler as Handler<Events[K]>)(value);
        if (result && typeof (result as PromiseLike<unknown>).then === "function") {
          const promise = Promise.resolve(result);
          promise.catch((error) => this.#onHandlerError(error, String(event)));
          results.push(promise);
        } else {
          results.push(result);
        }
      } catch (error) {
        this.#onHandlerError(error, String(event));
        const failed = Promise.reject(error);
        failed.catch(() => {});
        results.push(failed);
      }
    }
    return results;
  }
}

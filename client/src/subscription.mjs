// What subscribe() returns: one handler of a topic, and the topic's state as the server sees it.
//
//   pending  asked for, not confirmed yet (also while the client reconnects)
//   live     confirmed on the current connection: events flow
//   refused  the server refused this topic (error says why); the others go on
//   ended    unsubscribed (by the page, or the server's rtdelivery.unsubscribe()), or closed

export class Subscription {
  constructor(client, entry, onEvent, options) {
    this.topic = entry.topic;
    this._client = client;
    this._entry = entry;
    this._fn = onEvent;
    this._onState = typeof options.onState === "function" ? options.onState : null;
    this._onError = typeof options.onError === "function" ? options.onError : null;
    this._left = false;
    this._last = null;
  }

  /** "pending" | "live" | "refused" | "ended" */
  get state() {
    return this._left ? "ended" : this._entry.state;
  }

  /** Why the server refused it (an RTDeliveryError with `.topic`), else null. */
  get error() {
    return this._entry.error;
  }

  /** Removes this handler; the topic is left when its last handler goes. */
  unsubscribe() {
    if (this._left) return;
    var entry = this._entry;
    var client = this._client;
    entry.handlers.delete(this);
    this._left = true;
    if (client._topics.get(this.topic) === entry && entry.handlers.size === 0) {
      client.unsubscribe(this.topic);
    }
    this._changed();
  }

  _changed() {
    var state = this.state;
    if (state === this._last) return;
    this._last = state;
    if (this._onState) this._call(this._onState, state);
  }

  _error(error) {
    if (this._onError) this._call(this._onError, error);
  }

  _call(fn, value) {
    try {
      fn(value, this);
    } catch (error) {
      this._client._emit("error", error);
    }
  }
}

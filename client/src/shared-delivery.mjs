// Tab sharing: delivery in every tab. Each tab drops an event at or before the last seq it
// delivered in its topic; a seq gap (seq is contiguous per topic) is filled from history() from
// the tab's own cursor while newer events wait; client events from the leader's client update
// this tab's subscriptions. Methods of SharedClient (shared.mjs), which installs them.

const MAX_CATCH_UP_PAGES = 1000;

export const deliveryMethods = {
  /** Delivers an event once, in seq order; a gap is filled from history first. */
  _deliver(event) {
    var entry = event && this._topics.get(event.topic);
    if (!entry) return;
    if (entry.catching) {
      entry.buffer.push(event);
      return;
    }
    if (entry.lastSeq !== null && event.seq <= entry.lastSeq) {
      this._own.duplicates += 1;
      return;
    }
    if (entry.lastSeq !== null && event.seq > entry.lastSeq + 1 && !entry.noCatchUp) {
      entry.buffer.push(event);
      this._catchUp(entry);
      return;
    }
    this._hand(entry, event);
  },

  _hand(entry, event) {
    entry.lastSeq = event.seq;
    if (event.id) entry.cursor = event.id;
    this._own.delivered += 1;
    var self = this;
    entry.handlers.forEach(function (handler) {
      try {
        handler.fn(event);
      } catch (error) {
        self._emit("error", error);
      }
    });
  },

  async _catchUp(entry) {
    if (entry.catching) return;
    entry.catching = true;
    this._own.catchUps += 1;
    var cursor = entry.cursor;
    try {
      for (var page = 0; page < MAX_CATCH_UP_PAGES && cursor; page++) {
        var answer = await this.history(entry.topic, { cursor: cursor });
        if (this._topics.get(entry.topic) !== entry) return;
        if (answer.recovered === false) {
          this._resetEntry(entry, answer.cursor);
          break;
        }
        var events = answer.events || [];
        for (var i = 0; i < events.length; i++) {
          if (entry.lastSeq === null || events[i].seq > entry.lastSeq) this._hand(entry, events[i]);
        }
        if (events.length === 0 || !answer.cursor || answer.cursor === cursor) break;
        cursor = answer.cursor;
      }
    } catch (error) {
      // No history to fill the gap from: never a silent gap, say it as a reset.
      if (this._topics.get(entry.topic) === entry) {
        this._emit("error", error);
        this._resetEntry(entry, null);
      }
    } finally {
      entry.catching = false;
      var buffer = entry.buffer.sort(function (a, b) { return a.seq - b.seq; });
      entry.buffer = [];
      // What history did not have is not asked for again (the gap would repeat): a reset.
      entry.noCatchUp = true;
      for (var k = 0; k < buffer.length; k++) {
        var event = buffer[k];
        if (entry.lastSeq !== null && event.seq > entry.lastSeq + 1) this._resetEntry(entry, null);
        this._deliver(event);
      }
      entry.noCatchUp = false;
    }
  },

  _resetEntry(entry, cursor) {
    this._own.resets += 1;
    entry.lastSeq = null;
    if (cursor) entry.cursor = cursor;
    this._emit("reset", { topic: entry.topic, transport: this.transport });
  },

  /** A client event from the leader's client (in the leader tab or through the channel). */
  _clientEvent(name, data, cursor) {
    if (data && data.__error) data = this._error(data.__error);
    else if (data && typeof data === "object" && !Array.isArray(data)) {
      var self = this;
      Object.keys(data).forEach(function (key) {
        if (data[key] && data[key].__error) data[key] = self._error(data[key].__error);
      });
    }
    var topic = data && typeof data === "object" ? data.topic : undefined;
    var entry = typeof topic === "string" ? this._topics.get(topic) : undefined;
    // About another tab's topic (presence is for watchPresence() too).
    if (typeof topic === "string" && !entry && name !== "presence") return;
    if (entry) {
      if (name === "reset") {
        if (entry.catching) return; // the catch-up's history answer says it
        this._own.resets += 1;
        entry.lastSeq = null;
      } else if (name === "subscribed") {
        if (cursor && entry.lastSeq === null && !entry.cursor) entry.cursor = cursor;
        this._subState(entry, "live", null);
      } else if (name === "subscription") {
        // This tab's own "subscription" events come from _subState ("ended": "unsubscribed").
        if (data.state !== "ended") this._subState(entry, data.state, data.error || null);
        return;
      } else if (name === "error" && entry.state !== "refused") {
        this._subState(entry, "refused", data);
      } else if (name === "unsubscribed") {
        this._topics.delete(topic);
        this._subState(entry, "ended", null);
      }
    }
    this._emit(name, data);
  },

  _subState(entry, state, error) {
    if (!state || (entry.state === state && entry.error === error)) return;
    entry.state = state;
    entry.error = error;
    this._emit("subscription", { topic: entry.topic, state: state, error: error });
    var self = this;
    entry.handlers.forEach(function (handler) {
      if (handler.onState) self._call(handler.onState, state, handler.sub);
      if (state === "refused" && error && handler.onError) self._call(handler.onError, error, handler.sub);
    });
  },

  _call(fn, value, sub) {
    try {
      fn(value, sub);
    } catch (error) {
      this._emit("error", error);
    }
  },

  _error(plain) {
    var error = new this._Error(plain.message, plain.code, plain.status);
    if (plain.topic) error.topic = plain.topic;
    return error;
  },
};

// The client: subscriptions, cursors, transport choice and fallback, reconnection.

import { backoffDelay } from "./backoff.mjs";
import { STATE_EVENTS, TRANSPORTS } from "./constants.mjs";
import { RTDeliveryError, httpError } from "./errors.mjs";
import { baseHref, pageConfig, readCookie, supported } from "./env.mjs";
import { HttpConnection } from "./http.mjs";
import { WsConnection } from "./ws.mjs";

export class Client {
  /**
   * @param {object} [options]
   * @param {string} [options.url] where rtdelivery's URLs are mounted; by default the
   *   page's `{% rtdelivery_config %}` element says (the URLconf's prefix), else "/rt/"
   * @param {string[]} [options.transports] candidates in order; one entry pins it
   * @param {number} [options.pollInterval=5000] short polling interval (ms)
   * @param {{base?: number, max?: number}} [options.backoff] reconnect backoff (ms)
   */
  constructor(options) {
    options = options || {};
    var url = options.url || pageConfig().url || "/rt/";
    this.url = url.charAt(url.length - 1) === "/" ? url : url + "/";
    var transports = options.transports || TRANSPORTS;
    if (typeof transports === "string") transports = [transports];
    if (!Array.isArray(transports) || transports.length === 0) {
      throw new TypeError("Expected transports as a non-empty list of " + TRANSPORTS.join(", ") + ".");
    }
    transports.forEach(function (name) {
      if (TRANSPORTS.indexOf(name) < 0) {
        throw new TypeError("Unknown transport " + JSON.stringify(name) + "; expected one of " + TRANSPORTS.join(", ") + ".");
      }
    });
    var backoff = options.backoff || {};
    this.options = {
      transports: transports.slice(),
      wsUrl: options.wsUrl || null,
      pollInterval: options.pollInterval != null ? options.pollInterval : 5000,
      longpollTimeout: options.longpollTimeout != null ? options.longpollTimeout : 25,
      openTimeout: options.openTimeout != null ? options.openTimeout : 10000,
      pingInterval: options.pingInterval != null ? options.pingInterval : 25000,
      pongTimeout: options.pongTimeout != null ? options.pongTimeout : 10000,
      requestTimeout: options.requestTimeout != null ? options.requestTimeout : 15000,
      maxProvenFailures: options.maxProvenFailures != null ? options.maxProvenFailures : 5,
      csrfCookieName: options.csrfCookieName || "csrftoken",
      backoff: {
        base: backoff.base != null ? backoff.base : 500,
        max: backoff.max != null ? backoff.max : 30000,
      },
      fetch: options.fetch || null,
      getToken: options.getToken || null,
    };
    if (this.options.getToken !== null && typeof this.options.getToken !== "function") {
      throw new TypeError("Expected getToken to be a function returning a token (or its promise).");
    }
    this._candidates = this.options.transports.filter(supported);
    if (this._candidates.length === 0) {
      throw new TypeError("None of the transports " + transports.join(", ") + " is supported here.");
    }
    /** "idle" | "connecting" | "open" | "reconnecting" | "offline" | "closed" */
    this.state = "idle";
    /** The transport in use (or being tried): "ws" | "sse" | "longpoll" | "poll" | null. */
    this.transport = null;
    // requests: HTTP requests made; emptyResponses: poll/long-poll answers with no event;
    // bytesReceived: response bodies, SSE chunks and WebSocket frames (characters).
    this.stats = {
      connects: 0, requests: 0, emptyResponses: 0, bytesReceived: 0,
      delivered: 0, duplicates: 0, resets: 0,
    };
    this._topics = new Map();
    this._listeners = new Map();
    this._pending = new Map();
    this._refs = 0;
    this._conn = null;
    this._timer = null;
    this._openTimer = null;
    this._attempt = 0;
    this._index = 0;
    this._proven = null;
    this._provenFailures = 0;
    this._lastOpened = null;
    this._reopenQueued = false;
    // The connection token from getToken() (null: none yet, or expired); see _connect().
    this._token = null;
    this._tokenPromise = null;
    this._tokenRefreshes = 0;
    // The server ended this user's access: no reconnect until connect() is called.
    this._ended = null;
    this._offline = typeof navigator !== "undefined" && navigator.onLine === false;
    this._hidden = typeof document !== "undefined" && document.visibilityState === "hidden";
    this._bindEnvironment();
  }

  // -- public API ---------------------------------------------------------------

  /** Calls `fn(data)` on state event `name`; returns a function that removes it. */
  on(name, fn) {
    if (STATE_EVENTS.indexOf(name) < 0) {
      throw new TypeError("Unknown event " + JSON.stringify(name) + "; expected one of " + STATE_EVENTS.join(", ") + ".");
    }
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    var set = this._listeners.get(name);
    set.add(fn);
    return function () { set.delete(fn); };
  }

  /** Removes a listener added with on(). */
  off(name, fn) {
    var set = this._listeners.get(name);
    if (set) set.delete(fn);
  }

  /**
   * Calls `onEvent(event)` for every event of `topic`; `options.since` resumes from a cursor
   * (an event's `id`). Returns `{topic, unsubscribe()}`.
   */
  subscribe(topic, onEvent, options) {
    if (this.state === "closed") throw new RTDeliveryError("The client is closed.", "closed");
    if (typeof topic !== "string" || !topic) throw new TypeError("Expected a topic name.");
    if (typeof onEvent !== "function") throw new TypeError("Expected a function for events.");
    options = options || {};
    var entry = this._topics.get(topic);
    var added = !entry;
    if (added) {
      entry = {
        topic: topic, handlers: new Set(), cursor: options.since || null, lastSeq: null,
        resuming: false,
      };
      this._topics.set(topic, entry);
    }
    var handler = { fn: onEvent };
    entry.handlers.add(handler);
    if (added) this._topicsChanged(topic, true);
    var self = this;
    return {
      topic: topic,
      unsubscribe: function () {
        var current = self._topics.get(topic);
        if (current !== entry) return;
        entry.handlers.delete(handler);
        if (entry.handlers.size === 0) self.unsubscribe(topic);
      },
    };
  }

  /** Stops every subscription to `topic`. */
  unsubscribe(topic) {
    if (!this._topics.delete(topic)) return;
    this._topicsChanged(topic, false);
  }

  /** The cursor to resume `topic` from (the last event's id, or the stream's cursor). */
  cursor(topic) {
    var entry = this._topics.get(topic);
    return entry ? entry.cursor : null;
  }

  /** The topics subscribed to. */
  topics() {
    return Array.from(this._topics.keys());
  }

  /** Publishes; resolves to `{topic, seq, id}` (WebSocket ack or HTTP 201). */
  publish(topic, data, options) {
    options = options || {};
    var type = options.type || "message";
    var conn = this._conn;
    if (conn && conn.name === "ws" && conn.opened) {
      return this._wsRequest(conn, { op: "publish", topic: topic, type: type, data: data }, "publish");
    }
    return this._httpPublish(topic, type, data);
  }

  /** Resolves to the presence snapshot of `topic` (`{topic, ...}`). */
  presence(topic) {
    var conn = this._conn;
    if (conn && conn.name === "ws" && conn.opened) {
      return this._wsRequest(conn, { op: "presence", topic: topic }, "presence");
    }
    var self = this;
    var url = this.url + "presence?" + new URLSearchParams({ topic: topic }).toString();
    return this._fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(async function (response) {
        if (!response.ok) throw await httpError(response);
        return response.json();
      })
      .catch(function (error) { throw self._asError(error); });
  }

  /**
   * Opens the connection now (subscribe() does it too). After the server ended access
   * ("ended": logout, rtdelivery.disconnect()), it is the way to start again, e.g. once
   * the user has logged in again; subscriptions resume from their cursors.
   */
  connect() {
    if (this.state === "closed") throw new RTDeliveryError("The client is closed.", "closed");
    this._ended = null;
    if (!this._conn && this._timer === null) this._connect();
  }

  /** Closes the connection for good; emits "closed". */
  close() {
    if (this.state === "closed") return;
    this._stopConnection();
    clearTimeout(this._timer);
    this._timer = null;
    this._unbindEnvironment();
    this._rejectPending("The client is closed.", "closed");
    this._setState("closed");
    this._emit("closed", { reason: "client" });
  }

  // -- connection management ------------------------------------------------------

  _connect() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this.state === "closed" || this._conn || this._ended) return;
    if (this._offline) {
      this._setState("offline");
      return;
    }
    if (this._topics.size === 0) {
      this._setState("idle");
      return;
    }
    if (this.options.getToken && this._token === null) {
      this._fetchToken();
      return;
    }
    var name = this._proven || this._candidates[this._index];
    this.transport = name;
    this.stats.connects += 1;
    this._setState("connecting");
    this._emit("connecting", { transport: name, attempt: this._attempt });
    var conn = name === "ws" ? new WsConnection(this) : new HttpConnection(this, name);
    this._conn = conn;
    var self = this;
    clearTimeout(this._openTimer);
    this._openTimer = setTimeout(function () {
      if (self._conn === conn && !conn.opened) {
        self._failed(conn, { beforeOpen: true, reason: "open timeout" });
      }
    }, this.options.openTimeout);
    conn.start();
  }

  _opened(conn) {
    if (conn !== this._conn) return;
    clearTimeout(this._openTimer);
    this._attempt = 0;
    this._tokenRefreshes = 0;
    this._provenFailures = 0;
    this._proven = conn.name;
    this._index = Math.max(0, this._candidates.indexOf(conn.name));
    this._setState("open");
    if (this._lastOpened !== conn.name) {
      this._lastOpened = conn.name;
      this._emit("transport", conn.name);
    }
    this._emit("open", { transport: conn.name });
  }

  /** Calls getToken() (once at a time), then connects; a failure is retried with backoff. */
  _fetchToken() {
    if (this._tokenPromise) return;
    var self = this;
    this._setState("connecting");
    this._tokenPromise = Promise.resolve()
      .then(function () { return self.options.getToken(); })
      .then(function (token) {
        if (typeof token !== "string" || !token) {
          throw new RTDeliveryError("Expected getToken() to give a token string.", "token_missing");
        }
        self._tokenPromise = null;
        self._token = token;
        self._connect();
      })
      .catch(function (error) {
        self._tokenPromise = null;
        if (self.state === "closed") return;
        self._emit("error", self._asError(error));
        var delay = backoffDelay(self.options.backoff.base, self.options.backoff.max, self._attempt);
        self._attempt += 1;
        self._emit("disconnected", { transport: null, reason: "getToken failed", delay: delay });
        self._scheduleConnect(delay);
      });
  }

  /** The server ended this user's access: stop, say why, and wait for connect(). */
  _endAccess(conn, reason) {
    this._ended = reason;
    this._token = null;
    this._setState("idle");
    this._emit("disconnected", { transport: conn.name, reason: reason, delay: null });
    this._emit("ended", { transport: conn.name, reason: reason });
  }

  /** rtdelivery.unsubscribe() on the server: forget the topic (no resubscribe). */
  _topicEnded(topic, reason) {
    if (!this._topics.has(topic)) return;
    this._emit("unsubscribed", { topic: topic, reason: reason || "unsubscribed" });
    this.unsubscribe(topic);
  }

  /** A connection ended or failed to open: fall back, or reconnect with backoff. */
  _failed(conn, info) {
    if (conn !== this._conn) return;
    info = info || {};
    this._conn = null;
    conn.stop();
    clearTimeout(this._openTimer);
    this._rejectPending("The connection was lost.", "disconnected");
    if (this.state === "closed") return;
    if (info.ended) {
      this._endAccess(conn, info.ended);
      return;
    }
    if (info.tokenExpired) {
      this._token = null;
      if (!this.options.getToken) {
        // Nothing to refresh it with: reconnecting would be refused the same way.
        this._endAccess(conn, "token_expired");
        return;
      }
      // A fresh token at once (the first time; again and again: with backoff).
      info.noFallback = true;
      info.immediate = this._tokenRefreshes++ === 0;
    }
    if (info.invalidCursor) {
      // A cursor the server can't read (another SECRET_KEY?): restart at the live end.
      var self = this;
      this._topics.forEach(function (entry, topic) {
        entry.cursor = null;
        self._reset(topic, null);
      });
      info.immediate = true;
    }
    var fallback = false;
    if (info.beforeOpen && !info.noFallback) {
      if (this._proven === null) {
        fallback = true;
      } else if (++this._provenFailures >= this.options.maxProvenFailures) {
        // The transport that worked keeps failing: try the whole list again.
        this._proven = null;
        this._provenFailures = 0;
        this._index = 0;
        this._attempt = Math.max(this._attempt, 1);
      }
    }
    var delay = 0;
    if (fallback && this._index + 1 < this._candidates.length) {
      this._index += 1; // next transport at once
    } else {
      if (fallback) this._index = 0; // every transport failed: start over, after a delay
      if (info.attemptFloor) this._attempt = Math.max(this._attempt, info.attemptFloor);
      if (!info.immediate || fallback) {
        delay = backoffDelay(this.options.backoff.base, this.options.backoff.max, this._attempt);
        this._attempt += 1;
      }
    }
    this._emit("disconnected", {
      transport: conn.name, code: info.code, reason: info.reason, delay: delay,
      next: this._proven || this._candidates[this._index],
    });
    if (this._offline || this._topics.size === 0) {
      this._setState(this._offline ? "offline" : "idle");
      return;
    }
    this._scheduleConnect(delay);
  }

  _scheduleConnect(delay) {
    clearTimeout(this._timer);
    this._setState("reconnecting");
    var self = this;
    this._timer = setTimeout(function () {
      self._timer = null;
      self._connect();
    }, delay);
  }

  _stopConnection() {
    clearTimeout(this._openTimer);
    if (this._conn) {
      var conn = this._conn;
      this._conn = null;
      conn.stop();
    }
  }

  _topicsChanged(topic, added) {
    if (this.state === "closed") return;
    var conn = this._conn;
    if (this._topics.size === 0) {
      this._stopConnection();
      clearTimeout(this._timer);
      this._timer = null;
      this._rejectPending("No topics left.", "disconnected");
      this._setState(this._offline ? "offline" : "idle");
      return;
    }
    if (conn && conn.name === "ws") {
      if (added) conn.subscribe(this._topics.get(topic));
      else conn.unsubscribe(topic);
      return;
    }
    if (conn) {
      // One request carries every topic: reopen with the new set (batched per tick).
      if (this._reopenQueued) return;
      this._reopenQueued = true;
      var self = this;
      Promise.resolve().then(function () {
        self._reopenQueued = false;
        if (self._conn !== conn) return;
        self._stopConnection();
        self._connect();
      });
      return;
    }
    // No connection and no reconnect pending (a pending one will carry the new topic).
    if (this._timer === null && !this._offline) this._connect();
  }

  _bindEnvironment() {
    var self = this;
    this._onOnline = function () {
      self._offline = false;
      if (self.state === "closed" || self._conn) return;
      self._attempt = 0;
      self._connect();
    };
    this._onOffline = function () {
      self._offline = true;
      if (self.state === "closed") return;
      var conn = self._conn;
      self._stopConnection();
      clearTimeout(self._timer);
      self._timer = null;
      self._rejectPending("The browser went offline.", "offline");
      if (conn) self._emit("disconnected", { transport: conn.name, reason: "offline", delay: null });
      self._setState("offline");
    };
    this._onVisibility = function () {
      self._hidden = document.visibilityState === "hidden";
      if (self._hidden || self.state === "closed") return;
      if (self._conn) {
        self._conn.wake();
      } else if (self._timer !== null) {
        self._attempt = 0;
        self._connect();
      }
    };
    if (typeof addEventListener === "function") {
      addEventListener("online", this._onOnline);
      addEventListener("offline", this._onOffline);
    }
    if (typeof document !== "undefined" && document.addEventListener) {
      document.addEventListener("visibilitychange", this._onVisibility);
    }
  }

  _unbindEnvironment() {
    if (typeof removeEventListener === "function") {
      removeEventListener("online", this._onOnline);
      removeEventListener("offline", this._onOffline);
    }
    if (typeof document !== "undefined" && document.removeEventListener) {
      document.removeEventListener("visibilitychange", this._onVisibility);
    }
  }

  // -- delivery -------------------------------------------------------------------

  /** Delivers one wire event once: drops anything at or before the topic's last seq. */
  _event(event) {
    if (!event || typeof event.topic !== "string") return;
    var entry = this._topics.get(event.topic);
    if (!entry) return;
    if (entry.lastSeq !== null && event.seq <= entry.lastSeq) {
      this.stats.duplicates += 1;
      return;
    }
    entry.lastSeq = event.seq;
    if (event.id) entry.cursor = event.id;
    this.stats.delivered += 1;
    var clean = {
      id: event.id, topic: event.topic, seq: event.seq, type: event.type,
      data: event.data, time: event.time,
    };
    var self = this;
    entry.handlers.forEach(function (handler) {
      try {
        handler.fn(clean);
      } catch (error) {
        self._emit("error", error);
      }
    });
  }

  _setCursor(topic, cursor) {
    var entry = this._topics.get(topic);
    if (entry && cursor) entry.cursor = cursor;
  }

  _reset(topic, cursor) {
    var entry = this._topics.get(topic);
    if (!entry) return;
    entry.lastSeq = null;
    if (cursor) entry.cursor = cursor;
    this.stats.resets += 1;
    this._emit("reset", { topic: topic, transport: this.transport });
  }

  _wsFrame(conn, frame) {
    if (conn !== this._conn) return;
    var op = frame.op;
    var pending = frame.ref != null ? this._pending.get(frame.ref) : undefined;
    if (pending !== undefined) this._pending.delete(frame.ref);
    if (op === "event") {
      this._event(frame);
    } else if (op === "subscribed") {
      var entry = this._topics.get(frame.topic);
      if (!entry) return;
      if (frame.recovered === false) this._reset(frame.topic, frame.cursor);
      else if (frame.cursor) entry.cursor = frame.cursor;
      this._emit("subscribed", { topic: frame.topic, transport: "ws", recovered: frame.recovered !== false });
      if (frame.recovered !== false && entry.resuming) {
        this._emit("recovered", { topic: frame.topic, transport: "ws" });
      }
      entry.resuming = false;
    } else if (op === "ack") {
      if (pending && pending.resolve) pending.resolve({ topic: frame.topic, seq: frame.seq, id: frame.id });
    } else if (op === "presence") {
      var snapshot = Object.assign({}, frame);
      delete snapshot.op;
      delete snapshot.ref;
      if (pending && pending.resolve) pending.resolve(snapshot);
      else this._emit("presence", snapshot);
    } else if (op === "error") {
      var error = new RTDeliveryError(frame.message || frame.code, frame.code, 0, frame);
      if (frame.cursor && !pending) {
        // too_slow, token_expired, disconnected...: the server closes next (4001, 4003,
        // 4004); every topic resumes from this cursor (after a fresh token, or connect()).
        var self = this;
        this._topics.forEach(function (_, topic) { self._setCursor(topic, frame.cursor); });
        if (frame.code !== "too_slow") {
          conn.endReason = frame.code; // said by the close that follows
          return;
        }
      }
      if (pending && pending.reject) {
        pending.reject(error);
      } else {
        if (pending && pending.kind === "subscribe") {
          error.topic = pending.topic;
          // Refused (policy, bad name): forget it rather than retry it on every reconnect.
          // "unavailable" is not a refusal: the server closes (1013) and the topic is
          // resubscribed from its cursor on the next connection.
          var keep = frame.code === "already_subscribed" || frame.code === "unavailable";
          if (this._topics.has(pending.topic) && !keep) {
            this._topics.delete(pending.topic);
          }
        }
        this._emit("error", error);
      }
    }
    else if (op === "unsubscribed" && frame.reason && !pending) {
      // Ended by the server (rtdelivery.unsubscribe()), not asked for.
      this._topicEnded(frame.topic, frame.reason);
    }
    // "pong", "unsubscribed" (our own): nothing to do.
  }

  _nextRef() {
    this._refs += 1;
    return this._refs;
  }

  _wsRequest(conn, frame, kind) {
    var self = this;
    return new Promise(function (resolve, reject) {
      var ref = self._nextRef();
      frame.ref = ref;
      var timer = setTimeout(function () {
        if (self._pending.delete(ref)) {
          reject(new RTDeliveryError("No answer to " + kind + " in time.", "timeout"));
        }
      }, self.options.requestTimeout);
      self._pending.set(ref, {
        kind: kind,
        resolve: function (value) { clearTimeout(timer); resolve(value); },
        reject: function (error) { clearTimeout(timer); reject(error); },
      });
      if (!conn.send(frame)) {
        self._pending.delete(ref);
        clearTimeout(timer);
        reject(new RTDeliveryError("The WebSocket is not open.", "disconnected"));
      }
    });
  }

  _rejectPending(message, code) {
    var pending = Array.from(this._pending.values());
    this._pending.clear();
    pending.forEach(function (request) {
      if (request.reject) request.reject(new RTDeliveryError(message, code));
    });
  }

  async _httpPublish(topic, type, data) {
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    var token = readCookie(this.options.csrfCookieName);
    if (token) headers["X-CSRFToken"] = token;
    var response;
    try {
      response = await this._fetch(this.url + "publish", {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: headers,
        body: JSON.stringify({ topic: topic, type: type, data: data }),
      });
    } catch (error) {
      throw this._asError(error);
    }
    if (!response.ok) throw await httpError(response);
    var body = await response.json();
    return { topic: body.topic, seq: body.seq, id: body.id };
  }

  _asError(error) {
    if (error instanceof RTDeliveryError) return error;
    return new RTDeliveryError(error && error.message ? error.message : String(error), "network");
  }

  _fetch(url, init) {
    var fn = this.options.fetch || globalThis.fetch;
    if (this._token) {
      // The connection token from getToken(), as a header wherever one can be set.
      init = Object.assign({}, init);
      init.headers = Object.assign({}, init.headers, { Authorization: "Bearer " + this._token });
    }
    return fn.call(globalThis, url, init);
  }

  _wsUrl() {
    var url = new URL(this.options.wsUrl || this.url + "ws", baseHref());
    if (!this.options.wsUrl) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    // A browser WebSocket cannot carry headers: the token goes in the URL (short-lived).
    if (this._token) url.searchParams.set("access_token", this._token);
    return url.toString();
  }

  _setState(state) {
    this.state = state;
  }

  _emit(name, data) {
    var set = this._listeners.get(name);
    if (!set) return;
    Array.from(set).forEach(function (fn) {
      try {
        fn(data);
      } catch (error) {
        if (name !== "error" && typeof console !== "undefined") console.error(error);
      }
    });
  }
}

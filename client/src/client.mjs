// The client: subscriptions, cursors, state, transport choice and fallback, reconnection.

import { backoffDelay } from "./backoff.mjs";
import { STATE_EVENTS, TRANSPORTS } from "./constants.mjs";
import { RTDeliveryError, httpError } from "./errors.mjs";
import { pageConfig, randomId, supported } from "./env.mjs";
import { HttpConnection } from "./http.mjs";
import { Outbox } from "./outbox.mjs";
import { PresenceWatch } from "./presence.mjs";
import { sharedClient } from "./sharing.mjs";
import { Subscription } from "./subscription.mjs";
import { Wire } from "./wire.mjs";
import { WsConnection } from "./ws.mjs";

function option(value, fallback) {
  return value !== undefined && value !== null ? value : fallback;
}

export class Client extends Wire {
  /**
   * @param {object} [options]
   * @param {string} [options.url] where rtdelivery's URLs are mounted; by default the
   *   page's `{% rtdelivery_config %}` element says (the URLconf's prefix), else "/rt/"
   * @param {string[]} [options.transports] candidates in order; one entry pins it
   * @param {number} [options.pollInterval=5000] short polling interval (ms)
   * @param {{base?: number, max?: number}} [options.backoff] reconnect backoff (ms)
   */
  constructor(options) {
    super();
    options = options || {};
    if (options.shared) {
      // Tab sharing (one connection per origin and url, see sharing.mjs): when an implementation
      // is installed, it gives the object to use instead of this one.
      var shared = sharedClient(options, this);
      if (shared) return shared;
    }
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
      // A subscribe or ping unanswered this long (ms) ends the socket (pongTimeout: its old name).
      livenessTimeout: option(options.livenessTimeout, option(options.pongTimeout, 5000)),
      outboxTimeout: option(options.outboxTimeout, 60000),
      presenceInterval: option(options.presenceInterval, 15000),
      shared: Boolean(options.shared),
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
    /** This client's id on polling requests (`client=`): the server counts it in presence. */
    this.clientId = randomId(22);
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
    this._connectQueued = false;
    this._outbox = new Outbox(this);
    // Several cursors in one request (false once the server said it takes one); a one-off skip
    // after an ambiguous set (a topic in two of them).
    this._multiCursor = true;
    this._skipMultiCursor = false;
    // WebSocket liveness failures before any answer, in a row (2: fall back).
    this._livenessFailures = 0;
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
   * (an event's `id`); `options.onState(state, sub)` and `options.onError(error, sub)` follow
   * this subscription. Returns a Subscription (`topic`, `state`, `error`, `unsubscribe()`).
   */
  subscribe(topic, onEvent, options) {
    if (this.state === "closed") throw new RTDeliveryError("The client is closed.", "closed");
    if (typeof topic !== "string" || !topic) throw new TypeError("Expected a topic name.");
    if (typeof onEvent !== "function") throw new TypeError("Expected a function for events.");
    options = options || {};
    var entry = this._topics.get(topic);
    var added = !entry;
    var retry = !added && entry.state === "refused";
    if (added) {
      entry = {
        topic: topic, handlers: new Set(), cursor: options.since || null, lastSeq: null,
        resuming: false, state: "pending", error: null,
      };
      this._topics.set(topic, entry);
    }
    var sub = new Subscription(this, entry, onEvent, options);
    entry.handlers.add(sub);
    if (added) {
      this._subscriptionChanged(entry);
      this._topicsChanged(topic, true);
    } else if (retry) {
      // Subscribing again to a refused topic asks the server again.
      this._subState(entry, "pending", null);
      this._topicsChanged(topic, true);
    }
    return sub;
  }

  /** Stops every subscription to `topic`. */
  unsubscribe(topic) {
    var entry = this._topics.get(topic);
    if (!entry) return;
    this._topics.delete(topic);
    var wasActive = entry.state !== "refused";
    this._subState(entry, "ended", entry.error);
    if (wasActive) this._topicsChanged(topic, false);
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

  /**
   * Publishes; resolves to `{topic, seq, id, duplicate?}` (WebSocket ack or HTTP answer).
   * Works in every state but "closed": while not connected the publish waits in the outbox
   * and is sent once, in order, when the client is; `options.key` (default a random UUID)
   * makes sending it again harmless (the server answers a repeated key with the first seq).
   */
  publish(topic, data, options) {
    if (this.state === "closed") return Promise.reject(new RTDeliveryError("The client is closed.", "closed"));
    if (typeof topic !== "string" || !topic) return Promise.reject(new TypeError("Expected a topic name."));
    options = options || {};
    return this._outbox.add(topic, data, options.type || "message", options.key);
  }

  /** Publishes waiting to be sent (or sent, answer pending), oldest first. */
  get outbox() {
    return this._outbox.list();
  }

  /** True when the browser is online and the connection is open. */
  get online() {
    return !this._offline && this.state === "open";
  }

  /**
   * A page of `topic`'s history: `{events, cursor, recovered}`. Without `cursor` the latest
   * `limit` events; with it, the next ones after it.
   */
  history(topic, options) {
    options = options || {};
    var params = new URLSearchParams({ topic: topic });
    if (options.limit != null) params.set("limit", String(options.limit));
    if (options.cursor) params.set("cursor", options.cursor);
    var self = this;
    this.stats.requests += 1;
    return this._fetch(this.url + "history?" + params.toString(), {
      credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" },
    })
      .then(async function (response) {
        if (!response.ok) throw await httpError(response);
        var body = await response.json();
        return { events: body.events || [], cursor: body.cursor, recovered: body.recovered !== false };
      })
      .catch(function (error) { throw self._asError(error); });
  }

  /**
   * Keeps `topic`'s presence snapshot for you: `onChange(snapshot)` with
   * `{topic, count, anonymous, users: [{id, name, connections}]}` on every change.
   * Returns `{topic, snapshot, stop()}` (`snapshot`: the latest, or null before the first).
   */
  watchPresence(topic, onChange) {
    if (typeof onChange !== "function") throw new TypeError("Expected a function for presence changes.");
    var watch = new PresenceWatch(this, topic, onChange);
    return {
      topic: topic,
      get snapshot() { return watch.snapshot; },
      stop: function () { watch.stop(); },
    };
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
    this._outbox.rejectAll("The client is closed.", "closed");
    this._setState("closed");
    var self = this;
    Array.from(this._topics.values()).forEach(function (entry) { self._subState(entry, "ended", entry.error); });
    this._emit("closed", { reason: "client" });
  }

  // -- connection management ------------------------------------------------------

  /** Opens a connection; `quiet`: a reopen with a new set of topics, the state stays "open". */
  _connect(quiet) {
    clearTimeout(this._timer);
    this._timer = null;
    if (this.state === "closed" || this._conn || this._ended) return;
    if (this._offline) {
      this._setState("offline");
      return;
    }
    if (this._activeEntries().length === 0) {
      this._setState("idle");
      this._outbox.flush();
      return;
    }
    if (this.options.getToken && this._token === null) {
      this._fetchToken();
      return;
    }
    var name = this._proven || this._candidates[this._index];
    this.transport = name;
    this.stats.connects += 1;
    if (!(quiet && this.state === "open")) this._setState("connecting");
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
    this._livenessFailures = 0;
    this._emit("open", { transport: conn.name });
    this._outbox.flush();
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
    this._pendingAll();
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
    if (info.refusedTopic) {
      // One topic refused: say so on that subscription and go on at once without it (no
      // backoff: the request was fine but for that topic).
      this._refuse(info.refusedTopic, info.error);
      this._connect(true);
      return;
    }
    if (info.multiCursorRefused === "server") this._multiCursor = false;
    else if (info.multiCursorRefused) this._skipMultiCursor = true;
    this._pendingAll();
    if (info.liveness && info.beforeOpen) {
      // Upgraded, then silent: once more on this transport, then the next one.
      this._livenessFailures += 1;
      if (this._livenessFailures < 2) {
        info.noFallback = true;
      } else {
        this._livenessFailures = 0;
        this._proven = null;
        this._provenFailures = 0;
      }
    }
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
    if (this._offline || this._activeEntries().length === 0) {
      this._setState(this._offline ? "offline" : "idle");
      if (!this._offline) this._outbox.flush();
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
    if (this._activeEntries().length === 0) {
      this._stopConnection();
      clearTimeout(this._timer);
      this._timer = null;
      this._rejectPending("No topics left.", "disconnected");
      this._setState(this._offline ? "offline" : "idle");
      if (!this._offline) this._outbox.flush();
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
        self._connect(true);
      });
      return;
    }
    // No connection and no reconnect pending (a pending one will carry the new topic): open
    // at the end of this tick, so the subscribes made in it share the first request.
    if (this._timer !== null || this._offline || this._connectQueued) return;
    this._connectQueued = true;
    var client = this;
    Promise.resolve().then(function () {
      client._connectQueued = false;
      if (client._conn === null && client._timer === null && !client._offline) client._connect();
    });
  }

  _bindEnvironment() {
    var self = this;
    this._onOnline = function () {
      self._offline = false;
      if (self.state === "closed" || self._conn) return;
      self._attempt = 0;
      if (self._ended) {
        self._setState("idle");
        self._outbox.flush();
        return;
      }
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
      self._pendingAll();
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

  _setState(state) {
    var previous = this.state;
    if (previous === state) return;
    this.state = state;
    this._emit("state", { state: state, previous: previous, transport: this.transport });
  }

  // -- subscriptions ----------------------------------------------------------------

  /** The subscriptions a connection carries: all but the refused ones. */
  _activeEntries() {
    var entries = [];
    this._topics.forEach(function (entry) {
      if (entry.state !== "refused") entries.push(entry);
    });
    return entries;
  }

  _subState(entry, state, error) {
    if (entry.state === state && entry.error === error) return;
    entry.state = state;
    entry.error = error;
    this._subscriptionChanged(entry);
  }

  _subscriptionChanged(entry) {
    this._emit("subscription", { topic: entry.topic, state: entry.state, error: entry.error });
    entry.handlers.forEach(function (sub) { sub._changed(); });
  }

  /** The server confirmed `topic` on this connection. */
  _live(topic) {
    var entry = this._topics.get(topic);
    if (entry && entry.state !== "refused") this._subState(entry, "live", null);
  }

  /** The connection is gone: every live subscription waits for the next one. */
  _pendingAll() {
    var self = this;
    this._topics.forEach(function (entry) {
      if (entry.state === "live") self._subState(entry, "pending", null);
    });
  }

  /** The server refused `topic` (policy, bad name): that subscription only, kept as refused. */
  _refuse(topic, error) {
    var entry = this._topics.get(topic);
    if (!entry) return;
    if (error instanceof RTDeliveryError) error.topic = topic;
    this._subState(entry, "refused", error);
    this._emit("error", error);
    entry.handlers.forEach(function (sub) { sub._error(error); });
    if (this._activeEntries().length === 0 && this._conn) {
      this._stopConnection();
      this._setState(this._offline ? "offline" : "idle");
      if (!this._offline) this._outbox.flush();
    }
  }

  /** Several cursors in this request? (false after the server refused them as ambiguous once.) */
  _useMultiCursor() {
    if (this._skipMultiCursor) {
      this._skipMultiCursor = false;
      return false;
    }
    return this._multiCursor;
  }

  /** Where a publish goes now: the open WebSocket, "http", or null (wait in the outbox). */
  _publishRoute() {
    if (this.state === "closed" || this._offline) return null;
    var conn = this._conn;
    if (conn && conn.name === "ws") return conn.opened ? conn : null;
    if (this.state === "open" || this.state === "idle") return "http";
    return null;
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

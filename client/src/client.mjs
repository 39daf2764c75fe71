// The client: subscriptions, cursors, state, transport choice and fallback, reconnection.

import { Connector } from "./connection.mjs";
import { STATE_EVENTS, TRANSPORTS } from "./constants.mjs";
import { RTDeliveryError, httpError } from "./errors.mjs";
import { pageConfig, randomId, supported } from "./env.mjs";
import { Outbox } from "./outbox.mjs";
import { listenerMethods } from "./listeners.mjs";
import { PresenceWatch } from "./presence.mjs";
import { sharedClient } from "./sharing.mjs";
import { Subscription } from "./subscription.mjs";

function option(value, fallback) {
  return value !== undefined && value !== null ? value : fallback;
}

export class Client extends Connector {
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
      // The first answer on a new socket may take longer (a cold server): this long (ms).
      firstAnswerTimeout: option(options.firstAnswerTimeout, 8000),
      // On a fallback transport, the first candidate is tried again after this long (ms).
      upgradeAfter: option(options.upgradeAfter, 300000),
      outboxTimeout: option(options.outboxTimeout, 60000),
      presenceInterval: option(options.presenceInterval, 15000),
      shared: Boolean(options.shared),
      requestTimeout: options.requestTimeout != null ? options.requestTimeout : 15000,
      // SSE, long poll, poll: subscription changes this close together (ms) share one reopen.
      batchDelay: option(options.batchDelay, 100),
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
    // Refs of requests that timed out (their answers may still come), the latest few.
    this._lateRefs = new Set();
    this._conn = null;
    this._timer = null;
    this._openTimer = null;
    this._attempt = 0;
    this._index = 0;
    this._proven = null;
    this._provenFailures = 0;
    this._lastOpened = null;
    // Subscription changes waiting to (re)open the request together (connection.mjs _batch).
    this._batchTimer = null;
    this._batchFn = null;
    this._batchStart = null;
    this._outbox = new Outbox(this);
    // Several cursors in one request (false once the server said it takes one); a one-off skip
    // after an ambiguous set (a topic in two of them).
    this._multiCursor = true;
    this._skipMultiCursor = false;
    // WebSocket liveness failures before any answer, in a row (2: fall back).
    this._livenessFailures = 0;
    // On a fallback transport: when to try the first candidate again (upgradeAfter).
    this._upgradeTimer = null;
    // The connection token from getToken() (null: none yet, or expired); see _connect().
    this._token = null;
    this._tokenPromise = null;
    this._tokenWait = null;
    this._tokenRefreshes = 0;
    // The server ended this user's access: no reconnect until connect() is called.
    this._ended = null;
    this._offline = typeof navigator !== "undefined" && navigator.onLine === false;
    this._hidden = typeof document !== "undefined" && document.visibilityState === "hidden";
    this._bindEnvironment();
  }

  /**
   * `new Client({shared: true})` gives a tab's shared client (shared.mjs), another class:
   * `instanceof Client` is true for it too, as the declarations say.
   */
  static [Symbol.hasInstance](value) {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    return this === Client && value != null && value._sharedClient === true;
  }

  // -- public API ---------------------------------------------------------------

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
    // _deadline: a shared tab's publish, held until that tab's own outboxTimeout ends.
    return this._outbox.add(topic, data, options.type || "message", options.key, options._deadline);
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
    return this._authFetch(this.url + "history?" + params.toString(), {
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
    return this._authFetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
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
    this._cancelBatch();
    clearTimeout(this._upgradeTimer);
    this._rejectPending("The client is closed.", "closed");
    this._outbox.rejectAll("The client is closed.", "closed");
    this._setState("closed");
    var self = this;
    Array.from(this._topics.values()).forEach(function (entry) { self._subState(entry, "ended", entry.error); });
    this._emit("closed", { reason: "client" });
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
}

// on, off and _emit.
Object.assign(Client.prototype, listenerMethods(STATE_EVENTS));

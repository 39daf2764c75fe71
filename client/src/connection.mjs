// Connection management, a base of Client: opening a transport, fallback and backoff, the
// token from getToken(), the end of access, reopening for new topics, online/offline and
// visibility. Every method works on the Client's fields (client.mjs).

import { backoffDelay } from "./backoff.mjs";
import { RTDeliveryError } from "./errors.mjs";
import { HttpConnection } from "./http.mjs";
import { Wire } from "./wire.mjs";
import { WsConnection } from "./ws.mjs";

export class Connector extends Wire {
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
    this._scheduleUpgrade(conn);
    this._emit("open", { transport: conn.name });
    this._outbox.flush();
  }

  /**
   * Open on a fallback (the WebSocket failed, e.g. twice silent): the first candidate is not
   * given up for the page's life; after `upgradeAfter` ms it is tried again (and on failure
   * the client falls back again, and tries again after the next open).
   */
  _scheduleUpgrade(conn) {
    clearTimeout(this._upgradeTimer);
    this._upgradeTimer = null;
    var delay = this.options.upgradeAfter;
    if (!delay || conn.name === this._candidates[0]) return;
    var self = this;
    this._upgradeTimer = setTimeout(function () {
      self._upgradeTimer = null;
      if (self._conn !== conn || self.state !== "open" || self._offline) return;
      self._proven = null;
      self._provenFailures = 0;
      self._livenessFailures = 0;
      self._index = 0;
      self._stopConnection();
      self._connect(true);
    }, delay);
  }

  /** Calls getToken() (once at a time), then connects; a failure is retried with backoff. */
  _fetchToken() {
    if (this._tokenPromise) return;
    var self = this;
    this._setState("connecting");
    this._tokenPromise = this._getToken()
      .then(function () {
        self._tokenPromise = null;
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
    if (info.tooManyTopics) {
      var limit = info.tooManyTopics;
      var over = this._activeEntries().slice(limit);
      var self = this;
      over.forEach(function (entry) {
        self._refuse(entry.topic, new RTDeliveryError(
          "Not subscribed to " + JSON.stringify(entry.topic) + ": the server takes at most " + limit +
            " topics per connection (MAX_TOPICS).", "too_many_topics", 400, { topic: entry.topic }
        ));
      });
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
      this._cancelBatch();
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
    var self = this;
    if (conn) {
      // One request carries every topic: reopen with the new set, once per batch.
      this._batch(function () {
        if (self._conn !== conn) return;
        self._stopConnection();
        self._connect(true);
      }, false);
      return;
    }
    // No connection and no reconnect pending (a pending one will carry the new topic): open
    // once the batch is complete, so the subscribes made in it share the first request (a
    // WebSocket opens at the end of this tick: it subscribes topic by topic anyway).
    if (this._timer !== null || this._offline) return;
    this._batch(function () {
      if (self._conn === null && self._timer === null && !self._offline && self.state !== "closed") self._connect();
    }, (this._proven || this._candidates[this._index]) === "ws");
  }

  /**
   * Runs `fn` once the subscription changes stop coming: `batchDelay` ms after the latest
   * (at most 5 × batchDelay after the first), or at the end of this tick when `now` or
   * batchDelay is 0. A later call replaces `fn` (it acts on the set of topics as it is then).
   */
  _batch(fn, now) {
    var self = this;
    var delay = now ? 0 : this.options.batchDelay;
    this._batchFn = fn;
    var run = function () {
      self._batchTimer = null;
      self._batchStart = null;
      var todo = self._batchFn;
      self._batchFn = null;
      if (todo && self.state !== "closed") todo();
    };
    if (!delay) {
      if (this._batchTimer === null) {
        this._batchTimer = -1; // a microtask is queued
        Promise.resolve().then(run);
      }
      return;
    }
    var time = Date.now();
    if (this._batchStart === null) this._batchStart = time;
    if (this._batchTimer !== null && this._batchTimer !== -1) clearTimeout(this._batchTimer);
    else if (this._batchTimer === -1) return; // runs at the end of this tick anyway
    this._batchTimer = setTimeout(run, Math.min(delay, Math.max(0, this._batchStart + 5 * delay - time)));
  }

  _cancelBatch() {
    if (this._batchTimer !== null && this._batchTimer !== -1) clearTimeout(this._batchTimer);
    if (this._batchTimer !== -1) this._batchTimer = null;
    this._batchFn = null;
    this._batchStart = null;
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
}

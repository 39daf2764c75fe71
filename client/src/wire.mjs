// How the client reads and writes the wire: delivery once per seq, WebSocket frames and
// requests, HTTP publishes, URLs. Methods of Client (client.mjs copies them onto it).

import { TOPIC_REFUSALS } from "./constants.mjs";
import { RTDeliveryError, httpError } from "./errors.mjs";
import { baseHref, readCookie } from "./env.mjs";

export class Wire {
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
        handler._fn(clean);
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
      this._live(frame.topic);
      this._emit("subscribed", { topic: frame.topic, transport: "ws", recovered: frame.recovered !== false });
      if (frame.recovered !== false && entry.resuming) {
        this._emit("recovered", { topic: frame.topic, transport: "ws" });
      }
      entry.resuming = false;
    } else if (op === "ack") {
      if (pending && pending.resolve) {
        var ack = { topic: frame.topic, seq: frame.seq, id: frame.id };
        if (frame.duplicate) ack.duplicate = true;
        pending.resolve(ack);
      }
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
      } else if (pending && pending.kind === "subscribe" && frame.code === "invalid_cursor") {
        // A cursor the server can't read (another SECRET_KEY?): as on SSE and polling, this
        // topic restarts at the live end, not refused.
        var stale = this._topics.get(pending.topic);
        if (stale && stale.state !== "refused") {
          stale.cursor = null;
          this._reset(pending.topic, null);
          conn.subscribe(stale);
          return;
        }
      } else if (pending === undefined && frame.ref != null && this._lateRefs.has(frame.ref)) {
        // The answer to a publish (or presence) that timed out: not about any subscription.
        this._lateRefs.delete(frame.ref);
        this._emit("error", error);
      } else {
        var topic = pending && pending.kind === "subscribe" ? pending.topic : null;
        if (topic === null && frame.ref == null && frame.topic && TOPIC_REFUSALS.indexOf(frame.code) >= 0) {
          topic = frame.topic;
        }
        // "unavailable" is not a refusal: the server closes (1013) and the topic is
        // resubscribed from its cursor on the next connection.
        var keep = frame.code === "already_subscribed" || frame.code === "unavailable";
        if (topic !== null && !keep && this._topics.has(topic)) {
          // Refused (policy, bad name): that subscription only, not retried on reconnects.
          error.topic = topic;
          this._refuse(topic, error);
          return;
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
          // Its answer may still come: remembered (a few), so it is not taken for a refusal.
          self._lateRefs.add(ref);
          if (self._lateRefs.size > 64) self._lateRefs.delete(self._lateRefs.values().next().value);
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

  async _httpPublish(item) {
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    var token = readCookie(this.options.csrfCookieName);
    if (token) headers["X-CSRFToken"] = token;
    var body = { topic: item.topic, type: item.type, data: item.data };
    if (!this._noKeys) body.key = item.key;
    var response;
    try {
      response = await this._authFetch(this.url + "publish", {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: headers,
        body: JSON.stringify(body),
      });
    } catch (error) {
      throw this._asError(error);
    }
    if (!response.ok) {
      var error = await httpError(response);
      if (!this._serverKeys && error.code === "invalid_event" && /'key'/.test(error.message) && "key" in body) {
        // A server from before idempotency keys: publish without (a retry may then repeat).
        this._noKeys = true;
        return this._httpPublish(item);
      }
      throw error;
    }
    var answer = await response.json();
    if (!this._noKeys) this._serverKeys = true;
    var result = { topic: answer.topic, seq: answer.seq, id: answer.id };
    if (answer.duplicate) result.duplicate = true;
    return result;
  }

  /**
   * A token from getToken(): the one in use, else a fresh one (one call at a time). Rejects
   * with an RTDeliveryError (`token_missing`, or getToken's failure as `network`).
   */
  _getToken() {
    if (!this.options.getToken || this._token !== null) return Promise.resolve(this._token);
    if (!this._tokenWait) {
      var self = this;
      this._tokenWait = Promise.resolve()
        .then(function () { return self.options.getToken(); })
        .then(function (token) {
          self._tokenWait = null;
          if (typeof token !== "string" || !token) {
            throw new RTDeliveryError("Expected getToken() to give a token string.", "token_missing");
          }
          self._token = token;
          return token;
        }, function (error) {
          self._tokenWait = null;
          throw self._asError(error);
        });
    }
    return this._tokenWait;
  }

  /**
   * fetch() for publish, history and presence: with getToken, the token goes along even when
   * no connection has fetched one yet; a `401 token_expired` gets a fresh token and one more try.
   */
  async _authFetch(url, init) {
    if (!this.options.getToken) return this._fetch(url, init);
    if (this._token === null) await this._getToken();
    var response = await this._fetch(url, init);
    if (response.status === 401) {
      var error = await httpError(response.clone());
      if (error.code === "token_expired") {
        this._token = null;
        await this._getToken();
        response = await this._fetch(url, init);
      }
    }
    return response;
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
}

/*! rtdelivery 0.1.0: the browser client of rtdelivery (BSD-3-Clause).
 * Built from client/src by client/build.mjs: edit the source, then `make client`. */
"use strict";
(() => {
  // src/backoff.mjs
  function backoffDelay(base, max, attempt) {
    var cap = Math.min(max, base * Math.pow(2, Math.min(attempt, 30)));
    return Math.floor(Math.random() * cap);
  }

  // src/errors.mjs
  var RTDeliveryError = class extends Error {
    constructor(message, code, status, detail) {
      super(message);
      this.name = "RTDeliveryError";
      this.code = code || "error";
      this.status = status || 0;
      this.detail = detail;
      this.topic = detail && typeof detail.topic === "string" ? detail.topic : null;
    }
  };
  async function httpError(response) {
    var code = "http_" + response.status;
    var message = "HTTP " + response.status;
    var detail;
    try {
      var body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
        detail = body.error;
      }
    } catch (_) {
    }
    return new RTDeliveryError(message, code, response.status, detail);
  }
  function isAbort(error) {
    return error && (error.name === "AbortError" || error.code === "stopped");
  }
  function errorTopic(error, topics) {
    if (!error) return null;
    if (error.topic && topics.indexOf(error.topic) >= 0) return error.topic;
    if (error.topic) return null;
    var message = String(error.message || "");
    var found = null;
    topics.forEach(function(topic) {
      var named = ["'", '"', "`"].some(function(q) {
        return message.indexOf(q + topic + q) >= 0;
      });
      if (named && (found === null || topic.length > found.length)) found = topic;
    });
    return found;
  }

  // src/constants.mjs
  var VERSION = "0.1.0";
  var TRANSPORTS = ["ws", "sse", "longpoll", "poll"];
  var STATE_EVENTS = [
    "connecting",
    "open",
    "transport",
    "subscribed",
    "recovered",
    "reset",
    "presence",
    "disconnected",
    "error",
    "closed",
    "ended",
    "unsubscribed",
    "state",
    "subscription",
    "outbox",
    // Tab sharing's; accepted on a plain client too (never emitted there), as declared.
    "leader"
  ];
  var WS_TOO_SLOW = 4001;
  var STAND_INS = { 4002: 1001, 4008: 1008, 4009: 1009, 4011: 1011, 4013: 1013 };
  var WS_GOING_AWAY = 1001;
  var WS_POLICY = 1008;
  var WS_TOO_MANY_CONNECTIONS = 4029;
  var WS_TOKEN_EXPIRED = 4003;
  var WS_ACCESS_ENDED = 4004;
  var RESUMABLE_REASONS = ["too_slow", "going_away", "token_expired"];
  var POLICY_ATTEMPT_FLOOR = 5;
  var RATE_ATTEMPT_FLOOR = 3;
  var MAX_CATCH_UP_PAGES = 1e3;
  var TOPIC_REFUSALS = ["forbidden", "token_topics", "invalid_topic"];
  var RETRY_PUBLISH_STATUS = [408, 425, 429, 500, 502, 503, 504];

  // src/http.mjs
  var HttpConnection = class {
    constructor(client, name) {
      this.client = client;
      this.name = name;
      this.opened = false;
      this.stopped = false;
      this.controller = typeof AbortController !== "undefined" ? new AbortController() : null;
      this.topics = [];
      this.waker = null;
      this.etag = null;
    }
    start() {
      var self = this;
      this.run().catch(function(error) {
        if (self.stopped || isAbort(error)) return;
        self.client._failed(self, self.classify(error));
      });
    }
    stop() {
      this.stopped = true;
      if (this.controller) this.controller.abort();
      if (this.waker) this.waker();
    }
    wake() {
      if (this.waker) this.waker();
    }
    classify(error) {
      var info = { beforeOpen: !this.opened, reason: error.message || String(error), error };
      if (error instanceof RTDeliveryError && error.status >= 400 && error.status < 500) {
        var topic = errorTopic(error, this.topics);
        if (topic !== null && TOPIC_REFUSALS.indexOf(error.code) >= 0) {
          error.topic = topic;
          info.refusedTopic = topic;
          return info;
        }
        var most = error.code === "too_many_topics" ? /at most (\d+) topics/.exec(error.message) : null;
        if (most && Number(most[1]) > 0 && Number(most[1]) < this.topics.length) {
          info.tooManyTopics = Number(most[1]);
          return info;
        }
        if (this.cursorCount > 1 && error.code === "bad_request" && /at most one 'cursor'/.test(error.message)) {
          info.multiCursorRefused = "server";
          info.immediate = true;
          info.noFallback = true;
          return info;
        }
        if (error.code === "invalid_cursor" && this.cursorCount > 1 && error.topic) {
          info.multiCursorRefused = "ambiguous";
          info.immediate = true;
          info.noFallback = true;
          return info;
        }
      }
      if (error instanceof RTDeliveryError && error.status) {
        info.noFallback = error.code !== "not_event_stream";
        if (error.status === 429) info.attemptFloor = RATE_ATTEMPT_FLOOR;
        else if (error.status === 403 || error.status === 401) info.attemptFloor = POLICY_ATTEMPT_FLOOR;
        if (error.code === "invalid_cursor") info.invalidCursor = true;
        if (error.code === "token_expired") {
          info.tokenExpired = true;
          delete info.attemptFloor;
          return info;
        }
        if (error.status !== 429) this.client._emit("error", error);
      }
      return info;
    }
    url(path, topics, cursor, extra) {
      var params = new URLSearchParams();
      topics.forEach(function(topic) {
        params.append("topic", topic);
      });
      (Array.isArray(cursor) ? cursor : [cursor]).forEach(function(each) {
        if (each) params.append("cursor", each);
      });
      if (path !== "history" && path !== "presence") params.set("client", this.client.clientId);
      if (extra) {
        Object.keys(extra).forEach(function(key) {
          params.set(key, String(extra[key]));
        });
      }
      return this.client.url + path + "?" + params.toString();
    }
    async fetch(url, init, deadline) {
      if (this.stopped) throw new RTDeliveryError("stopped", "stopped");
      var self = this;
      var timer = null;
      var timedOut = false;
      init = Object.assign(
        { credentials: "same-origin", cache: "no-store", signal: this.controller ? this.controller.signal : void 0 },
        init || {}
      );
      if (deadline && this.controller) {
        timer = setTimeout(function() {
          timedOut = true;
          self.controller.abort();
        }, deadline);
      }
      this.client.stats.requests += 1;
      try {
        return await this.client._fetch(url, init);
      } catch (error) {
        if (timedOut) throw new RTDeliveryError("The request timed out.", "timeout");
        throw error;
      } finally {
        if (timer !== null) clearTimeout(timer);
      }
    }
    async getJSON(path, topics, cursor, extra, deadline) {
      var response = await this.fetch(
        this.url(path, topics, cursor, extra),
        { headers: { Accept: "application/json" } },
        deadline
      );
      if (!response.ok) throw await httpError(response);
      var text = await response.text();
      var answer = JSON.parse(text);
      this.client.stats.bytesReceived += text.length;
      if (path !== "history" && Array.isArray(answer.events) && answer.events.length === 0) {
        this.client.stats.emptyResponses += 1;
      }
      return answer;
    }
    /** Applies one poll/longpoll/history answer; returns its cursor. */
    apply(answer, topics) {
      var client = this.client;
      var lost = answer.lost || (answer.recovered === false ? topics : []);
      lost.forEach(function(topic) {
        client._reset(topic, answer.cursor);
      });
      (answer.events || []).forEach(function(event) {
        client._event(event);
      });
      topics.forEach(function(topic) {
        client._setCursor(topic, answer.cursor);
      });
      return { cursor: answer.cursor, lost };
    }
    async run() {
      var client = this.client;
      var entries = client._activeEntries();
      var topics = entries.map(function(entry) {
        return entry.topic;
      });
      this.topics = topics;
      var resuming = entries.filter(function(entry) {
        return Boolean(entry.cursor);
      }).map(function(entry) {
        return entry.topic;
      });
      var distinct = [];
      entries.forEach(function(entry) {
        if (entry.cursor && distinct.indexOf(entry.cursor) < 0) distinct.push(entry.cursor);
      });
      this.cursorCount = distinct.length;
      if (distinct.length <= 1 || client._useMultiCursor()) {
        var cursors = distinct;
        if (this.name === "sse") return this.stream(topics, cursors, resuming, []);
        var first = await this.getJSON("poll", topics, cursors);
        if (this.stopped) return;
        var applied = this.apply(first, topics);
        this.announce(topics, resuming, applied.lost);
        if (this.name === "longpoll") return this.longpoll(topics, applied.cursor);
        return this.poll(topics, applied.cursor);
      }
      return this.runCatchingUp(topics, resuming);
    }
    /**
     * The way for servers that take one cursor per request: the cursor covering the most topics
     * goes in the request, every other topic with a cursor of its own catches up from it via
     * `history` right after a first `poll` has positioned the request.
     */
    async runCatchingUp(topics, resuming) {
      var client = this.client;
      this.cursorCount = 1;
      var counts = /* @__PURE__ */ new Map();
      topics.forEach(function(topic2) {
        var cursor2 = client._topics.get(topic2).cursor;
        if (cursor2) counts.set(cursor2, (counts.get(cursor2) || 0) + 1);
      });
      var base = null;
      var best = 0;
      counts.forEach(function(count, cursor2) {
        if (count > best) {
          best = count;
          base = cursor2;
        }
      });
      var own = /* @__PURE__ */ new Map();
      topics.forEach(function(topic2) {
        var cursor2 = client._topics.get(topic2).cursor;
        if (cursor2 && cursor2 !== base) own.set(topic2, cursor2);
      });
      var answer = await this.getJSON("poll", topics, base);
      if (this.stopped) return;
      var applied = this.apply(answer, topics);
      var cursor = applied.cursor;
      var lost = applied.lost;
      for (var [topic, since] of own) {
        var caughtUp = await this.catchUp(topic, since);
        if (this.stopped) return;
        if (!caughtUp) lost.push(topic);
      }
      topics.forEach(function(each) {
        client._setCursor(each, cursor);
      });
      if (this.name !== "sse") this.announce(topics, resuming, lost);
      if (this.name === "sse") return this.stream(topics, cursor, resuming, lost);
      if (this.name === "longpoll") return this.longpoll(topics, cursor);
      return this.poll(topics, cursor);
    }
    announce(topics, resuming, lost) {
      var client = this.client;
      if (!this.opened) {
        this.opened = true;
        client._opened(this);
      }
      topics.forEach(function(topic) {
        if (!client._topics.has(topic)) return;
        var recovered = lost.indexOf(topic) < 0;
        client._live(topic);
        client._emit("subscribed", { topic, transport: client.transport, recovered });
        if (recovered && resuming.indexOf(topic) >= 0) {
          client._emit("recovered", { topic, transport: client.transport });
        }
      });
    }
    /** Reads `topic` after `since` from history until it is caught up. False if lost. */
    async catchUp(topic, since) {
      var client = this.client;
      var cursor = since;
      for (var page = 0; page < MAX_CATCH_UP_PAGES; page++) {
        var answer = await this.getJSON("history", [topic], cursor);
        if (this.stopped) return true;
        if (answer.recovered === false) {
          client._reset(topic, answer.cursor);
          return false;
        }
        (answer.events || []).forEach(function(event) {
          client._event(event);
        });
        if (!answer.events || answer.events.length === 0) return true;
        cursor = answer.cursor;
      }
      return true;
    }
    async longpoll(topics, cursor) {
      var options = this.client.options;
      while (!this.stopped) {
        var answer = await this.getJSON(
          "longpoll",
          topics,
          cursor,
          { timeout: options.longpollTimeout },
          (options.longpollTimeout + 15) * 1e3
        );
        if (this.stopped) return;
        cursor = this.apply(answer, topics).cursor;
      }
    }
    async poll(topics, cursor) {
      var client = this.client;
      while (!this.stopped) {
        await this.pause(client.options.pollInterval);
        if (this.stopped) return;
        var headers = { Accept: "application/json" };
        if (this.etag) headers["If-None-Match"] = this.etag;
        var response = await this.fetch(this.url("poll", topics, cursor), { headers });
        if (this.stopped) return;
        if (response.status === 304) {
          client.stats.emptyResponses += 1;
          continue;
        }
        if (!response.ok) throw await httpError(response);
        this.etag = response.headers.get("ETag");
        var text = await response.text();
        var answer = JSON.parse(text);
        client.stats.bytesReceived += text.length;
        if (Array.isArray(answer.events) && answer.events.length === 0) {
          client.stats.emptyResponses += 1;
        }
        cursor = this.apply(answer, topics).cursor;
      }
    }
    /** Waits `ms`, longer while the page is hidden; wake() ends the wait early. */
    pause(ms) {
      var self = this;
      return new Promise(function(resolve) {
        var timer = null;
        var done = function() {
          clearTimeout(timer);
          self.waker = null;
          resolve();
        };
        self.waker = done;
        if (!self.client._hidden) timer = setTimeout(done, ms);
      });
    }
    async stream(topics, cursor, resuming, lost) {
      var client = this.client;
      var response = await this.fetch(
        this.url("sse", topics, cursor),
        { headers: { Accept: "text/event-stream" } }
      );
      if (!response.ok) throw await httpError(response);
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("text/event-stream") !== 0 || !response.body) {
        throw new RTDeliveryError("Expected an event stream, got " + (type || "no body") + ".", "not_event_stream");
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      var frame = { event: "", data: [] };
      var lastId = null;
      var self = this;
      this.abortStream = function() {
        try {
          reader.cancel();
        } catch (_) {
        }
      };
      var dispatch = function() {
        if (frame.data.length === 0) {
          frame = { event: "", data: [] };
          return;
        }
        var name = frame.event || "message";
        var text = frame.data.join("\n");
        frame = { event: "", data: [] };
        self.onFrame(name, text, lastId, topics, resuming, lost);
      };
      var line = function(text) {
        if (text === "") return dispatch();
        if (text.charAt(0) === ":") return;
        var colon = text.indexOf(":");
        var field = colon < 0 ? text : text.slice(0, colon);
        var value = colon < 0 ? "" : text.slice(colon + 1);
        if (value.charAt(0) === " ") value = value.slice(1);
        if (field === "data") frame.data.push(value);
        else if (field === "event") frame.event = value;
        else if (field === "id" && value.indexOf("\0") < 0) lastId = value;
      };
      while (!this.stopped) {
        var chunk = await reader.read();
        if (chunk.done) break;
        this.client.stats.bytesReceived += chunk.value.byteLength;
        buffer += decoder.decode(chunk.value, { stream: true });
        var start = 0;
        for (var i = 0; i < buffer.length; i++) {
          var c = buffer.charAt(i);
          if (c === "\n" || c === "\r") {
            if (c === "\r" && i === buffer.length - 1) break;
            line(buffer.slice(start, i));
            if (this.stopped || this.closing) break;
            if (c === "\r" && buffer.charAt(i + 1) === "\n") i++;
            start = i + 1;
          }
        }
        buffer = buffer.slice(start);
        if (this.closing) break;
      }
      if (this.stopped) return;
      try {
        reader.cancel();
      } catch (_) {
      }
      var info = this.closing || { reason: "stream ended", beforeOpen: !this.opened };
      client._failed(this, info);
    }
    onFrame(name, text, lastId, topics, resuming, lost) {
      var client = this.client;
      var data;
      try {
        data = JSON.parse(text);
      } catch (_) {
        client._emit("error", new RTDeliveryError("Expected JSON data in an SSE frame.", "invalid_frame"));
        return;
      }
      if (name === "rt.open") {
        var opened = (data.lost || []).concat(lost);
        opened.forEach(function(topic) {
          if (lost.indexOf(topic) < 0) client._reset(topic, data.cursor);
        });
        topics.forEach(function(topic) {
          client._setCursor(topic, data.cursor);
        });
        this.announce(topics, resuming, opened);
      } else if (name === "rt.reset") {
        client._reset(data.topic, data.cursor);
      } else if (name === "rt.presence") {
        client._emit("presence", data);
        return;
      } else if (name === "rt.close") {
        if (data.cursor) topics.forEach(function(topic) {
          client._setCursor(topic, data.cursor);
        });
        var reason = data.reason || "closed";
        this.closing = {
          reason,
          immediate: reason === "too_slow",
          tokenExpired: reason === "token_expired",
          ended: RESUMABLE_REASONS.indexOf(reason) < 0 ? reason : void 0,
          noFallback: true
        };
        return;
      } else if (name === "rt.unsubscribed") {
        client._topicEnded(data.topic, data.reason);
        return;
      } else {
        client._event(data);
      }
      if (lastId) topics.forEach(function(topic) {
        client._setCursor(topic, lastId);
      });
    }
  };

  // src/env.mjs
  function readCookie(name) {
    if (typeof document === "undefined" || !document.cookie) return null;
    var parts = document.cookie.split(";");
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i].trim();
      if (part.slice(0, name.length + 1) === name + "=") {
        return decodeURIComponent(part.slice(name.length + 1));
      }
    }
    return null;
  }
  function baseHref() {
    return typeof location !== "undefined" ? location.href : void 0;
  }
  function pageConfig() {
    var doc = globalThis.document;
    var element = doc && doc.getElementById ? doc.getElementById("rtdelivery-config") : null;
    if (!element) return {};
    try {
      return JSON.parse(element.textContent) || {};
    } catch (error) {
      return {};
    }
  }
  function supported(name) {
    if (name === "ws") return typeof WebSocket !== "undefined";
    if (name === "sse") {
      return typeof fetch !== "undefined" && typeof TextDecoder !== "undefined" && typeof ReadableStream !== "undefined";
    }
    return typeof fetch !== "undefined";
  }
  function randomId(length) {
    var alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    var bytes = new Uint8Array(length);
    var c = globalThis.crypto;
    if (c && typeof c.getRandomValues === "function") {
      c.getRandomValues(bytes);
    } else {
      for (var i = 0; i < length; i++) bytes[i] = Math.floor(Math.random() * 256);
    }
    var out = "";
    for (var j = 0; j < length; j++) out += alphabet.charAt(bytes[j] & 63);
    return out;
  }
  function newKey() {
    var c = globalThis.crypto;
    if (c && typeof c.randomUUID === "function") {
      try {
        return c.randomUUID();
      } catch (_) {
      }
    }
    return randomId(32);
  }

  // src/wire.mjs
  var Wire = class {
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
        id: event.id,
        topic: event.topic,
        seq: event.seq,
        type: event.type,
        data: event.data,
        time: event.time
      };
      var self = this;
      entry.handlers.forEach(function(handler) {
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
      this._emit("reset", { topic, transport: this.transport });
    }
    _wsFrame(conn, frame) {
      if (conn !== this._conn) return;
      var op = frame.op;
      var pending = frame.ref != null ? this._pending.get(frame.ref) : void 0;
      if (pending !== void 0) this._pending.delete(frame.ref);
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
          var self = this;
          this._topics.forEach(function(_, topic2) {
            self._setCursor(topic2, frame.cursor);
          });
          if (frame.code !== "too_slow") {
            conn.endReason = frame.code;
            return;
          }
        }
        if (pending && pending.reject) {
          pending.reject(error);
        } else if (pending && pending.kind === "subscribe" && frame.code === "invalid_cursor") {
          var stale = this._topics.get(pending.topic);
          if (stale && stale.state !== "refused") {
            stale.cursor = null;
            this._reset(pending.topic, null);
            conn.subscribe(stale);
            return;
          }
        } else if (pending === void 0 && frame.ref != null && this._lateRefs.has(frame.ref)) {
          this._lateRefs.delete(frame.ref);
          this._emit("error", error);
        } else {
          var topic = pending && pending.kind === "subscribe" ? pending.topic : null;
          if (topic === null && frame.ref == null && frame.topic && TOPIC_REFUSALS.indexOf(frame.code) >= 0) {
            topic = frame.topic;
          }
          var keep = frame.code === "already_subscribed" || frame.code === "unavailable";
          if (topic !== null && !keep && this._topics.has(topic)) {
            error.topic = topic;
            this._refuse(topic, error);
            return;
          }
          this._emit("error", error);
        }
      } else if (op === "unsubscribed" && frame.reason && !pending) {
        this._topicEnded(frame.topic, frame.reason);
      }
    }
    _nextRef() {
      this._refs += 1;
      return this._refs;
    }
    _wsRequest(conn, frame, kind) {
      var self = this;
      return new Promise(function(resolve, reject) {
        var ref = self._nextRef();
        frame.ref = ref;
        var timer = setTimeout(function() {
          if (self._pending.delete(ref)) {
            self._lateRefs.add(ref);
            if (self._lateRefs.size > 64) self._lateRefs.delete(self._lateRefs.values().next().value);
            reject(new RTDeliveryError("No answer to " + kind + " in time.", "timeout"));
          }
        }, self.options.requestTimeout);
        self._pending.set(ref, {
          kind,
          resolve: function(value) {
            clearTimeout(timer);
            resolve(value);
          },
          reject: function(error) {
            clearTimeout(timer);
            reject(error);
          }
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
      pending.forEach(function(request) {
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
          headers,
          body: JSON.stringify(body)
        });
      } catch (error2) {
        throw this._asError(error2);
      }
      if (!response.ok) {
        var error = await httpError(response);
        if (!this._serverKeys && error.code === "invalid_event" && /'key'/.test(error.message) && "key" in body) {
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
        this._tokenWait = Promise.resolve().then(function() {
          return self.options.getToken();
        }).then(function(token) {
          self._tokenWait = null;
          if (typeof token !== "string" || !token) {
            throw new RTDeliveryError("Expected getToken() to give a token string.", "token_missing");
          }
          self._token = token;
          return token;
        }, function(error) {
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
        init = Object.assign({}, init);
        init.headers = Object.assign({}, init.headers, { Authorization: "Bearer " + this._token });
      }
      return fn.call(globalThis, url, init);
    }
    _wsUrl() {
      var url = new URL(this.options.wsUrl || this.url + "ws", baseHref());
      if (!this.options.wsUrl) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      if (this._token) url.searchParams.set("access_token", this._token);
      return url.toString();
    }
  };

  // src/ws.mjs
  var WsConnection = class {
    constructor(client) {
      this.client = client;
      this.name = "ws";
      this.opened = false;
      this.stopped = false;
      this.ws = null;
      this.socketOpen = false;
      this.pingTimer = null;
      this.livenessTimer = null;
      this.waiting = 0;
      this.endReason = null;
    }
    start() {
      var self = this;
      var client = this.client;
      var ws;
      try {
        ws = new WebSocket(client._wsUrl());
      } catch (error) {
        Promise.resolve().then(function() {
          client._failed(self, { beforeOpen: true, reason: String(error) });
        });
        return;
      }
      this.ws = ws;
      ws.onopen = function() {
        if (self.stopped) return;
        self.socketOpen = true;
        var entries = client._activeEntries();
        entries.forEach(function(entry) {
          self.subscribe(entry);
        });
        if (entries.length === 0) self.ping();
        self.schedulePing();
      };
      ws.onmessage = function(message) {
        if (self.stopped) return;
        client.stats.bytesReceived += message.data.length || 0;
        var frame;
        try {
          frame = JSON.parse(message.data);
        } catch (_) {
          client._emit("error", new RTDeliveryError("Expected a JSON frame.", "invalid_frame"));
          return;
        }
        self.heard(frame);
        if (self.stopped) return;
        if (!self.opened) {
          self.opened = true;
          client._opened(self);
        }
        client._wsFrame(self, frame);
      };
      ws.onerror = function() {
      };
      ws.onclose = function(event) {
        if (self.stopped) return;
        var code = STAND_INS[event.code] || event.code;
        var info = {
          beforeOpen: !self.opened,
          code,
          reason: event.reason || "closed"
        };
        if (code === WS_TOO_SLOW) {
          info.immediate = true;
        } else if (code === WS_TOKEN_EXPIRED) {
          info.tokenExpired = true;
          info.reason = "token_expired";
        } else if (code === WS_ACCESS_ENDED) {
          info.ended = info.reason = self.endReason || event.reason || "disconnected";
        } else if (code === WS_POLICY) {
          info.attemptFloor = POLICY_ATTEMPT_FLOOR;
        } else if (code === WS_TOO_MANY_CONNECTIONS) {
          info.attemptFloor = RATE_ATTEMPT_FLOOR;
        } else if (code === WS_GOING_AWAY) {
          info.noFallback = true;
        }
        client._failed(self, info);
      };
    }
    subscribe(entry) {
      if (!this.socketOpen || this.stopped) return;
      var ref = this.client._nextRef();
      var frame = { op: "subscribe", topic: entry.topic, ref };
      entry.resuming = Boolean(entry.cursor);
      if (entry.cursor) frame.since = entry.cursor;
      this.client._pending.set(ref, { kind: "subscribe", topic: entry.topic });
      if (this.send(frame)) this.expect();
    }
    unsubscribe(topic) {
      if (!this.socketOpen || this.stopped) return;
      this.send({ op: "unsubscribe", topic });
    }
    send(frame) {
      if (this.ws && this.ws.readyState === 1) {
        this.ws.send(JSON.stringify(frame));
        return true;
      }
      return false;
    }
    schedulePing() {
      var self = this;
      var options = this.client.options;
      if (!options.pingInterval) return;
      clearTimeout(this.pingTimer);
      this.pingTimer = setTimeout(function() {
        if (self.stopped) return;
        self.ping();
        self.schedulePing();
      }, options.pingInterval);
    }
    ping() {
      if (this.send({ op: "ping" })) this.expect();
    }
    /** Something sent wants an answer: the server has `livenessTimeout` ms to say anything. */
    expect() {
      this.waiting += 1;
      this.arm();
    }
    arm() {
      var self = this;
      var options = this.client.options;
      var timeout = this.opened ? options.livenessTimeout : options.firstAnswerTimeout;
      if (!timeout || this.livenessTimer !== null) return;
      this.livenessTimer = setTimeout(function() {
        self.livenessTimer = null;
        if (self.stopped) return;
        self.client._failed(self, {
          beforeOpen: !self.opened,
          liveness: true,
          reason: "liveness"
        });
      }, timeout);
    }
    /** A frame arrived: the server is alive; keep watching while answers are still owed. */
    heard(frame) {
      var op = frame && frame.op;
      var pending = frame && frame.ref != null ? this.client._pending.get(frame.ref) : void 0;
      if (op === "pong" || op === "subscribed" || op === "error" && pending && pending.kind === "subscribe") {
        this.waiting = Math.max(0, this.waiting - 1);
      }
      clearTimeout(this.livenessTimer);
      this.livenessTimer = null;
      if (this.waiting > 0) this.arm();
    }
    wake() {
    }
    stop() {
      this.stopped = true;
      clearTimeout(this.pingTimer);
      clearTimeout(this.livenessTimer);
      var ws = this.ws;
      if (ws) {
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
        if (ws.readyState === 0 || ws.readyState === 1) {
          try {
            ws.close(1e3, "client");
          } catch (_) {
          }
        }
      }
    }
  };

  // src/connection.mjs
  var Connector = class extends Wire {
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
      this._openTimer = setTimeout(function() {
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
      this._upgradeTimer = setTimeout(function() {
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
      this._tokenPromise = this._getToken().then(function() {
        self._tokenPromise = null;
        self._connect();
      }).catch(function(error) {
        self._tokenPromise = null;
        if (self.state === "closed") return;
        self._emit("error", self._asError(error));
        var delay = backoffDelay(self.options.backoff.base, self.options.backoff.max, self._attempt);
        self._attempt += 1;
        self._emit("disconnected", { transport: null, reason: "getToken failed", delay });
        self._scheduleConnect(delay);
      });
    }
    /** The server ended this user's access: stop, say why, and wait for connect(). */
    _endAccess(conn, reason) {
      this._ended = reason;
      this._token = null;
      this._pendingAll();
      this._setState("idle");
      this._emit("disconnected", { transport: conn.name, reason, delay: null });
      this._emit("ended", { transport: conn.name, reason });
    }
    /** rtdelivery.unsubscribe() on the server: forget the topic (no resubscribe). */
    _topicEnded(topic, reason) {
      if (!this._topics.has(topic)) return;
      this._emit("unsubscribed", { topic, reason: reason || "unsubscribed" });
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
        this._refuse(info.refusedTopic, info.error);
        this._connect(true);
        return;
      }
      if (info.tooManyTopics) {
        var limit = info.tooManyTopics;
        var over = this._activeEntries().slice(limit);
        var self = this;
        over.forEach(function(entry) {
          self._refuse(entry.topic, new RTDeliveryError(
            "Not subscribed to " + JSON.stringify(entry.topic) + ": the server takes at most " + limit + " topics per connection (MAX_TOPICS).",
            "too_many_topics",
            400,
            { topic: entry.topic }
          ));
        });
        this._connect(true);
        return;
      }
      if (info.multiCursorRefused === "server") this._multiCursor = false;
      else if (info.multiCursorRefused) this._skipMultiCursor = true;
      this._pendingAll();
      if (info.liveness && info.beforeOpen) {
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
          this._endAccess(conn, "token_expired");
          return;
        }
        info.noFallback = true;
        info.immediate = this._tokenRefreshes++ === 0;
      }
      if (info.invalidCursor) {
        var self = this;
        this._topics.forEach(function(entry, topic) {
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
          this._proven = null;
          this._provenFailures = 0;
          this._index = 0;
          this._attempt = Math.max(this._attempt, 1);
        }
      }
      var delay = 0;
      if (fallback && this._index + 1 < this._candidates.length) {
        this._index += 1;
      } else {
        if (fallback) this._index = 0;
        if (info.attemptFloor) this._attempt = Math.max(this._attempt, info.attemptFloor);
        if (!info.immediate || fallback) {
          delay = backoffDelay(this.options.backoff.base, this.options.backoff.max, this._attempt);
          this._attempt += 1;
        }
      }
      this._emit("disconnected", {
        transport: conn.name,
        code: info.code,
        reason: info.reason,
        delay,
        next: this._proven || this._candidates[this._index]
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
      this._timer = setTimeout(function() {
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
        this._batch(function() {
          if (self._conn !== conn) return;
          self._stopConnection();
          self._connect(true);
        }, false);
        return;
      }
      if (this._timer !== null || this._offline) return;
      this._batch(function() {
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
      var run = function() {
        self._batchTimer = null;
        self._batchStart = null;
        var todo = self._batchFn;
        self._batchFn = null;
        if (todo && self.state !== "closed") todo();
      };
      if (!delay) {
        if (this._batchTimer === null) {
          this._batchTimer = -1;
          Promise.resolve().then(run);
        }
        return;
      }
      var time = Date.now();
      if (this._batchStart === null) this._batchStart = time;
      if (this._batchTimer !== null && this._batchTimer !== -1) clearTimeout(this._batchTimer);
      else if (this._batchTimer === -1) return;
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
      this._onOnline = function() {
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
      this._onOffline = function() {
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
      this._onVisibility = function() {
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
  };

  // src/outbox.mjs
  var KEY = /^[A-Za-z0-9_.:-]{1,128}$/;
  function retryable(error) {
    if (!(error instanceof RTDeliveryError)) return false;
    var code = error.code;
    if (code === "network" || code === "timeout" || code === "disconnected" || code === "offline") return true;
    return RETRY_PUBLISH_STATUS.indexOf(error.status) >= 0 || error.code === "unavailable";
  }
  var Outbox = class {
    constructor(client) {
      this.client = client;
      this.items = [];
      this.busy = false;
      this.retryTimer = null;
      this.attempt = 0;
    }
    /** Queues a publish; the promise settles with the server's answer (or why it never came). */
    add(topic, data, type, key, deadline) {
      if (key === void 0 || key === null) key = newKey();
      if (typeof key !== "string" || !KEY.test(key)) {
        return Promise.reject(new RTDeliveryError(
          "Expected key as 1-128 letters, digits and _.:-, got " + JSON.stringify(key) + ".",
          "invalid_key"
        ));
      }
      var json;
      try {
        json = JSON.stringify(data);
      } catch (error) {
        return Promise.reject(new RTDeliveryError(
          "Expected data JSON can carry: " + (error && error.message ? error.message : String(error)),
          "invalid_data"
        ));
      }
      data = json === void 0 ? null : JSON.parse(json);
      var self = this;
      return new Promise(function(resolve, reject) {
        var item = {
          key,
          topic,
          data,
          type,
          state: "queued",
          resolve,
          reject,
          expired: false,
          timer: null
        };
        var timeout = self.client.options.outboxTimeout;
        if (typeof deadline === "number") timeout = Math.max(1, deadline - Date.now());
        if (timeout > 0) {
          item.timer = setTimeout(function() {
            item.expired = true;
            if (item.state === "queued") self.expire(item);
          }, timeout);
        }
        self.items.push(item);
        self.changed();
        self.flush();
      });
    }
    /** What is waiting: `[{key, topic, data, type, state}]`, oldest first. */
    list() {
      return this.items.map(function(item) {
        return { key: item.key, topic: item.topic, data: item.data, type: item.type, state: item.state };
      });
    }
    changed() {
      this.client._emit("outbox", { size: this.items.length });
    }
    /**
     * Sends what is queued, if the client can (over the WebSocket or HTTP): one at a time,
     * oldest first, each after the previous one's answer, so a publish that must be sent again
     * (no answer in time, the socket dropped) cannot be overtaken by the next.
     */
    flush() {
      if (this.client._publishRoute() === null || this.busy) return;
      this.busy = true;
      var self = this;
      var finished = function() {
        self.busy = false;
        var queued = self.items.some(function(item) {
          return item.state === "queued";
        });
        if (queued && self.retryTimer === null) self.flush();
      };
      this.sendInTurn().then(finished, finished);
    }
    async sendInTurn() {
      for (; ; ) {
        var item = this.items.find(function(each) {
          return each.state === "queued";
        });
        var route = this.client._publishRoute();
        if (!item || route === null) return;
        item.state = "sending";
        this.changed();
        var answer = null;
        var error = null;
        try {
          if (route === "http") {
            answer = await this.client._httpPublish(item);
          } else {
            var frame = { op: "publish", topic: item.topic, type: item.type, data: item.data, key: item.key };
            answer = await this.client._wsRequest(route, frame, "publish");
          }
        } catch (caught) {
          error = caught;
        }
        if (error === null) {
          this.done(item, answer, null);
        } else if (!this.failed(item, error)) {
          return;
        }
      }
    }
    done(item, answer, error) {
      var index = this.items.indexOf(item);
      if (index < 0) return;
      this.items.splice(index, 1);
      clearTimeout(item.timer);
      if (error === null) this.attempt = 0;
      this.changed();
      if (error) item.reject(error);
      else item.resolve(answer);
    }
    /** A send failed: refused (settle it, true) or maybe not sent (queue it again, false). */
    failed(item, error) {
      if (this.items.indexOf(item) < 0) return true;
      if (!retryable(error) || this.client.state === "closed") {
        this.done(item, null, error);
        return true;
      }
      item.state = "queued";
      if (item.expired) {
        this.expire(item);
        return true;
      }
      this.changed();
      this.retryLater();
      return false;
    }
    retryLater() {
      if (this.retryTimer !== null) return;
      var backoff = this.client.options.backoff;
      var self = this;
      this.retryTimer = setTimeout(function() {
        self.retryTimer = null;
        self.flush();
      }, backoffDelay(backoff.base, backoff.max, this.attempt++));
    }
    expire(item) {
      this.done(item, null, new RTDeliveryError(
        "Not published within outboxTimeout (" + this.client.options.outboxTimeout + " ms).",
        "outbox_expired"
      ));
    }
    /** Drops the publish with `key` if it is still queued (rejected outbox_expired); true if so. */
    cancel(key) {
      var item = this.items.find(function(each) {
        return each.key === key && each.state === "queued";
      });
      if (!item) return false;
      this.expire(item);
      return true;
    }
    /** close(): nothing more will be sent. */
    rejectAll(message, code) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      var items = this.items;
      this.items = [];
      items.forEach(function(item) {
        clearTimeout(item.timer);
        item.reject(new RTDeliveryError(message, code));
      });
      if (items.length) this.changed();
    }
  };

  // src/listeners.mjs
  function listenerMethods(names) {
    return {
      /** Calls `fn(data)` on client event `name`; returns a function that removes it. */
      on(name, fn) {
        if (names.indexOf(name) < 0) {
          throw new TypeError("Unknown event " + JSON.stringify(name) + "; expected one of " + names.join(", ") + ".");
        }
        if (!this._listeners.has(name)) this._listeners.set(name, /* @__PURE__ */ new Set());
        var set = this._listeners.get(name);
        set.add(fn);
        return function() {
          set.delete(fn);
        };
      },
      /** Removes a listener added with on(). */
      off(name, fn) {
        var set = this._listeners.get(name);
        if (set) set.delete(fn);
      },
      _emit(name, data) {
        var set = this._listeners.get(name);
        if (!set) return;
        Array.from(set).forEach(function(fn) {
          try {
            fn(data);
          } catch (error) {
            if (name !== "error" && typeof console !== "undefined") console.error(error);
          }
        });
      }
    };
  }

  // src/presence.mjs
  var SETTLE_MS = 1e3;
  function copy(snapshot) {
    return {
      topic: snapshot.topic,
      count: snapshot.count || 0,
      anonymous: snapshot.anonymous || 0,
      users: (snapshot.users || []).map(function(user) {
        return Object.assign({}, user);
      })
    };
  }
  var PresenceWatch = class {
    constructor(client, topic, onChange) {
      this.client = client;
      this.topic = topic;
      this.onChange = onChange;
      this.snapshot = null;
      this.stopped = false;
      this.timer = null;
      this.asking = false;
      this.again = false;
      var self = this;
      this.offs = [
        client.on("presence", function(change) {
          if (change && change.topic === topic && change.action) self.apply(change);
        }),
        client.on("open", function() {
          self.refresh();
        }),
        // close() ends every watch of the client.
        client.on("closed", function() {
          self.stop();
        })
      ];
      this.refresh();
    }
    /** Asks for a fresh snapshot (one request at a time), then schedules the next one. */
    refresh() {
      if (this.stopped) return;
      if (this.client.state === "closed") {
        this.stop();
        return;
      }
      if (this.client._offline || this.client.state === "offline") {
        clearTimeout(this.timer);
        this.timer = null;
        return;
      }
      if (this.asking) {
        this.again = true;
        return;
      }
      clearTimeout(this.timer);
      this.timer = null;
      this.asking = true;
      var self = this;
      this.client.presence(this.topic).then(
        function(snapshot) {
          self.asking = false;
          if (self.stopped) return;
          self.snapshot = copy(snapshot);
          self.notify();
          self.next();
        },
        function(error) {
          self.asking = false;
          if (self.stopped) return;
          if (self.client.state !== "closed") self.client._emit("error", error);
          self.next();
        }
      );
    }
    next() {
      if (this.stopped || this.client.state === "closed") return;
      if (this.again) {
        this.again = false;
        this.schedule(SETTLE_MS);
        return;
      }
      var transport = this.client.transport;
      var polling = transport === "poll" || transport === "longpoll" || this.client.state !== "open";
      if (polling) this.schedule(this.client.options.presenceInterval);
    }
    schedule(ms) {
      var self = this;
      clearTimeout(this.timer);
      this.timer = setTimeout(function() {
        self.timer = null;
        self.refresh();
      }, ms);
    }
    /** One join or leave, applied to the snapshot as it stands. */
    apply(change) {
      if (this.asking) this.again = true;
      if (this.snapshot === null) return;
      var snapshot = this.snapshot;
      var user = change.user || {};
      var step = change.action === "join" ? 1 : change.action === "leave" ? -1 : 0;
      if (step === 0) return;
      if (step < 0 && snapshot.count === 0) return;
      snapshot.count += step;
      if (user.id === null || user.id === void 0) {
        snapshot.anonymous = Math.max(0, snapshot.anonymous + step);
      } else {
        var id = String(user.id);
        var index = snapshot.users.findIndex(function(each) {
          return String(each.id) === id;
        });
        if (index < 0 && step > 0) {
          snapshot.users.push({ id, name: user.name, connections: 1 });
          snapshot.users.sort(function(a, b) {
            return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
          });
        } else if (index >= 0) {
          snapshot.users[index].connections += step;
          if (snapshot.users[index].connections <= 0) snapshot.users.splice(index, 1);
        }
      }
      this.notify();
      if (this.timer === null && !this.asking) this.schedule(SETTLE_MS);
    }
    notify() {
      try {
        this.onChange(copy(this.snapshot));
      } catch (error) {
        this.client._emit("error", error);
      }
    }
    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      this.offs.forEach(function(off) {
        off();
      });
    }
  };

  // src/sharing.mjs
  var factory = null;
  function useSharedClient(fn) {
    factory = typeof fn === "function" ? fn : null;
  }
  function sharedClient(options, client) {
    return factory ? factory(options, client) : null;
  }

  // src/subscription.mjs
  var Subscription = class {
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
  };

  // src/client.mjs
  function option(value, fallback) {
    return value !== void 0 && value !== null ? value : fallback;
  }
  var Client = class _Client extends Connector {
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
      transports.forEach(function(name) {
        if (TRANSPORTS.indexOf(name) < 0) {
          throw new TypeError("Unknown transport " + JSON.stringify(name) + "; expected one of " + TRANSPORTS.join(", ") + ".");
        }
      });
      var backoff = options.backoff || {};
      this.options = {
        transports: transports.slice(),
        wsUrl: options.wsUrl || null,
        pollInterval: options.pollInterval != null ? options.pollInterval : 5e3,
        longpollTimeout: options.longpollTimeout != null ? options.longpollTimeout : 25,
        openTimeout: options.openTimeout != null ? options.openTimeout : 1e4,
        pingInterval: options.pingInterval != null ? options.pingInterval : 25e3,
        // A subscribe or ping unanswered this long (ms) ends the socket (pongTimeout: its old name).
        livenessTimeout: option(options.livenessTimeout, option(options.pongTimeout, 5e3)),
        // The first answer on a new socket may take longer (a cold server): this long (ms).
        firstAnswerTimeout: option(options.firstAnswerTimeout, 8e3),
        // On a fallback transport, the first candidate is tried again after this long (ms).
        upgradeAfter: option(options.upgradeAfter, 3e5),
        outboxTimeout: option(options.outboxTimeout, 6e4),
        presenceInterval: option(options.presenceInterval, 15e3),
        shared: Boolean(options.shared),
        requestTimeout: options.requestTimeout != null ? options.requestTimeout : 15e3,
        // SSE, long poll, poll: subscription changes this close together (ms) share one reopen.
        batchDelay: option(options.batchDelay, 100),
        maxProvenFailures: options.maxProvenFailures != null ? options.maxProvenFailures : 5,
        csrfCookieName: options.csrfCookieName || "csrftoken",
        backoff: {
          base: backoff.base != null ? backoff.base : 500,
          max: backoff.max != null ? backoff.max : 3e4
        },
        fetch: options.fetch || null,
        getToken: options.getToken || null
      };
      if (this.options.getToken !== null && typeof this.options.getToken !== "function") {
        throw new TypeError("Expected getToken to be a function returning a token (or its promise).");
      }
      this._candidates = this.options.transports.filter(supported);
      if (this._candidates.length === 0) {
        throw new TypeError("None of the transports " + transports.join(", ") + " is supported here.");
      }
      this.state = "idle";
      this.clientId = randomId(22);
      this.transport = null;
      this.stats = {
        connects: 0,
        requests: 0,
        emptyResponses: 0,
        bytesReceived: 0,
        delivered: 0,
        duplicates: 0,
        resets: 0
      };
      this._topics = /* @__PURE__ */ new Map();
      this._listeners = /* @__PURE__ */ new Map();
      this._pending = /* @__PURE__ */ new Map();
      this._refs = 0;
      this._lateRefs = /* @__PURE__ */ new Set();
      this._conn = null;
      this._timer = null;
      this._openTimer = null;
      this._attempt = 0;
      this._index = 0;
      this._proven = null;
      this._provenFailures = 0;
      this._lastOpened = null;
      this._batchTimer = null;
      this._batchFn = null;
      this._batchStart = null;
      this._outbox = new Outbox(this);
      this._multiCursor = true;
      this._skipMultiCursor = false;
      this._livenessFailures = 0;
      this._upgradeTimer = null;
      this._token = null;
      this._tokenPromise = null;
      this._tokenWait = null;
      this._tokenRefreshes = 0;
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
      return this === _Client && value != null && value._sharedClient === true;
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
          topic,
          handlers: /* @__PURE__ */ new Set(),
          cursor: options.since || null,
          lastSeq: null,
          resuming: false,
          state: "pending",
          error: null
        };
        this._topics.set(topic, entry);
      }
      var sub = new Subscription(this, entry, onEvent, options);
      entry.handlers.add(sub);
      if (added) {
        this._subscriptionChanged(entry);
        this._topicsChanged(topic, true);
      } else if (retry) {
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
      var params = new URLSearchParams({ topic });
      if (options.limit != null) params.set("limit", String(options.limit));
      if (options.cursor) params.set("cursor", options.cursor);
      var self = this;
      this.stats.requests += 1;
      return this._authFetch(this.url + "history?" + params.toString(), {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" }
      }).then(async function(response) {
        if (!response.ok) throw await httpError(response);
        var body = await response.json();
        return { events: body.events || [], cursor: body.cursor, recovered: body.recovered !== false };
      }).catch(function(error) {
        throw self._asError(error);
      });
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
        topic,
        get snapshot() {
          return watch.snapshot;
        },
        stop: function() {
          watch.stop();
        }
      };
    }
    /** Resolves to the presence snapshot of `topic` (`{topic, ...}`). */
    presence(topic) {
      var conn = this._conn;
      if (conn && conn.name === "ws" && conn.opened) {
        return this._wsRequest(conn, { op: "presence", topic }, "presence");
      }
      var self = this;
      var url = this.url + "presence?" + new URLSearchParams({ topic }).toString();
      return this._authFetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } }).then(async function(response) {
        if (!response.ok) throw await httpError(response);
        return response.json();
      }).catch(function(error) {
        throw self._asError(error);
      });
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
      Array.from(this._topics.values()).forEach(function(entry) {
        self._subState(entry, "ended", entry.error);
      });
      this._emit("closed", { reason: "client" });
    }
    _setState(state) {
      var previous = this.state;
      if (previous === state) return;
      this.state = state;
      this._emit("state", { state, previous, transport: this.transport });
    }
    // -- subscriptions ----------------------------------------------------------------
    /** The subscriptions a connection carries: all but the refused ones. */
    _activeEntries() {
      var entries = [];
      this._topics.forEach(function(entry) {
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
      entry.handlers.forEach(function(sub) {
        sub._changed();
      });
    }
    /** The server confirmed `topic` on this connection. */
    _live(topic) {
      var entry = this._topics.get(topic);
      if (entry && entry.state !== "refused") this._subState(entry, "live", null);
    }
    /** The connection is gone: every live subscription waits for the next one. */
    _pendingAll() {
      var self = this;
      this._topics.forEach(function(entry) {
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
      entry.handlers.forEach(function(sub) {
        sub._error(error);
      });
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
  };
  Object.assign(Client.prototype, listenerMethods(STATE_EVENTS));

  // src/shared-delivery.mjs
  var MAX_CATCH_UP_PAGES2 = 1e3;
  var deliveryMethods = {
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
      entry.handlers.forEach(function(handler) {
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
        for (var page = 0; page < MAX_CATCH_UP_PAGES2 && cursor; page++) {
          var answer = await this.history(entry.topic, { cursor });
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
        if (this._topics.get(entry.topic) === entry) {
          this._emit("error", error);
          this._resetEntry(entry, null);
        }
      } finally {
        entry.catching = false;
        var buffer = entry.buffer.sort(function(a, b) {
          return a.seq - b.seq;
        });
        entry.buffer = [];
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
        Object.keys(data).forEach(function(key) {
          if (data[key] && data[key].__error) data[key] = self._error(data[key].__error);
        });
      }
      var topic = data && typeof data === "object" ? data.topic : void 0;
      var entry = typeof topic === "string" ? this._topics.get(topic) : void 0;
      if (typeof topic === "string" && !entry && name !== "presence") return;
      if (entry) {
        if (name === "reset") {
          if (entry.catching) return;
          this._own.resets += 1;
          entry.lastSeq = null;
        } else if (name === "subscribed") {
          if (cursor && entry.lastSeq === null && !entry.cursor) entry.cursor = cursor;
          this._subState(entry, "live", null);
        } else if (name === "subscription") {
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
      if (!state || entry.state === state && entry.error === error) return;
      entry.state = state;
      entry.error = error;
      this._emit("subscription", { topic: entry.topic, state, error });
      var self = this;
      entry.handlers.forEach(function(handler) {
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
    }
  };

  // src/shared-election.mjs
  var HEARTBEAT = 1e3;
  var LEADER_TIMEOUT = 3500;
  var FIRST_WAIT = 400;
  var CLAIM_WINDOW = 300;
  function webLocks() {
    var locks = typeof navigator !== "undefined" ? navigator.locks : void 0;
    return locks && typeof locks.request === "function" ? locks : null;
  }
  var Election = class {
    constructor(name, tabId, hooks) {
      this.name = name;
      this.tabId = tabId;
      this.hooks = hooks;
      this.locks = webLocks();
      this.fallback = !this.locks;
      this.stopped = false;
      this.abort = typeof AbortController === "function" ? new AbortController() : null;
      this.release = [];
      this.claiming = null;
      this.deadline = 0;
      this.ticker = null;
      this.lastBeat = 0;
    }
    start() {
      var self = this;
      if (this.locks) {
        this.hold(this.name + ":tab:" + this.tabId, function() {
        });
        this.hold(this.name, function() {
          self.hooks.elected();
        });
        return;
      }
      this.deadline = Date.now() + FIRST_WAIT;
      this.ticker = setInterval(function() {
        self.tick();
      }, HEARTBEAT / 4);
    }
    /** Requests lock `name`; `granted()` runs when it is ours; held until stop(). */
    hold(name, granted) {
      var self = this;
      var options = this.abort ? { signal: this.abort.signal } : {};
      this.locks.request(name, options, function() {
        if (self.stopped) return void 0;
        return new Promise(function(release) {
          self.release.push(release);
          granted();
        });
      }).catch(function() {
      });
    }
    /** Ids of the tabs alive now (their own locks held), or null when that cannot be told. */
    async alive() {
      if (!this.locks || typeof this.locks.query !== "function") return null;
      var prefix = this.name + ":tab:";
      var state = await this.locks.query();
      var ids = /* @__PURE__ */ new Set();
      (state.held || []).concat(state.pending || []).forEach(function(lock) {
        if (lock.name && lock.name.indexOf(prefix) === 0) ids.add(lock.name.slice(prefix.length));
      });
      return ids;
    }
    stop() {
      this.stopped = true;
      if (this.abort) this.abort.abort();
      this.release.forEach(function(release) {
        release();
      });
      this.release = [];
      clearInterval(this.ticker);
    }
    // -- BroadcastChannel election (no Web Locks) ------------------------------------------
    /** A leader spoke (announcement or heartbeat): no election for a while. */
    heard() {
      this.deadline = Date.now() + LEADER_TIMEOUT;
    }
    /** The leader said bye: elect now (Web Locks hand the lock over by themselves). */
    leaderGone() {
      this.deadline = 0;
      if (this.fallback) this.claim();
    }
    tick() {
      if (this.stopped) return;
      var now = Date.now();
      if (this.hooks.isLeader()) {
        if (now - this.lastBeat >= HEARTBEAT) this.beat();
      } else if (now > this.deadline && !this.claiming) {
        this.claim();
      }
    }
    beat() {
      this.lastBeat = Date.now();
      this.hooks.announce();
    }
    claim() {
      if (this.claiming || this.stopped || this.hooks.isLeader()) return;
      var self = this;
      var rivals = /* @__PURE__ */ new Set();
      this.claiming = rivals;
      this.hooks.post({ t: "claim" });
      setTimeout(function() {
        self.claiming = null;
        if (self.stopped || self.hooks.isLeader() || Date.now() <= self.deadline) return;
        var lower = Array.from(rivals).some(function(tab) {
          return tab < self.tabId;
        });
        if (lower) self.deadline = Date.now() + CLAIM_WINDOW * 2;
        else self.hooks.elected();
      }, CLAIM_WINDOW);
    }
    /** Another tab claims the lead. */
    onClaim(from) {
      if (!this.fallback) return;
      if (this.hooks.isLeader()) {
        this.beat();
        return;
      }
      if (!this.claiming && Date.now() > this.deadline) this.claim();
      if (this.claiming) this.claiming.add(from);
    }
  };

  // src/shared-leader.mjs
  var COLLECT_TIMEOUT = 1500;
  var PRUNE_INTERVAL = 1e4;
  var CLIENT_EVENTS = [
    "connecting",
    "open",
    "transport",
    "subscribed",
    "recovered",
    "reset",
    "presence",
    "disconnected",
    "error",
    "ended",
    "unsubscribed",
    "subscription"
  ];
  function plainError(error) {
    var e = error || {};
    return {
      message: e.message ? String(e.message) : String(error),
      code: e.code || "error",
      status: e.status || 0,
      topic: e.topic
    };
  }
  function toWire(data) {
    if (data instanceof Error) return { __error: plainError(data) };
    if (!data || typeof data !== "object" || Array.isArray(data)) return data;
    var out = {};
    Object.keys(data).forEach(function(key) {
      out[key] = data[key] instanceof Error ? { __error: plainError(data[key]) } : data[key];
    });
    return out;
  }
  function rank(position) {
    return position.seq == null ? -1 : position.seq;
  }
  var Leader = class {
    constructor(tab) {
      this.tab = tab;
      this.inner = null;
      this.union = /* @__PURE__ */ new Map();
      this.subs = /* @__PURE__ */ new Map();
      this.queued = [];
      this.collect = null;
      this.lastSnap = null;
      this.pruner = null;
    }
    /** Takes over: asks every known tab for its positions, then starts the client from the lowest. */
    start(previousLeader) {
      var tab = this.tab;
      var self = this;
      var waiting = new Set(tab._tabs);
      if (previousLeader) waiting.delete(previousLeader);
      this.collect = { waiting, lowest: /* @__PURE__ */ new Map(), timer: null };
      tab._topics.forEach(function(entry, topic) {
        self.add(tab.tabId, topic, { seq: entry.lastSeq, cursor: entry.cursor });
      });
      this.announce(true);
      if (waiting.size === 0) {
        this.collectDone();
      } else {
        this.collect.timer = setTimeout(function() {
          self.collectDone(true);
        }, COLLECT_TIMEOUT);
        this.prune();
      }
      this.pruner = setInterval(function() {
        self.prune();
      }, PRUNE_INTERVAL);
    }
    announce(collect) {
      this.tab._post({ t: "leader", collect, snap: this.snap() });
    }
    /**
     * Tabs whose Web Lock is gone (closed or crashed without a bye): not waited for on takeover;
     * their topics are dropped once two checks in a row missed them (a tab that just opened may
     * not hold its lock yet).
     */
    prune() {
      var self = this;
      var tab = this.tab;
      tab._election.alive().then(function(ids) {
        if (!ids || tab._leader !== self) return;
        var absent = /* @__PURE__ */ new Set();
        var check = function(id) {
          if (id !== tab.tabId && !ids.has(id)) absent.add(id);
        };
        tab._tabs.forEach(check);
        self.union.forEach(function(tabs) {
          tabs.forEach(check);
        });
        if (self.collect) {
          absent.forEach(function(id) {
            self.collect.waiting.delete(id);
          });
          self.collectDone();
        }
        var suspects = self.suspects || /* @__PURE__ */ new Set();
        self.suspects = absent;
        absent.forEach(function(id) {
          if (suspects.has(id)) self.removeTab(id);
        });
      }, function() {
      });
    }
    removeTab(id) {
      var self = this;
      this.tab._tabs.delete(id);
      Array.from(this.union.keys()).forEach(function(topic) {
        self.remove(id, topic);
      });
      if (this.collect && this.collect.waiting.delete(id)) this.collectDone();
    }
    onPositions(from, topics) {
      var self = this;
      Object.keys(topics || {}).forEach(function(topic) {
        self.add(from, topic, topics[topic]);
      });
      if (this.collect && this.collect.waiting.delete(from)) this.collectDone();
    }
    /** Every known tab answered (or the wait ran out): the client starts, from the lowest positions. */
    collectDone(timedOut) {
      var collect = this.collect;
      if (!collect || !timedOut && collect.waiting.size > 0) return;
      clearTimeout(collect.timer);
      this.collect = null;
      var self = this;
      var tab = this.tab;
      collect.waiting.forEach(function(id) {
        tab._tabs.delete(id);
      });
      var inner = new tab._Client(tab._options);
      this.inner = inner;
      Object.defineProperty(inner, "_hidden", { get: function() {
        return false;
      }, set: function() {
      } });
      CLIENT_EVENTS.forEach(function(name) {
        try {
          inner.on(name, function(data) {
            if (self.inner === inner) self.innerEvent(name, data);
          });
        } catch (_) {
        }
      });
      try {
        inner.on("state", function() {
          if (self.inner === inner) self.snapshot();
        });
      } catch (_) {
      }
      this.union.forEach(function(_, topic) {
        var lowest = collect.lowest.get(topic);
        self.subscribe(topic, lowest ? lowest.cursor : null);
      });
      var queued = this.queued;
      this.queued = [];
      queued.forEach(function(request) {
        self.serve(request);
      });
      this.snapshot();
    }
    /** Tab `id` wants `topic` (from `position`); true when the connection did not carry it yet. */
    add(id, topic, position) {
      var tabs = this.union.get(topic);
      var fresh = !tabs;
      if (fresh) this.union.set(topic, tabs = /* @__PURE__ */ new Set());
      var known = tabs.has(id);
      tabs.add(id);
      if (this.collect) {
        var lowest = this.collect.lowest.get(topic);
        if (position && position.cursor && (!lowest || rank(position) < rank(lowest))) {
          this.collect.lowest.set(topic, position);
        }
        return fresh;
      }
      if (!this.inner) return fresh;
      var sub = this.subs.get(topic);
      if (fresh || !sub || sub.state === "refused" || sub.state === "ended") {
        if (sub) sub.unsubscribe();
        this.subscribe(topic, position && position.cursor);
        return true;
      }
      if (sub.state === "live" && !known) {
        var data = { topic, transport: this.inner.transport, recovered: true };
        if (id === this.tab.tabId) this.tab._clientEvent("subscribed", data, null);
        else this.tab._post({ t: "emit", to: id, name: "subscribed", data });
      }
      return false;
    }
    remove(id, topic) {
      var tabs = this.union.get(topic);
      if (!tabs || !tabs.delete(id) || tabs.size > 0) return;
      this.union.delete(topic);
      var sub = this.subs.get(topic);
      this.subs.delete(topic);
      if (sub) sub.unsubscribe();
    }
    subscribe(topic, since) {
      var self = this;
      var inner = this.inner;
      var sub = inner.subscribe(topic, function(event) {
        if (self.inner !== inner) return;
        var plain = {
          id: event.id,
          topic: event.topic,
          seq: event.seq,
          type: event.type,
          data: event.data,
          time: event.time
        };
        self.tab._post({ t: "event", event: plain });
        self.tab._deliver(plain);
      }, since ? { since } : void 0);
      this.subs.set(topic, sub);
    }
    innerEvent(name, data) {
      var topic = data && typeof data === "object" ? data.topic : void 0;
      if (name === "unsubscribed" && typeof topic === "string") {
        this.union.delete(topic);
        this.subs.delete(topic);
      }
      var wire = toWire(data);
      var cursor = name === "subscribed" && typeof topic === "string" ? this.inner.cursor(topic) : null;
      this.tab._post({ t: "emit", name, data: wire, cursor });
      this.tab._clientEvent(name, wire, cursor);
      var self = this;
      Promise.resolve().then(function() {
        self.snapshot();
      });
    }
    snap() {
      var inner = this.inner;
      var tab = this.tab;
      if (!inner) return { state: this.union.size ? "connecting" : "idle", transport: null, online: tab.online };
      return {
        state: inner.state,
        transport: inner.transport,
        clientId: inner.clientId,
        online: inner.online !== void 0 ? inner.online : tab.online
      };
    }
    /** Sends the client's state to every tab when it changed. */
    snapshot() {
      if (this.tab._leader !== this) return;
      var snap = this.snap();
      var last = this.lastSnap;
      if (last && last.state === snap.state && last.transport === snap.transport && last.online === snap.online) return;
      this.lastSnap = snap;
      this.tab._post({ t: "snap", snap });
      this.tab._applySnap(snap);
    }
    /** Runs a tab's request ({id, op, args, from}) on the client and answers it. */
    serve(request) {
      if (!this.inner) {
        this.queued.push(request);
        return;
      }
      var inner = this.inner;
      var tab = this.tab;
      var a = request.args || {};
      var result;
      try {
        if (request.op === "publish") {
          var options = { key: a.key };
          if (a.type) options.type = a.type;
          if (typeof a.deadline === "number") options._deadline = a.deadline;
          result = inner.publish(a.topic, a.data, options);
        } else if (request.op === "cancel") {
          inner._outbox.cancel(a.key);
          return;
        } else if (request.op === "presence") {
          result = inner.presence(a.topic);
        } else if (request.op === "history") {
          if (typeof inner.history !== "function") {
            throw new tab._Error("This client cannot read history.", "unsupported");
          }
          result = inner.history(a.topic, a.options);
        } else if (request.op === "connect") {
          result = inner.connect();
        } else {
          throw new tab._Error("Unknown request " + JSON.stringify(request.op) + ".", "bad_request");
        }
      } catch (error) {
        result = Promise.reject(error);
      }
      var self = this;
      var reply = function(answer) {
        if (self.inner !== inner && request.from !== tab.tabId) return;
        answer.t = "res";
        answer.id = request.id;
        if (request.from === tab.tabId) {
          tab._answer(answer);
        } else {
          answer.to = request.from;
          tab._post(answer);
        }
      };
      Promise.resolve(result).then(
        function(value) {
          reply({ ok: true, value: value === void 0 ? null : value });
        },
        function(error) {
          reply({ ok: false, error: plainError(error) });
        }
      );
    }
    stop() {
      if (this.collect) clearTimeout(this.collect.timer);
      this.collect = null;
      clearInterval(this.pruner);
      var inner = this.inner;
      this.inner = null;
      this.queued = [];
      if (inner) inner.close();
    }
  };

  // src/shared.mjs
  var PROTOCOL = 1;
  var EVENTS = CLIENT_EVENTS.concat(["closed", "state", "outbox", "leader"]);
  function randomId2() {
    var c = globalThis.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }
  function configUrl() {
    var doc = globalThis.document;
    var element = doc && doc.getElementById ? doc.getElementById("rtdelivery-config") : null;
    try {
      return element ? (JSON.parse(element.textContent) || {}).url : void 0;
    } catch (_) {
      return void 0;
    }
  }
  function channelName(options) {
    if (options.sharedName) return "rtdelivery:" + options.sharedName;
    var base = typeof location !== "undefined" ? location.href : "http://localhost/";
    var url = new URL(options.url || configUrl() || "/rt/", base);
    return "rtdelivery:" + url.origin + url.pathname.replace(/\/?$/, "/");
  }
  function createSharedClient(options, client) {
    if (typeof BroadcastChannel !== "function") return null;
    return new SharedClient(client.constructor, options);
  }
  var SharedClient = class {
    /** Marks it for `instanceof Client` (client.mjs). */
    get _sharedClient() {
      return true;
    }
    constructor(Client2, options) {
      options = options || {};
      if (options.sharedName != null && (typeof options.sharedName !== "string" || !options.sharedName)) {
        throw new TypeError("Expected sharedName to be a non-empty string.");
      }
      this._Client = Client2;
      this._Error = RTDeliveryError;
      this._options = Object.assign({}, options, { shared: false });
      new Client2(this._options).close();
      this.options = {
        outboxTimeout: options.outboxTimeout != null ? options.outboxTimeout : 6e4,
        presenceInterval: options.presenceInterval != null ? options.presenceInterval : 15e3,
        requestTimeout: options.requestTimeout != null ? options.requestTimeout : 15e3
      };
      this._name = channelName(options);
      this.tabId = randomId2();
      this.leader = null;
      this.state = "idle";
      this.transport = null;
      this.online = typeof navigator === "undefined" || navigator.onLine !== false;
      this._clientId = null;
      this._own = { delivered: 0, duplicates: 0, resets: 0, catchUps: 0 };
      this._topics = /* @__PURE__ */ new Map();
      this._listeners = /* @__PURE__ */ new Map();
      this._pending = /* @__PURE__ */ new Map();
      this._tabs = /* @__PURE__ */ new Set();
      this._leader = null;
      this._closed = false;
      this._channel = new BroadcastChannel(this._name);
      var self = this;
      this._channel.onmessage = function(message) {
        self._receive(message.data);
      };
      this._onPageHide = function(event) {
        if (!event.persisted) self._post({ t: "bye" });
      };
      if (typeof addEventListener === "function") addEventListener("pagehide", this._onPageHide);
      this._election = new Election(this._name, this.tabId, {
        elected: function() {
          self._becomeLeader();
        },
        isLeader: function() {
          return self._leader !== null;
        },
        post: function(message) {
          self._post(message);
        },
        announce: function() {
          if (self._leader) self._leader.announce(false);
        }
      });
      this._election.start();
      this._post({ t: "hello" });
    }
    /** "leader" | "follower": whether this tab runs the connection. */
    get role() {
      return this._leader ? "leader" : "follower";
    }
    // -- public API (as the plain Client) ---------------------------------------------------
    subscribe(topic, onEvent, options) {
      if (this._closed) throw new this._Error("The client is closed.", "closed");
      if (typeof topic !== "string" || !topic) throw new TypeError("Expected a topic name.");
      if (typeof onEvent !== "function") throw new TypeError("Expected a function for events.");
      options = options || {};
      var entry = this._topics.get(topic);
      var added = !entry;
      if (added) {
        entry = {
          topic,
          handlers: /* @__PURE__ */ new Set(),
          lastSeq: null,
          cursor: options.since || null,
          catching: false,
          buffer: [],
          state: "pending",
          error: null
        };
        this._topics.set(topic, entry);
      }
      var handler = { fn: onEvent, onState: options.onState, onError: options.onError, left: false };
      var self = this;
      var sub = {
        topic,
        get state() {
          return handler.left ? "ended" : entry.state;
        },
        get error() {
          return entry.error;
        },
        unsubscribe: function() {
          if (handler.left) return;
          handler.left = true;
          entry.handlers.delete(handler);
          if (handler.onState) self._call(handler.onState, "ended", sub);
          if (self._topics.get(topic) === entry && entry.handlers.size === 0) self.unsubscribe(topic);
        }
      };
      handler.sub = sub;
      entry.handlers.add(handler);
      var retry = !added && entry.state === "refused";
      if (added) this._emit("subscription", { topic, state: "pending", error: null });
      if (retry) this._subState(entry, "pending", null);
      else if (handler.onState) this._call(handler.onState, entry.state, sub);
      if (added || retry) {
        var position = { seq: null, cursor: entry.cursor };
        var fresh = false;
        if (this._leader) fresh = this._leader.add(this.tabId, topic, position);
        else this._post({ t: "sub", topic, position });
        if (added && options.since && !fresh) this._catchUp(entry);
      }
      return sub;
    }
    unsubscribe(topic) {
      var entry = this._topics.get(topic);
      if (!entry || this._closed) return;
      this._topics.delete(topic);
      this._subState(entry, "ended", entry.error);
      if (this._leader) this._leader.remove(this.tabId, topic);
      else this._post({ t: "unsub", topic });
    }
    cursor(topic) {
      var entry = this._topics.get(topic);
      return entry ? entry.cursor : null;
    }
    topics() {
      return Array.from(this._topics.keys());
    }
    /** Publishes through the leader's client; `key` (default: a new UUID) is kept across a hand-over. */
    publish(topic, data, options) {
      options = options || {};
      var timeout = this.options.outboxTimeout;
      var args = {
        topic,
        data,
        type: options.type,
        key: options.key || randomId2(),
        deadline: timeout > 0 ? Date.now() + timeout : null
      };
      return this._request("publish", args, timeout, "outbox_expired");
    }
    presence(topic) {
      return this._request("presence", { topic }, this._requestTimeout(), "timeout");
    }
    history(topic, options) {
      return this._request("history", { topic, options: options || {} }, this._requestTimeout(), "timeout");
    }
    /** As the plain client's: the snapshot asked through the leader, changes from its connection. */
    watchPresence(topic, onChange) {
      if (typeof onChange !== "function") throw new TypeError("Expected a function for presence changes.");
      var watch = new PresenceWatch(this, topic, onChange);
      return {
        topic,
        get snapshot() {
          return watch.snapshot;
        },
        stop: function() {
          watch.stop();
        }
      };
    }
    /** The publishes of this tab not answered yet. */
    get outbox() {
      var out = [];
      this._pending.forEach(function(request) {
        if (request.op !== "publish") return;
        var a = request.args;
        out.push({
          key: a.key,
          topic: a.topic,
          data: a.data,
          type: a.type || "message",
          state: request.sentTo ? "sending" : "queued"
        });
      });
      return out;
    }
    /** This tab's delivery counters (over the leader's client's stats in the leader tab). */
    get stats() {
      var inner = this._leader && this._leader.inner;
      var base = { connects: 0, requests: 0, emptyResponses: 0, bytesReceived: 0 };
      return Object.assign(base, inner ? inner.stats : {}, this._own);
    }
    /** The leader's client id (`client=` on its polling requests): one for the whole browser. */
    get clientId() {
      return this._clientId;
    }
    connect() {
      if (this._closed) throw new this._Error("The client is closed.", "closed");
      this._request("connect", {}, this._requestTimeout(), "timeout").catch(function() {
      });
    }
    close() {
      if (this._closed) return;
      this._post({ t: "bye" });
      this._closed = true;
      var Err = this._Error;
      this._pending.forEach(function(request) {
        clearTimeout(request.timer);
        request.reject(new Err("The client is closed.", "closed"));
      });
      this._pending.clear();
      var self = this;
      this._topics.forEach(function(entry) {
        self._subState(entry, "ended", entry.error);
      });
      if (this._leader) this._leader.stop();
      this._leader = null;
      this._election.stop();
      if (typeof removeEventListener === "function") removeEventListener("pagehide", this._onPageHide);
      this._channel.close();
      var previous = this.state;
      this.state = "closed";
      this._emit("state", { state: "closed", previous, transport: this.transport });
      this._emit("closed", { reason: "client" });
    }
    // -- channel --------------------------------------------------------------------------
    /** Sends to the other tabs; returns an error when `message` cannot be cloned, else null. */
    _post(message) {
      if (this._closed) return null;
      message.v = PROTOCOL;
      message.from = this.tabId;
      try {
        this._channel.postMessage(message);
        return null;
      } catch (error) {
        return new this._Error("Could not send to the other tabs: " + error.message, "not_cloneable");
      }
    }
    _receive(m) {
      if (!m || m.v !== PROTOCOL || m.from === this.tabId || this._closed) return;
      var leader = this._leader;
      if (m.t === "bye") {
        this._tabs.delete(m.from);
        if (leader) leader.removeTab(m.from);
        else if (m.from === this.leader) {
          this.leader = null;
          this._election.leaderGone();
        }
        return;
      }
      this._tabs.add(m.from);
      if (m.to && m.to !== this.tabId) return;
      switch (m.t) {
        case "hello":
          if (leader) leader.announce(false);
          break;
        case "leader":
          this._onLeader(m);
          break;
        case "claim":
          this._election.onClaim(m.from);
          break;
        case "positions":
          if (leader) leader.onPositions(m.from, m.topics);
          break;
        case "sub":
          if (leader) leader.add(m.from, m.topic, m.position);
          break;
        case "unsub":
          if (leader) leader.remove(m.from, m.topic);
          break;
        case "req":
          if (leader) leader.serve({ id: m.id, op: m.op, args: m.args, from: m.from });
          break;
        case "res":
          this._answer(m);
          break;
        case "event":
          this._deliver(m.event);
          break;
        case "emit":
          this._clientEvent(m.name, m.data, m.cursor);
          break;
        case "snap":
          if (m.from === this.leader) this._applySnap(m.snap);
          break;
      }
    }
    // -- leadership -----------------------------------------------------------------------
    _becomeLeader() {
      if (this._closed || this._leader) return;
      var previous = this.leader;
      if (previous) this._tabs.delete(previous);
      this.leader = this.tabId;
      this._leader = new Leader(this);
      this._leader.start(previous);
      this._emit("leader", { leader: this.tabId, self: true });
      var self = this;
      this._pending.forEach(function(request) {
        if (request.sentTo !== self.tabId) self._send(request);
      });
    }
    _onLeader(m) {
      if (this._leader) {
        if (this.tabId < m.from) {
          this._leader.announce(false);
          return;
        }
        this._leader.stop();
        this._leader = null;
      }
      this._election.heard();
      var changed = this.leader !== m.from;
      this.leader = m.from;
      if (m.snap) this._applySnap(m.snap);
      if (changed || m.collect) {
        this._post({ t: "positions", to: m.from, topics: this._positions() });
        var self = this;
        this._pending.forEach(function(request) {
          if (request.sentTo !== m.from) self._send(request);
        });
        this._emit("leader", { leader: m.from, self: false });
      }
    }
    _positions() {
      var out = {};
      this._topics.forEach(function(entry, topic) {
        out[topic] = { seq: entry.lastSeq, cursor: entry.cursor };
      });
      return out;
    }
    // -- requests -------------------------------------------------------------------------
    _requestTimeout() {
      return this.options.requestTimeout;
    }
    _request(op, args, timeout, timeoutCode) {
      if (this._closed) return Promise.reject(new this._Error("The client is closed.", "closed"));
      var self = this;
      return new Promise(function(resolve, reject) {
        var request = { id: randomId2(), op, args, sentTo: null };
        var done = function() {
          clearTimeout(request.timer);
          self._pending.delete(request.id);
          if (op === "publish") self._emit("outbox", { size: self.outbox.length });
        };
        request.resolve = function(value) {
          done();
          resolve(value);
        };
        request.reject = function(error) {
          done();
          reject(error);
        };
        request.timer = setTimeout(function() {
          if (op === "publish" && request.sentTo !== null) {
            self._cancel(request);
            return;
          }
          request.reject(new self._Error("No answer to " + op + " in time.", timeoutCode));
        }, timeout);
        self._pending.set(request.id, request);
        self._send(request);
        if (op === "publish") self._emit("outbox", { size: self.outbox.length });
      });
    }
    /** Asks the leader to drop a publish still queued there (no answer: the publish's says). */
    _cancel(request) {
      var args = { key: request.args.key };
      if (this._leader) {
        this._leader.serve({ id: randomId2(), op: "cancel", args, from: null });
      } else if (this.leader) {
        this._post({ t: "req", to: this.leader, id: randomId2(), op: "cancel", args });
      }
    }
    /** To the leader (again, with the same id and key, when the leader changed). */
    _send(request) {
      if (this._leader) {
        request.sentTo = this.tabId;
        this._leader.serve({ id: request.id, op: request.op, args: request.args, from: this.tabId });
      } else if (this.leader) {
        request.sentTo = this.leader;
        var error = this._post({ t: "req", to: this.leader, id: request.id, op: request.op, args: request.args });
        if (error) request.reject(error);
      }
    }
    _answer(m) {
      var request = this._pending.get(m.id);
      if (!request) return;
      if (m.ok) {
        request.resolve(m.value);
      } else {
        var e = m.error || {};
        var error = new this._Error(e.message || "Request failed.", e.code, e.status);
        if (e.topic) error.topic = e.topic;
        request.reject(error);
      }
    }
    _applySnap(snap) {
      if (this._closed) return;
      var previous = this.state;
      this.state = snap.state;
      this.transport = snap.transport;
      if (snap.online !== void 0) this.online = snap.online;
      if (snap.clientId) this._clientId = snap.clientId;
      if (previous !== snap.state) {
        this._emit("state", { state: snap.state, previous, transport: snap.transport });
      }
    }
  };
  Object.assign(SharedClient.prototype, deliveryMethods, listenerMethods(EVENTS));

  // src/index.mjs
  useSharedClient(createSharedClient);
  var TRANSPORTS2 = TRANSPORTS.slice();
  var index_default = { VERSION, TRANSPORTS: TRANSPORTS2, Client, RTDeliveryError, backoffDelay };

  // src/global.mjs
  globalThis.RTDelivery = index_default;
})();

// The HTTP transports: Server-Sent Events, long polling, short polling.

import {
  MAX_CATCH_UP_PAGES, POLICY_ATTEMPT_FLOOR, RATE_ATTEMPT_FLOOR, RESUMABLE_REASONS, TOPIC_REFUSALS,
} from "./constants.mjs";
import { RTDeliveryError, errorTopic, httpError, isAbort } from "./errors.mjs";

export class HttpConnection {
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
    this.run().catch(function (error) {
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
    var info = { beforeOpen: !this.opened, reason: error.message || String(error), error: error };
    if (error instanceof RTDeliveryError && error.status >= 400 && error.status < 500) {
      var topic = errorTopic(error, this.topics);
      if (topic !== null && TOPIC_REFUSALS.indexOf(error.code) >= 0) {
        // One topic refused: the others go on, in a request without it, at once.
        error.topic = topic;
        info.refusedTopic = topic;
        return info;
      }
      var most = error.code === "too_many_topics" ? /at most (\d+) topics/.exec(error.message) : null;
      if (most && Number(most[1]) > 0 && Number(most[1]) < this.topics.length) {
        // More topics than the server's MAX_TOPICS: the first ones go on, the others are
        // refused by name (subscribe again to ask again), at once.
        info.tooManyTopics = Number(most[1]);
        return info;
      }
      if (this.cursorCount > 1 && error.code === "bad_request" && /at most one 'cursor'/.test(error.message)) {
        // A server from before several cursors were accepted: one cursor and a history
        // catch-up per topic from now on.
        info.multiCursorRefused = "server";
        info.immediate = true;
        info.noFallback = true;
        return info;
      }
      if (error.code === "invalid_cursor" && this.cursorCount > 1 && error.topic) {
        // Ambiguous: a topic in two of the cursors. One cursor and a catch-up this time.
        // (invalid_cursor without a topic: a cursor the server cannot read; below, the
        // topics start again at the live end, as with one cursor.)
        info.multiCursorRefused = "ambiguous";
        info.immediate = true;
        info.noFallback = true;
        return info;
      }
    }
    if (error instanceof RTDeliveryError && error.status) {
      // The server answered: the transport works, the request didn't.
      info.noFallback = error.code !== "not_event_stream";
      if (error.status === 429) info.attemptFloor = RATE_ATTEMPT_FLOOR;
      else if (error.status === 403 || error.status === 401) info.attemptFloor = POLICY_ATTEMPT_FLOOR;
      if (error.code === "invalid_cursor") info.invalidCursor = true;
      if (error.code === "token_expired") {
        info.tokenExpired = true; // a fresh token from getToken(), then the same request
        delete info.attemptFloor;
        return info;
      }
      if (error.status !== 429) this.client._emit("error", error);
    }
    return info;
  }

  url(path, topics, cursor, extra) {
    var params = new URLSearchParams();
    topics.forEach(function (topic) { params.append("topic", topic); });
    // One cursor, or several (each topic's own, as the server merges them).
    (Array.isArray(cursor) ? cursor : [cursor]).forEach(function (each) {
      if (each) params.append("cursor", each);
    });
    if (path !== "history" && path !== "presence") params.set("client", this.client.clientId);
    if (extra) {
      Object.keys(extra).forEach(function (key) { params.set(key, String(extra[key])); });
    }
    return this.client.url + path + "?" + params.toString();
  }

  async fetch(url, init, deadline) {
    if (this.stopped) throw new RTDeliveryError("stopped", "stopped");
    var self = this;
    var timer = null;
    var timedOut = false;
    init = Object.assign(
      { credentials: "same-origin", cache: "no-store", signal: this.controller ? this.controller.signal : undefined },
      init || {}
    );
    if (deadline && this.controller) {
      timer = setTimeout(function () { timedOut = true; self.controller.abort(); }, deadline);
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
      this.url(path, topics, cursor, extra), { headers: { Accept: "application/json" } }, deadline
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
    lost.forEach(function (topic) { client._reset(topic, answer.cursor); });
    (answer.events || []).forEach(function (event) { client._event(event); });
    topics.forEach(function (topic) { client._setCursor(topic, answer.cursor); });
    return { cursor: answer.cursor, lost: lost };
  }

  async run() {
    var client = this.client;
    var entries = client._activeEntries();
    var topics = entries.map(function (entry) { return entry.topic; });
    this.topics = topics;
    var resuming = entries.filter(function (entry) { return Boolean(entry.cursor); })
      .map(function (entry) { return entry.topic; });
    var distinct = [];
    entries.forEach(function (entry) {
      if (entry.cursor && distinct.indexOf(entry.cursor) < 0) distinct.push(entry.cursor);
    });
    this.cursorCount = distinct.length;
    if (distinct.length <= 1 || client._useMultiCursor()) {
      // Every topic's own cursor in one request: the server merges them.
      var cursors = distinct;
      if (this.name === "sse") return this.stream(topics, cursors, resuming, []);
      // A short poll first: it answers at once (the topics are live from here on, with their
      // backlog), then the long poll holds from its cursor.
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
    var counts = new Map();
    topics.forEach(function (topic) {
      var cursor = client._topics.get(topic).cursor;
      if (cursor) counts.set(cursor, (counts.get(cursor) || 0) + 1);
    });
    var base = null;
    var best = 0;
    counts.forEach(function (count, cursor) {
      if (count > best) { best = count; base = cursor; }
    });
    var own = new Map();
    topics.forEach(function (topic) {
      var cursor = client._topics.get(topic).cursor;
      if (cursor && cursor !== base) own.set(topic, cursor);
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
    topics.forEach(function (each) { client._setCursor(each, cursor); });
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
    topics.forEach(function (topic) {
      if (!client._topics.has(topic)) return;
      var recovered = lost.indexOf(topic) < 0;
      client._live(topic);
      client._emit("subscribed", { topic: topic, transport: client.transport, recovered: recovered });
      if (recovered && resuming.indexOf(topic) >= 0) {
        client._emit("recovered", { topic: topic, transport: client.transport });
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
      (answer.events || []).forEach(function (event) { client._event(event); });
      if (!answer.events || answer.events.length === 0) return true;
      cursor = answer.cursor;
    }
    return true;
  }

  async longpoll(topics, cursor) {
    var options = this.client.options;
    // Bounded loop: every answer either carries events or ends a hold of `timeout` seconds.
    while (!this.stopped) {
      var answer = await this.getJSON(
        "longpoll", topics, cursor, { timeout: options.longpollTimeout },
        (options.longpollTimeout + 15) * 1000
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
      var response = await this.fetch(this.url("poll", topics, cursor), { headers: headers });
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
    return new Promise(function (resolve) {
      var timer = null;
      var done = function () {
        clearTimeout(timer);
        self.waker = null;
        resolve();
      };
      self.waker = done;
      if (!self.client._hidden) timer = setTimeout(done, ms);
      // Hidden: no timer; the visibilitychange to "visible" wakes it.
    });
  }

  async stream(topics, cursor, resuming, lost) {
    var client = this.client;
    var response = await this.fetch(
      this.url("sse", topics, cursor), { headers: { Accept: "text/event-stream" } }
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
    this.abortStream = function () { try { reader.cancel(); } catch (_) { /* gone */ } };

    var dispatch = function () {
      if (frame.data.length === 0) {
        frame = { event: "", data: [] };
        return;
      }
      var name = frame.event || "message";
      var text = frame.data.join("\n");
      frame = { event: "", data: [] };
      self.onFrame(name, text, lastId, topics, resuming, lost);
    };

    var line = function (text) {
      if (text === "") return dispatch();
      if (text.charAt(0) === ":") return; // comment: heartbeat
      var colon = text.indexOf(":");
      var field = colon < 0 ? text : text.slice(0, colon);
      var value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.charAt(0) === " ") value = value.slice(1);
      if (field === "data") frame.data.push(value);
      else if (field === "event") frame.event = value;
      else if (field === "id" && value.indexOf("\0") < 0) lastId = value;
      // "retry": the client's own backoff applies instead.
    };

    // Bounded by the stream: each read returns data or ends it.
    while (!this.stopped) {
      var chunk = await reader.read();
      if (chunk.done) break;
      this.client.stats.bytesReceived += chunk.value.byteLength;
      buffer += decoder.decode(chunk.value, { stream: true });
      var start = 0;
      for (var i = 0; i < buffer.length; i++) {
        var c = buffer.charAt(i);
        if (c === "\n" || c === "\r") {
          if (c === "\r" && i === buffer.length - 1) break; // maybe half of "\r\n"
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
    try { reader.cancel(); } catch (_) { /* gone */ }
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
      opened.forEach(function (topic) { if (lost.indexOf(topic) < 0) client._reset(topic, data.cursor); });
      topics.forEach(function (topic) { client._setCursor(topic, data.cursor); });
      this.announce(topics, resuming, opened);
    } else if (name === "rt.reset") {
      client._reset(data.topic, data.cursor);
    } else if (name === "rt.presence") {
      client._emit("presence", data);
      return;
    } else if (name === "rt.close") {
      if (data.cursor) topics.forEach(function (topic) { client._setCursor(topic, data.cursor); });
      var reason = data.reason || "closed";
      this.closing = {
        reason: reason,
        immediate: reason === "too_slow",
        tokenExpired: reason === "token_expired",
        ended: RESUMABLE_REASONS.indexOf(reason) < 0 ? reason : undefined,
        noFallback: true,
      };
      return;
    } else if (name === "rt.unsubscribed") {
      client._topicEnded(data.topic, data.reason);
      return;
    } else {
      client._event(data);
    }
    if (lastId) topics.forEach(function (topic) { client._setCursor(topic, lastId); });
  }
}

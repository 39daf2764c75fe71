// The WebSocket transport: one socket, a subscribe op per topic.
//
// Liveness: a socket counts as open only once the server has said something (a `subscribed`,
// a `pong`, any frame), within `firstAnswerTimeout` ms. Then every subscribe and ping must be
// answered within `livenessTimeout` ms, or the socket is closed and the connection retried: a
// proxy or server that accepts the upgrade and then stays silent cannot hold the client (twice
// before any answer: the next transport is tried, and the WebSocket again `upgradeAfter` ms
// after that one opened).

import {
  POLICY_ATTEMPT_FLOOR, RATE_ATTEMPT_FLOOR, STAND_INS, WS_ACCESS_ENDED, WS_GOING_AWAY, WS_POLICY,
  WS_TOKEN_EXPIRED, WS_TOO_MANY_CONNECTIONS, WS_TOO_SLOW,
} from "./constants.mjs";
import { RTDeliveryError } from "./errors.mjs";

export class WsConnection {
  constructor(client) {
    this.client = client;
    this.name = "ws";
    this.opened = false;
    this.stopped = false;
    this.ws = null;
    this.socketOpen = false;
    this.pingTimer = null;
    this.livenessTimer = null;
    // Subscribes and pings sent and not answered yet.
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
      Promise.resolve().then(function () {
        client._failed(self, { beforeOpen: true, reason: String(error) });
      });
      return;
    }
    this.ws = ws;
    ws.onopen = function () {
      if (self.stopped) return;
      self.socketOpen = true;
      var entries = client._activeEntries();
      entries.forEach(function (entry) { self.subscribe(entry); });
      if (entries.length === 0) self.ping();
      self.schedulePing();
    };
    ws.onmessage = function (message) {
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
        // The first answer: the server is really there.
        self.opened = true;
        client._opened(self);
      }
      client._wsFrame(self, frame);
    };
    ws.onerror = function () {
      // A close event always follows; it carries the code.
    };
    ws.onclose = function (event) {
      if (self.stopped) return;
      var code = STAND_INS[event.code] || event.code;
      var info = {
        beforeOpen: !self.opened,
        code: code,
        reason: event.reason || "closed",
      };
      if (code === WS_TOO_SLOW) {
        info.immediate = true; // resume from the cursor at once
      } else if (code === WS_TOKEN_EXPIRED) {
        info.tokenExpired = true; // a fresh token, then resume from the cursor
        info.reason = "token_expired";
      } else if (code === WS_ACCESS_ENDED) {
        // The reason is the preceding error frame's code (Daphne sends no close reason).
        info.ended = info.reason = self.endReason || event.reason || "disconnected";
      } else if (code === WS_POLICY) {
        info.attemptFloor = POLICY_ATTEMPT_FLOOR; // don't hammer
      } else if (code === WS_TOO_MANY_CONNECTIONS) {
        info.attemptFloor = RATE_ATTEMPT_FLOOR; // as a 429: back off
      } else if (code === WS_GOING_AWAY) {
        info.noFallback = true;
      }
      client._failed(self, info);
    };
  }

  subscribe(entry) {
    if (!this.socketOpen || this.stopped) return;
    var ref = this.client._nextRef();
    var frame = { op: "subscribe", topic: entry.topic, ref: ref };
    entry.resuming = Boolean(entry.cursor);
    if (entry.cursor) frame.since = entry.cursor;
    this.client._pending.set(ref, { kind: "subscribe", topic: entry.topic });
    if (this.send(frame)) this.expect();
  }

  unsubscribe(topic) {
    if (!this.socketOpen || this.stopped) return;
    this.send({ op: "unsubscribe", topic: topic });
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
    this.pingTimer = setTimeout(function () {
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
    // Before the first answer: firstAnswerTimeout (a server may be slow to start with).
    var timeout = this.opened ? options.livenessTimeout : options.firstAnswerTimeout;
    if (!timeout || this.livenessTimer !== null) return;
    this.livenessTimer = setTimeout(function () {
      self.livenessTimer = null;
      if (self.stopped) return;
      self.client._failed(self, {
        beforeOpen: !self.opened, liveness: true, reason: "liveness",
      });
    }, timeout);
  }

  /** A frame arrived: the server is alive; keep watching while answers are still owed. */
  heard(frame) {
    var op = frame && frame.op;
    var pending = frame && frame.ref != null ? this.client._pending.get(frame.ref) : undefined;
    if (op === "pong" || op === "subscribed" || (op === "error" && pending && pending.kind === "subscribe")) {
      this.waiting = Math.max(0, this.waiting - 1);
    }
    clearTimeout(this.livenessTimer);
    this.livenessTimer = null;
    if (this.waiting > 0) this.arm();
  }

  wake() {}

  stop() {
    this.stopped = true;
    clearTimeout(this.pingTimer);
    clearTimeout(this.livenessTimer);
    var ws = this.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      if (ws.readyState === 0 || ws.readyState === 1) {
        try { ws.close(1000, "client"); } catch (_) { /* already closing */ }
      }
    }
  }
}

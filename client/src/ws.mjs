// The WebSocket transport: one socket, a subscribe op per topic.

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
    this.pingTimer = null;
    this.pongTimer = null;
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
      self.opened = true;
      client._opened(self);
      client._topics.forEach(function (entry) { self.subscribe(entry); });
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
      if (self.pongTimer !== null) {
        // Any frame proves the connection is alive.
        clearTimeout(self.pongTimer);
        self.pongTimer = null;
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
    if (!this.opened || this.stopped) return;
    var ref = this.client._nextRef();
    var frame = { op: "subscribe", topic: entry.topic, ref: ref };
    entry.resuming = Boolean(entry.cursor);
    if (entry.cursor) frame.since = entry.cursor;
    this.client._pending.set(ref, { kind: "subscribe", topic: entry.topic });
    this.send(frame);
  }

  unsubscribe(topic) {
    if (!this.opened || this.stopped) return;
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
      self.send({ op: "ping" });
      self.pongTimer = setTimeout(function () {
        self.client._failed(self, { reason: "ping timeout" });
      }, options.pongTimeout);
      self.schedulePing();
    }, options.pingInterval);
  }

  wake() {}

  stop() {
    this.stopped = true;
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    var ws = this.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      if (ws.readyState === 0 || ws.readyState === 1) {
        try { ws.close(1000, "client"); } catch (_) { /* already closing */ }
      }
    }
  }
}

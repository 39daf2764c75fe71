// The outbox: publishes made while the client is not connected wait here and are sent once, in
// order, when it is; each carries an idempotency key, so sending one again after an unknown
// outcome (a socket that dropped before the ack, a request that failed in flight) cannot publish
// twice: the server answers a repeated key with the first publish's seq and id.

import { backoffDelay } from "./backoff.mjs";
import { RETRY_PUBLISH_STATUS } from "./constants.mjs";
import { RTDeliveryError } from "./errors.mjs";
import { newKey } from "./env.mjs";

var KEY = /^[A-Za-z0-9_.:-]{1,128}$/;

/** True when the publish may have failed for reasons that sending it again can cure. */
function retryable(error) {
  // Anything else (a TypeError, a bad answer body) would fail the same way again; fetch's
  // network failures arrive here already as RTDeliveryError("network").
  if (!(error instanceof RTDeliveryError)) return false;
  var code = error.code;
  if (code === "network" || code === "timeout" || code === "disconnected" || code === "offline") return true;
  return RETRY_PUBLISH_STATUS.indexOf(error.status) >= 0 || error.code === "unavailable";
}

export class Outbox {
  constructor(client) {
    this.client = client;
    this.items = [];
    this.busy = false;
    this.retryTimer = null;
    this.attempt = 0;
  }

  /** Queues a publish; the promise settles with the server's answer (or why it never came). */
  add(topic, data, type, key, deadline) {
    if (key === undefined || key === null) key = newKey();
    if (typeof key !== "string" || !KEY.test(key)) {
      return Promise.reject(new RTDeliveryError(
        "Expected key as 1-128 letters, digits and _.:-, got " + JSON.stringify(key) + ".", "invalid_key"
      ));
    }
    // Serialised once, here: data JSON cannot carry (a BigInt, a cycle) is refused at once
    // rather than blocking the head of the outbox; the copy is what gets sent.
    var json;
    try {
      json = JSON.stringify(data);
    } catch (error) {
      return Promise.reject(new RTDeliveryError(
        "Expected data JSON can carry: " + (error && error.message ? error.message : String(error)), "invalid_data"
      ));
    }
    data = json === undefined ? null : JSON.parse(json);
    var self = this;
    return new Promise(function (resolve, reject) {
      var item = {
        key: key, topic: topic, data: data, type: type, state: "queued",
        resolve: resolve, reject: reject, expired: false, timer: null,
      };
      var timeout = self.client.options.outboxTimeout;
      if (typeof deadline === "number") timeout = Math.max(1, deadline - Date.now());
      if (timeout > 0) {
        item.timer = setTimeout(function () {
          item.expired = true;
          if (item.state === "queued") self.expire(item);
          // "sending": its answer decides; if it comes back unsent, it expires then.
        }, timeout);
      }
      self.items.push(item);
      self.changed();
      self.flush();
    });
  }

  /** What is waiting: `[{key, topic, data, type, state}]`, oldest first. */
  list() {
    return this.items.map(function (item) {
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
    var finished = function () {
      self.busy = false;
      // Publishes made while the last answer was being settled (not after a failure: that
      // one waits for its retry timer).
      var queued = self.items.some(function (item) { return item.state === "queued"; });
      if (queued && self.retryTimer === null) self.flush();
    };
    this.sendInTurn().then(finished, finished);
  }

  async sendInTurn() {
    // The order of publish() calls is the order of seqs.
    for (;;) {
      var item = this.items.find(function (each) { return each.state === "queued"; });
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
        return; // back in the queue: try again after a delay (or at the next open)
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
    this.retryTimer = setTimeout(function () {
      self.retryTimer = null;
      self.flush();
    }, backoffDelay(backoff.base, backoff.max, this.attempt++));
  }

  expire(item) {
    this.done(item, null, new RTDeliveryError(
      "Not published within outboxTimeout (" + this.client.options.outboxTimeout + " ms).", "outbox_expired"
    ));
  }

  /** Drops the publish with `key` if it is still queued (rejected outbox_expired); true if so. */
  cancel(key) {
    var item = this.items.find(function (each) { return each.key === key && each.state === "queued"; });
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
    items.forEach(function (item) {
      clearTimeout(item.timer);
      item.reject(new RTDeliveryError(message, code));
    });
    if (items.length) this.changed();
  }
}

// Tab sharing: one connection per browser, not per tab (`new Client({shared: true})`).
//
// The tabs of one origin and rtdelivery URL (or `sharedName`) elect a leader (shared-election:
// Web Locks, else a BroadcastChannel election). The leader runs the real Client with the union
// of every tab's topics (shared-leader); the other tabs (followers) talk to it over a
// BroadcastChannel: topics and requests (publish, presence, history, connect) one way; events,
// client events, answers and state snapshots the other. This module is every tab's side: the
// same API as the plain Client (delivery and subscription states: shared-delivery).
//
// Exactly once across a hand-over: every tab keeps per topic the seq and id of the last event
// it delivered and drops anything at or before that seq. A new leader asks every tab for its
// positions and resumes each topic from the lowest; a tab that still sees a gap (seq jumps:
// seq is contiguous per topic) catches up from its own cursor with history() and holds newer
// events meanwhile. A publish carries an idempotency key, kept when it is sent again to a new
// leader, so a hand-over mid-publish cannot publish twice.

import { RTDeliveryError } from "./errors.mjs";
import { listenerMethods } from "./listeners.mjs";
import { PresenceWatch } from "./presence.mjs";
import { deliveryMethods } from "./shared-delivery.mjs";
import { Election } from "./shared-election.mjs";
import { CLIENT_EVENTS, Leader } from "./shared-leader.mjs";

const PROTOCOL = 1;
const EVENTS = CLIENT_EVENTS.concat(["closed", "state", "outbox", "leader"]);

function randomId() {
  var c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
}

function configUrl() {
  var doc = globalThis.document;
  var element = doc && doc.getElementById ? doc.getElementById("rtdelivery-config") : null;
  try {
    return element ? (JSON.parse(element.textContent) || {}).url : undefined;
  } catch (_) {
    return undefined;
  }
}

/** The channel (and lock) name: `sharedName`, else the absolute rtdelivery URL. */
export function channelName(options) {
  if (options.sharedName) return "rtdelivery:" + options.sharedName;
  var base = typeof location !== "undefined" ? location.href : "http://localhost/";
  var url = new URL(options.url || configUrl() || "/rt/", base);
  return "rtdelivery:" + url.origin + url.pathname.replace(/\/?$/, "/");
}

/**
 * What `new Client({shared: true, ...})` gives: a SharedClient, or null (the plain client)
 * where BroadcastChannel is missing. `client` is the plain client being built: its constructor
 * makes the leader's client. Installed by index.mjs: `useSharedClient(createSharedClient)`.
 */
export function createSharedClient(options, client) {
  if (typeof BroadcastChannel !== "function") return null;
  return new SharedClient(client.constructor, options);
}

export class SharedClient {
  /** Marks it for `instanceof Client` (client.mjs). */
  get _sharedClient() {
    return true;
  }

  constructor(Client, options) {
    options = options || {};
    if (options.sharedName != null && (typeof options.sharedName !== "string" || !options.sharedName)) {
      throw new TypeError("Expected sharedName to be a non-empty string.");
    }
    this._Client = Client;
    this._Error = RTDeliveryError;
    // The leader's client: this tab's options, without sharing. Checked now (a bad option
    // throws here, as without sharing, not later in whichever tab comes to lead).
    this._options = Object.assign({}, options, { shared: false });
    new Client(this._options).close();
    this.options = {
      outboxTimeout: options.outboxTimeout != null ? options.outboxTimeout : 60000,
      presenceInterval: options.presenceInterval != null ? options.presenceInterval : 15000,
      requestTimeout: options.requestTimeout != null ? options.requestTimeout : 15000,
    };
    this._name = channelName(options);
    /** This tab's id; the leader tab's id (null while none is known). */
    this.tabId = randomId();
    this.leader = null;
    this.state = "idle";
    this.transport = null;
    this.online = typeof navigator === "undefined" || navigator.onLine !== false;
    this._clientId = null;
    this._own = { delivered: 0, duplicates: 0, resets: 0, catchUps: 0 };
    this._topics = new Map(); // topic -> entry (handlers, lastSeq, cursor, catch-up buffer)
    this._listeners = new Map();
    this._pending = new Map(); // request id -> {op, args, resolve, reject, sentTo}
    this._tabs = new Set(); // other tabs heard from (minus those that said bye)
    this._leader = null; // a Leader while this tab leads
    this._closed = false;
    this._channel = new BroadcastChannel(this._name);
    var self = this;
    this._channel.onmessage = function (message) { self._receive(message.data); };
    this._onPageHide = function (event) { if (!event.persisted) self._post({ t: "bye" }); };
    if (typeof addEventListener === "function") addEventListener("pagehide", this._onPageHide);
    this._election = new Election(this._name, this.tabId, {
      elected: function () { self._becomeLeader(); },
      isLeader: function () { return self._leader !== null; },
      post: function (message) { self._post(message); },
      announce: function () { if (self._leader) self._leader.announce(false); },
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
        topic: topic, handlers: new Set(), lastSeq: null, cursor: options.since || null,
        catching: false, buffer: [], state: "pending", error: null,
      };
      this._topics.set(topic, entry);
    }
    var handler = { fn: onEvent, onState: options.onState, onError: options.onError, left: false };
    var self = this;
    var sub = {
      topic: topic,
      get state() { return handler.left ? "ended" : entry.state; },
      get error() { return entry.error; },
      unsubscribe: function () {
        if (handler.left) return;
        handler.left = true;
        entry.handlers.delete(handler);
        if (handler.onState) self._call(handler.onState, "ended", sub);
        if (self._topics.get(topic) === entry && entry.handlers.size === 0) self.unsubscribe(topic);
      },
    };
    handler.sub = sub;
    entry.handlers.add(handler);
    var retry = !added && entry.state === "refused";
    if (added) this._emit("subscription", { topic: topic, state: "pending", error: null });
    if (retry) this._subState(entry, "pending", null); // asks the server again
    else if (handler.onState) this._call(handler.onState, entry.state, sub);
    if (added || retry) {
      var position = { seq: null, cursor: entry.cursor };
      var fresh = false;
      if (this._leader) fresh = this._leader.add(this.tabId, topic, position);
      else this._post({ t: "sub", topic: topic, position: position });
      // The connection may carry the topic already, past `since`: read the gap from history.
      // (A topic new to the leader's client is subscribed from `since` instead.)
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
    else this._post({ t: "unsub", topic: topic });
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
    // The deadline goes along: the leader holds the publish for the time left, not its own.
    var timeout = this.options.outboxTimeout;
    var args = {
      topic: topic, data: data, type: options.type, key: options.key || randomId(),
      deadline: timeout > 0 ? Date.now() + timeout : null,
    };
    return this._request("publish", args, timeout, "outbox_expired");
  }

  presence(topic) {
    return this._request("presence", { topic: topic }, this._requestTimeout(), "timeout");
  }

  history(topic, options) {
    return this._request("history", { topic: topic, options: options || {} }, this._requestTimeout(), "timeout");
  }

  /** As the plain client's: the snapshot asked through the leader, changes from its connection. */
  watchPresence(topic, onChange) {
    if (typeof onChange !== "function") throw new TypeError("Expected a function for presence changes.");
    var watch = new PresenceWatch(this, topic, onChange);
    return {
      topic: topic,
      get snapshot() { return watch.snapshot; },
      stop: function () { watch.stop(); },
    };
  }

  /** The publishes of this tab not answered yet. */
  get outbox() {
    var out = [];
    this._pending.forEach(function (request) {
      if (request.op !== "publish") return;
      var a = request.args;
      out.push({
        key: a.key, topic: a.topic, data: a.data, type: a.type || "message",
        state: request.sentTo ? "sending" : "queued",
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
    this._request("connect", {}, this._requestTimeout(), "timeout").catch(function () {});
  }

  close() {
    if (this._closed) return;
    this._post({ t: "bye" });
    this._closed = true;
    var Err = this._Error;
    this._pending.forEach(function (request) {
      clearTimeout(request.timer);
      request.reject(new Err("The client is closed.", "closed"));
    });
    this._pending.clear();
    var self = this;
    this._topics.forEach(function (entry) { self._subState(entry, "ended", entry.error); });
    if (this._leader) this._leader.stop();
    this._leader = null;
    this._election.stop(); // releases the lock: the next tab leads
    if (typeof removeEventListener === "function") removeEventListener("pagehide", this._onPageHide);
    this._channel.close();
    var previous = this.state;
    this.state = "closed";
    this._emit("state", { state: "closed", previous: previous, transport: this.transport });
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
      // Data that cannot be cloned (a function in a publish): say so rather than lose it.
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
    if (previous) this._tabs.delete(previous); // gone: its lock is ours
    this.leader = this.tabId;
    this._leader = new Leader(this);
    this._leader.start(previous);
    this._emit("leader", { leader: this.tabId, self: true });
    // Our own requests that waited for a leader (or went to the one gone): served here now.
    var self = this;
    this._pending.forEach(function (request) { if (request.sentTo !== self.tabId) self._send(request); });
  }

  _onLeader(m) {
    if (this._leader) {
      // Two leaders (BroadcastChannel election only): the lower tab id keeps the lead.
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
      this._pending.forEach(function (request) { if (request.sentTo !== m.from) self._send(request); });
      this._emit("leader", { leader: m.from, self: false });
    }
  }

  _positions() {
    var out = {};
    this._topics.forEach(function (entry, topic) {
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
    return new Promise(function (resolve, reject) {
      var request = { id: randomId(), op: op, args: args, sentTo: null };
      var done = function () {
        clearTimeout(request.timer);
        self._pending.delete(request.id);
        if (op === "publish") self._emit("outbox", { size: self.outbox.length });
      };
      request.resolve = function (value) { done(); resolve(value); };
      request.reject = function (error) { done(); reject(error); };
      request.timer = setTimeout(function () {
        if (op === "publish" && request.sentTo !== null) {
          // A leader holds it and may still send it: ask it to drop the publish if it is
          // still queued (then its answer is outbox_expired); if it is on its way, its
          // answer decides. The leader expires it at the deadline by itself too.
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
      this._leader.serve({ id: randomId(), op: "cancel", args: args, from: null });
    } else if (this.leader) {
      this._post({ t: "req", to: this.leader, id: randomId(), op: "cancel", args: args });
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
    if (!request) return; // answered already (by a previous leader), or timed out
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
    if (snap.online !== undefined) this.online = snap.online;
    if (snap.clientId) this._clientId = snap.clientId;
    if (previous !== snap.state) {
      this._emit("state", { state: snap.state, previous: previous, transport: snap.transport });
    }
  }
}

// _deliver, _hand, _catchUp, _resetEntry, _clientEvent, _subState, _call, _error; on, off,
// _emit.
Object.assign(SharedClient.prototype, deliveryMethods, listenerMethods(EVENTS));

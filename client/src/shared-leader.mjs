// Tab sharing: the leader tab's part. It runs the real Client with the union of every tab's
// topics, serves the other tabs' requests and sends them events, client events and state.

// How long a new leader waits for a tab's positions before resuming without them (ms); tabs
// known to be gone (their Web Lock released) are not waited for.
const COLLECT_TIMEOUT = 1500;
// How often the leader drops the topics of tabs gone without a bye (ms; Web Locks only).
const PRUNE_INTERVAL = 10000;
// The plain client's events, forwarded to every tab ("closed" and "outbox" are each tab's own,
// "state" follows from the snapshots).
export const CLIENT_EVENTS = [
  "connecting", "open", "transport", "subscribed", "recovered", "reset", "presence",
  "disconnected", "error", "ended", "unsubscribed", "subscription",
];

export function plainError(error) {
  var e = error || {};
  return {
    message: e.message ? String(e.message) : String(error), code: e.code || "error",
    status: e.status || 0, topic: e.topic,
  };
}

// Errors cross the channel as plain objects (a structured clone drops an Error's `code`).
function toWire(data) {
  if (data instanceof Error) return { __error: plainError(data) };
  if (!data || typeof data !== "object" || Array.isArray(data)) return data;
  var out = {};
  Object.keys(data).forEach(function (key) {
    out[key] = data[key] instanceof Error ? { __error: plainError(data[key]) } : data[key];
  });
  return out;
}

// The lowest position wins: a cursor without a delivered seq (where a tab subscribed, or its
// `since`) is at or before any event that tab could have missed.
function rank(position) {
  return position.seq == null ? -1 : position.seq;
}

export class Leader {
  constructor(tab) {
    this.tab = tab; // the SharedClient of this tab
    this.inner = null; // the real Client, once every tab's position is known
    this.union = new Map(); // topic -> ids of the tabs that want it
    this.subs = new Map(); // topic -> the client's subscription
    this.queued = []; // requests that came before the client existed
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
    this.collect = { waiting: waiting, lowest: new Map(), timer: null };
    tab._topics.forEach(function (entry, topic) {
      self.add(tab.tabId, topic, { seq: entry.lastSeq, cursor: entry.cursor });
    });
    this.announce(true);
    if (waiting.size === 0) {
      this.collectDone();
    } else {
      this.collect.timer = setTimeout(function () { self.collectDone(true); }, COLLECT_TIMEOUT);
      this.prune(); // don't wait for tabs already gone
    }
    this.pruner = setInterval(function () { self.prune(); }, PRUNE_INTERVAL);
  }

  announce(collect) {
    this.tab._post({ t: "leader", collect: collect, snap: this.snap() });
  }

  /**
   * Tabs whose Web Lock is gone (closed or crashed without a bye): not waited for on takeover;
   * their topics are dropped once two checks in a row missed them (a tab that just opened may
   * not hold its lock yet).
   */
  prune() {
    var self = this;
    var tab = this.tab;
    tab._election.alive().then(function (ids) {
      if (!ids || tab._leader !== self) return;
      var absent = new Set();
      var check = function (id) { if (id !== tab.tabId && !ids.has(id)) absent.add(id); };
      tab._tabs.forEach(check);
      self.union.forEach(function (tabs) { tabs.forEach(check); });
      if (self.collect) {
        absent.forEach(function (id) { self.collect.waiting.delete(id); });
        self.collectDone();
      }
      var suspects = self.suspects || new Set();
      self.suspects = absent;
      absent.forEach(function (id) { if (suspects.has(id)) self.removeTab(id); });
    }, function () { /* no answer: keep them */ });
  }

  removeTab(id) {
    var self = this;
    this.tab._tabs.delete(id);
    Array.from(this.union.keys()).forEach(function (topic) { self.remove(id, topic); });
    if (this.collect && this.collect.waiting.delete(id)) this.collectDone();
  }

  onPositions(from, topics) {
    var self = this;
    Object.keys(topics || {}).forEach(function (topic) { self.add(from, topic, topics[topic]); });
    if (this.collect && this.collect.waiting.delete(from)) this.collectDone();
  }

  /** Every known tab answered (or the wait ran out): the client starts, from the lowest positions. */
  collectDone(timedOut) {
    var collect = this.collect;
    if (!collect || (!timedOut && collect.waiting.size > 0)) return;
    clearTimeout(collect.timer);
    this.collect = null;
    var self = this;
    var tab = this.tab;
    collect.waiting.forEach(function (id) { tab._tabs.delete(id); });
    var inner = new tab._Client(tab._options);
    this.inner = inner;
    // The other tabs may be visible: short polling does not pause because this one is hidden.
    // (The plain client's own flag; see client.mjs _onVisibility and http.mjs pause().)
    Object.defineProperty(inner, "_hidden", { get: function () { return false; }, set: function () {} });
    CLIENT_EVENTS.forEach(function (name) {
      try {
        inner.on(name, function (data) { if (self.inner === inner) self.innerEvent(name, data); });
      } catch (_) {
        // An event this version of the client does not have.
      }
    });
    try {
      inner.on("state", function () { if (self.inner === inner) self.snapshot(); });
    } catch (_) { /* older client: snapshots follow its other events */ }
    this.union.forEach(function (_, topic) {
      var lowest = collect.lowest.get(topic);
      self.subscribe(topic, lowest ? lowest.cursor : null);
    });
    var queued = this.queued;
    this.queued = [];
    queued.forEach(function (request) { self.serve(request); });
    this.snapshot();
  }

  /** Tab `id` wants `topic` (from `position`); true when the connection did not carry it yet. */
  add(id, topic, position) {
    var tabs = this.union.get(topic);
    var fresh = !tabs;
    if (fresh) this.union.set(topic, (tabs = new Set()));
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
      // New to the connection (or refused before, and asked for again).
      if (sub) sub.unsubscribe();
      this.subscribe(topic, position && position.cursor);
      return true;
    }
    if (sub.state === "live" && !known) {
      // Already live: tell the tab now (its "subscribed" went by before it asked).
      var data = { topic: topic, transport: this.inner.transport, recovered: true };
      if (id === this.tab.tabId) this.tab._clientEvent("subscribed", data, null);
      else this.tab._post({ t: "emit", to: id, name: "subscribed", data: data });
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
    var sub = inner.subscribe(topic, function (event) {
      if (self.inner !== inner) return;
      var plain = {
        id: event.id, topic: event.topic, seq: event.seq, type: event.type, data: event.data,
        time: event.time,
      };
      self.tab._post({ t: "event", event: plain });
      self.tab._deliver(plain);
    }, since ? { since: since } : undefined);
    this.subs.set(topic, sub);
  }

  innerEvent(name, data) {
    var topic = data && typeof data === "object" ? data.topic : undefined;
    if (name === "unsubscribed" && typeof topic === "string") {
      // Ended by the server: the client forgot it; so does every tab.
      this.union.delete(topic);
      this.subs.delete(topic);
    }
    var wire = toWire(data);
    // Where the connection stands in the topic: a tab resumes from it if no event came yet.
    var cursor = name === "subscribed" && typeof topic === "string" ? this.inner.cursor(topic) : null;
    this.tab._post({ t: "emit", name: name, data: wire, cursor: cursor });
    this.tab._clientEvent(name, wire, cursor);
    var self = this;
    Promise.resolve().then(function () { self.snapshot(); });
  }

  snap() {
    var inner = this.inner;
    var tab = this.tab;
    if (!inner) return { state: this.union.size ? "connecting" : "idle", transport: null, online: tab.online };
    return {
      state: inner.state, transport: inner.transport, clientId: inner.clientId,
      online: inner.online !== undefined ? inner.online : tab.online,
    };
  }

  /** Sends the client's state to every tab when it changed. */
  snapshot() {
    if (this.tab._leader !== this) return;
    var snap = this.snap();
    var last = this.lastSnap;
    if (last && last.state === snap.state && last.transport === snap.transport && last.online === snap.online) return;
    this.lastSnap = snap;
    this.tab._post({ t: "snap", snap: snap });
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
        // A tab's publish timed out there: dropped if still queued (its answer: outbox_expired).
        inner._outbox.cancel(a.key);
        return; // nothing to answer

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
    var reply = function (answer) {
      // Stopped leading meanwhile (close(), a lost election): the tab asks the next leader
      // again, with the same publish key; "closed" from our client is not its answer.
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
      function (value) { reply({ ok: true, value: value === undefined ? null : value }); },
      function (error) { reply({ ok: false, error: plainError(error) }); }
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
}

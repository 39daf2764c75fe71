// watchPresence(): a topic's presence snapshot kept current for the page. The snapshot is asked
// for on start and on every (re)open; join/leave changes (WebSocket and SSE deliver them) are
// applied to it as they come, and a fresh snapshot follows shortly after (the server's snapshot
// is the truth: changes are best effort). Poll and long poll get no changes, so there the
// snapshot is asked for again every `presenceInterval` ms.

var SETTLE_MS = 1000;

function copy(snapshot) {
  return {
    topic: snapshot.topic,
    count: snapshot.count || 0,
    anonymous: snapshot.anonymous || 0,
    users: (snapshot.users || []).map(function (user) { return Object.assign({}, user); }),
  };
}

export class PresenceWatch {
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
      client.on("presence", function (change) {
        if (change && change.topic === topic && change.action) self.apply(change);
      }),
      client.on("open", function () { self.refresh(); }),
      // close() ends every watch of the client.
      client.on("closed", function () { self.stop(); }),
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
      // Nothing to ask while offline: the next "open" asks again.
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
      function (snapshot) {
        self.asking = false;
        if (self.stopped) return;
        self.snapshot = copy(snapshot);
        self.notify();
        self.next();
      },
      function (error) {
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
    this.timer = setTimeout(function () {
      self.timer = null;
      self.refresh();
    }, ms);
  }

  /** One join or leave, applied to the snapshot as it stands. */
  apply(change) {
    // A change while a snapshot is on its way may or may not be in it: ask again after it.
    if (this.asking) this.again = true;
    if (this.snapshot === null) return;
    var snapshot = this.snapshot;
    var user = change.user || {};
    var step = change.action === "join" ? 1 : change.action === "leave" ? -1 : 0;
    if (step === 0) return;
    if (step < 0 && snapshot.count === 0) return;
    snapshot.count += step;
    if (user.id === null || user.id === undefined) {
      snapshot.anonymous = Math.max(0, snapshot.anonymous + step);
    } else {
      var id = String(user.id);
      var index = snapshot.users.findIndex(function (each) { return String(each.id) === id; });
      if (index < 0 && step > 0) {
        snapshot.users.push({ id: id, name: user.name, connections: 1 });
        snapshot.users.sort(function (a, b) { return a.id < b.id ? -1 : a.id > b.id ? 1 : 0; });
      } else if (index >= 0) {
        snapshot.users[index].connections += step;
        if (snapshot.users[index].connections <= 0) snapshot.users.splice(index, 1);
      }
    }
    this.notify();
    // A change may be one the snapshot already counted: confirm with a fresh one shortly.
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
    this.offs.forEach(function (off) { off(); });
  }
}

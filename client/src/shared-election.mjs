// Tab sharing: which tab leads. Web Locks where the browser has them, else a BroadcastChannel
// election (heartbeats, claims: the lowest tab id wins).

// BroadcastChannel election: the leader's heartbeat, the silence after which the followers
// elect, the wait for a first leader after opening, and how long claims are collected (ms).
export const HEARTBEAT = 1000;
const LEADER_TIMEOUT = 3500;
const FIRST_WAIT = 400;
const CLAIM_WINDOW = 300;

function webLocks() {
  var locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
  return locks && typeof locks.request === "function" ? locks : null;
}

/**
 * Elects this tab when it should lead: `hooks.elected()` once it does. With Web Locks the lock
 * `name` is granted to one tab at a time and passes to the next queued tab when the holder's
 * document goes away (closed, crashed, navigated). Each tab also holds a lock of its own
 * (`name` + ":tab:" + id) while it lives, so the leader can tell live tabs from gone ones.
 */
export class Election {
  constructor(name, tabId, hooks) {
    this.name = name;
    this.tabId = tabId;
    this.hooks = hooks; // {elected(), isLeader(), post(message), announce()}
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
      this.hold(this.name + ":tab:" + this.tabId, function () {});
      this.hold(this.name, function () { self.hooks.elected(); });
      return;
    }
    this.deadline = Date.now() + FIRST_WAIT;
    this.ticker = setInterval(function () { self.tick(); }, HEARTBEAT / 4);
  }

  /** Requests lock `name`; `granted()` runs when it is ours; held until stop(). */
  hold(name, granted) {
    var self = this;
    var options = this.abort ? { signal: this.abort.signal } : {};
    this.locks.request(name, options, function () {
      if (self.stopped) return undefined;
      return new Promise(function (release) {
        self.release.push(release);
        granted();
      });
    }).catch(function () { /* aborted by stop() */ });
  }

  /** Ids of the tabs alive now (their own locks held), or null when that cannot be told. */
  async alive() {
    if (!this.locks || typeof this.locks.query !== "function") return null;
    var prefix = this.name + ":tab:";
    var state = await this.locks.query();
    var ids = new Set();
    (state.held || []).concat(state.pending || []).forEach(function (lock) {
      if (lock.name && lock.name.indexOf(prefix) === 0) ids.add(lock.name.slice(prefix.length));
    });
    return ids;
  }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
    this.release.forEach(function (release) { release(); });
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
    var rivals = new Set();
    this.claiming = rivals;
    this.hooks.post({ t: "claim" });
    setTimeout(function () {
      self.claiming = null;
      if (self.stopped || self.hooks.isLeader() || Date.now() <= self.deadline) return;
      var lower = Array.from(rivals).some(function (tab) { return tab < self.tabId; });
      if (lower) self.deadline = Date.now() + CLAIM_WINDOW * 2; // it wins; claim again if not
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
}

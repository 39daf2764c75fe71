/* Shared demo wiring: one rtdelivery client per page, the connection badge and outage banner,
 * announcements and private notifications. `?transport=poll|longpoll|sse|ws` pins one. */
(function () {
  "use strict";
  const ALL = ["ws", "sse", "longpoll", "poll"];
  const DISMISSED = "demo.dismissedAnnouncements";

  function pinned() {
    const name = new URLSearchParams(location.search).get("transport");
    return name && ALL.includes(name) ? name : null;
  }

  function transports(preferred) {
    const pin = pinned();
    return pin ? [pin] : preferred || ALL;
  }

  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function toast(text, href) {
    const box = document.getElementById("toasts");
    const el = document.createElement(href ? "a" : "div");
    el.className = "toast";
    el.textContent = text;
    if (href) el.href = href;
    box.appendChild(el);
    setTimeout(() => el.remove(), 6000);
  }

  // -- connection state ---------------------------------------------------------------

  /*
   * Calls fn({state, transport}) on every change of the page's connection: "connecting"
   * (first time), "open", "reconnecting", "offline", "ended" (the server ended access) or
   * "closed". From the client's "state" event where it has one (rtdelivery.js from issue 11
   * on); an older client has no such event (on() throws), so it is read from the others.
   */
  function watchState(client, fn) {
    let everOpen = false;
    let last = "";
    function report(state) {
      if (state === "open") everOpen = true;
      else if (state === "connecting" && everOpen) state = "reconnecting";
      else if (state === "idle") state = everOpen ? "ended" : "connecting";
      const transport = client.transport || "";
      if (last === state + "/" + transport) return;
      last = state + "/" + transport;
      fn({ state: state, transport: transport });
    }
    try {
      client.on("state", (change) => report(change.state));
    } catch (err) {
      client.on("connecting", () => report("connecting"));
      client.on("open", () => report("open"));
      client.on("transport", () => report(client.state));
      client.on("disconnected", (info) => report(info && info.reason === "offline" ? "offline" : "connecting"));
      client.on("ended", () => report("idle"));
      client.on("closed", () => report("closed"));
      // The client's own listeners ran first: its state says offline, or connecting again.
      addEventListener("offline", () => client.state !== "closed" && report("offline"));
      addEventListener("online", () => {
        if (client.state !== "closed") report(client.state === "open" ? "open" : "connecting");
      });
    }
    report(client.state === "idle" ? "connecting" : client.state);
  }

  const LABELS = {
    connecting: "connecting…",
    reconnecting: "reconnecting…",
    offline: "offline",
    ended: "disconnected",
    closed: "closed",
  };
  const OUTAGE = {
    reconnecting: "Connection lost. Reconnecting… Nothing you typed is lost.",
    offline: "You are offline. The page reconnects by itself when the network is back.",
    ended: "The server ended this connection (signed out?). Reload the page to connect again.",
  };

  function wireStatus(client) {
    const badge = document.getElementById("conn-status");
    const label = badge.querySelector(".conn-label") || badge;
    const banner = document.getElementById("outage");
    watchState(client, (change) => {
      const text = change.state === "open" ? "live · " + change.transport : LABELS[change.state];
      badge.className = "conn " + change.state;
      badge.dataset.state = change.state;
      badge.title = "Connection: " + text;
      label.textContent = text;
      const outage = OUTAGE[change.state];
      banner.hidden = !outage;
      banner.dataset.state = change.state;
      if (outage) banner.textContent = outage;
      document.dispatchEvent(new CustomEvent("demo:state", { detail: change }));
    });
  }

  // -- announcements ----------------------------------------------------------------

  function dismissedIds() {
    try {
      return JSON.parse(localStorage.getItem(DISMISSED) || "[]").map(String);
    } catch (err) {
      return [];
    }
  }

  const announcements = new Map(); // id -> {el, timer}

  function announcementId(data) {
    return data.id != null ? String(data.id) : "text:" + data.text;
  }

  function removeAnnouncement(id) {
    const shown = announcements.get(id);
    if (!shown) return;
    clearTimeout(shown.timer);
    shown.el.remove();
    announcements.delete(id);
  }

  function dismissAnnouncement(id) {
    removeAnnouncement(id);
    // The most recent 100 are enough: old announcements expire or get deleted.
    const ids = dismissedIds().filter((other) => other !== id).concat([id]).slice(-100);
    try {
      localStorage.setItem(DISMISSED, JSON.stringify(ids));
    } catch (err) {
      // Storage full or off (private mode): dismissed for this page only.
    }
  }

  function showAnnouncement(data) {
    const id = announcementId(data);
    const left = data.expires ? Date.parse(data.expires) - Date.now() : Infinity;
    if (left <= 0 || dismissedIds().includes(id)) {
      removeAnnouncement(id);
      return;
    }
    let shown = announcements.get(id);
    if (!shown) {
      const el = document.createElement("div");
      el.className = "announcement";
      el.dataset.id = id;
      const text = document.createElement("span");
      text.className = "text";
      const close = document.createElement("button");
      close.className = "dismiss";
      close.type = "button";
      close.title = "Dismiss (remembered in this browser)";
      close.setAttribute("aria-label", "Dismiss announcement");
      close.textContent = "×";
      close.addEventListener("click", () => dismissAnnouncement(id));
      el.append(text, close);
      document.getElementById("announcements").prepend(el);
      shown = { el: el, timer: null };
      announcements.set(id, shown);
    }
    shown.el.querySelector(".text").textContent = data.text;
    clearTimeout(shown.timer);
    // setTimeout takes up to 2^31-1 ms (~24.8 days); a later expiry waits for a reload.
    if (left < 2147483647) shown.timer = setTimeout(() => removeAnnouncement(id), left);
  }

  // Per announcement, the seq of the last event applied: history answered after a live event
  // must not undo it (a removal, an edit).
  const applied = new Map();

  function onAnnouncement(event) {
    const id = announcementId(event.data);
    if (typeof event.seq === "number") {
      if (applied.has(id) && applied.get(id) >= event.seq) return;
      applied.set(id, event.seq);
    }
    if (event.type === "announcement.removed") removeAnnouncement(id);
    else showAnnouncement(event.data);
  }

  function watchAnnouncements(client) {
    // The active ones from the database (a visitor arriving late still sees them), live ones
    // from now on, and the topic's recent history (anything published while the page loaded).
    // Subscribed at once, with the page's own topics: one connection set-up, not two.
    const active = document.getElementById("demo-announcements");
    (active ? JSON.parse(active.textContent) : []).reverse().forEach(showAnnouncement);
    client.subscribe("announcements", onAnnouncement);
    history("announcements", 20)
      .then((recent) => recent.events.forEach(onAnnouncement))
      .catch((err) => console.warn("announcements history", err));
  }

  // -- the client -------------------------------------------------------------------

  function createClient(options) {
    const opts = Object.assign({}, options || {});
    opts.transports = transports(opts.transports);
    // One connection for every tab of this site (a client without the option ignores it),
    // except where a page pins a transport to show what that transport does.
    if (opts.shared === undefined) opts.shared = opts.transports.length > 1;
    const client = new RTDelivery.Client(opts);
    window.demoClient = client;
    wireStatus(client);
    watchAnnouncements(client);
    const userId = document.body.dataset.userId;
    if (userId) {
      client.subscribe("user." + userId, (event) => {
        toast(event.data.text, event.data.url);
        document.dispatchEvent(new CustomEvent("demo:notification", { detail: event }));
      });
    }
    return client;
  }

  async function history(topic, limit) {
    // Where the URLconf mounts rtdelivery, rendered by {% rtdelivery_config %}.
    const base = JSON.parse(document.getElementById("rtdelivery-config").textContent).url;
    const res = await fetch(`${base}history?topic=${encodeURIComponent(topic)}&limit=${limit}`, {
      credentials: "same-origin",
    });
    if (!res.ok) throw new Error(`history ${res.status}`);
    return res.json();
  }

  window.Demo = { createClient, csrfToken, toast, history, transports, watchState };

  // Pages without a script of their own (index, room list) still get announcements and
  // notifications; page scripts create their client synchronously before this runs.
  document.addEventListener("DOMContentLoaded", () => {
    if (!window.demoClient) createClient();
  });
})();

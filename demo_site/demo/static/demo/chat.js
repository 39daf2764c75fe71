/* Chat room: backlog from history, live messages, presence, and a send queue that loses
 * nothing. Each message gets an idempotency key when Send is pressed and shows at once as
 * pending ("sending…"). The room's send view stores it (once per key) and publishes it. After
 * an unknown outcome (the connection dropped, a timeout) it is sent again with the same key
 * once the connection is back; the server answers the first copy ("duplicate"), so it is
 * stored and shown once. A refused message stays in the list with the reason and a Retry
 * button. The queue survives a reload of the tab (sessionStorage). */
(function () {
  "use strict";
  const root = document.querySelector(".chat");
  const topic = root.dataset.topic;
  const slug = root.dataset.slug;
  const me = { id: document.body.dataset.userId, name: document.body.dataset.username };
  const list = document.getElementById("messages");
  const form = document.getElementById("send");
  const input = document.getElementById("text");
  const button = form.querySelector("button");
  const note = document.getElementById("composer-note");
  const STORE = `demo.outbox.${me.id}.${slug}`;
  const DRAFT = `demo.draft.${me.id}.${slug}`;
  // Give up on a message not sent within this long (it turns "failed", with Retry).
  const OUTBOX_TIMEOUT = 5 * 60 * 1000;
  const REQUEST_TIMEOUT = 15000;

  const byId = new Map(); // message id -> <li>
  const pending = new Map(); // key -> {entry, li}
  let outbox = restore(); // [{key, text, state: "queued" | "sending" | "failed", reason, created}]
  let connected = false;
  let flushing = false;
  let retryTimer = null;
  let retryDelay = 1000;

  // -- storage --------------------------------------------------------------------------

  function restore() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORE) || "[]");
      // A send cut short by the reload has an unknown outcome: send it again (same key).
      return saved.map((e) => Object.assign(e, { state: e.state === "failed" ? "failed" : "queued" }));
    } catch (err) {
      return [];
    }
  }

  function save() {
    try {
      if (outbox.length) sessionStorage.setItem(STORE, JSON.stringify(outbox));
      else sessionStorage.removeItem(STORE);
    } catch (err) {
      // Storage off or full: the queue lives as long as the page.
    }
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    // crypto.randomUUID needs a secure context (https or localhost); random bytes do not.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- rendering ------------------------------------------------------------------------

  function fill(li, message) {
    // Who and when on a line of their own, then the text (any length, wraps anywhere).
    const meta = document.createElement("div");
    meta.className = "meta";
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = message.author.name;
    meta.append(author);
    if (message.created) {
      const time = document.createElement("time");
      time.className = "time";
      time.dateTime = message.created;
      time.textContent = new Date(message.created).toLocaleTimeString();
      meta.append(time);
    }
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = message.text;
    li.replaceChildren(meta, text);
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  }

  function place(li, stick) {
    // Pending messages stay at the bottom, under everything the server has confirmed.
    const firstPending = list.querySelector("li.pending, li.failed");
    if (li.classList.contains("pending") || li.classList.contains("failed") || !firstPending) {
      list.appendChild(li);
    } else {
      list.insertBefore(li, firstPending);
    }
    if (stick) list.scrollTop = list.scrollHeight;
  }

  /** A message the server has (backlog, live event, or the answer to our send). */
  function render(message) {
    if (byId.has(message.id)) return;
    const mine = String(message.author.id) === String(me.id);
    const own = mine && message.key ? pending.get(message.key) : null;
    if (own) {
      // Our pending message, confirmed: the same line, now sent.
      confirm(own.entry.key, message);
      return;
    }
    const stick = nearBottom();
    const li = document.createElement("li");
    li.dataset.id = message.id;
    if (mine) li.classList.add("mine");
    fill(li, message);
    byId.set(message.id, li);
    place(li, stick || mine);
  }

  function paint(entry) {
    let item = pending.get(entry.key);
    if (!item) {
      const li = document.createElement("li");
      li.className = "mine";
      li.dataset.key = entry.key;
      fill(li, { author: me, text: entry.text });
      item = { entry: entry, li: li };
      pending.set(entry.key, item);
      li.classList.add(entry.state === "failed" ? "failed" : "pending");
      place(li, true);
    }
    item.entry = entry;
    const li = item.li;
    const failed = entry.state === "failed";
    li.classList.toggle("failed", failed);
    li.classList.toggle("pending", !failed);
    li.dataset.state = entry.state;
    li.querySelectorAll(".status, .actions").forEach((el) => el.remove());
    const status = document.createElement("span");
    status.className = "status";
    if (failed) {
      status.textContent = "Not sent: " + entry.reason;
      const actions = document.createElement("span");
      actions.className = "actions";
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "btn small retry";
      retry.textContent = "Retry";
      retry.addEventListener("click", () => retryEntry(entry.key));
      const discard = document.createElement("button");
      discard.type = "button";
      discard.className = "link discard";
      discard.textContent = "Discard";
      discard.addEventListener("click", () => discardEntry(entry.key));
      actions.append(retry, discard);
      li.querySelector(".meta").append(status);
      li.append(actions);
    } else {
      status.textContent = "sending…";
      status.title = entry.state === "queued" ? "Waiting for the connection" : "Sending";
      li.querySelector(".meta").append(status);
    }
  }

  function confirm(key, message) {
    const item = pending.get(key);
    outbox = outbox.filter((e) => e.key !== key);
    save();
    if (!item) {
      render(message);
      return;
    }
    pending.delete(key);
    if (byId.has(message.id)) {
      item.li.remove(); // already shown (a live event came first)
      return;
    }
    const li = item.li;
    li.classList.remove("pending", "failed");
    delete li.dataset.state;
    li.dataset.id = message.id;
    fill(li, message);
    byId.set(message.id, li);
    li.remove();
    place(li, nearBottom());
  }

  // -- sending --------------------------------------------------------------------------

  function scheduleRetry() {
    // Connected, yet the send did not get through (a 5xx, a dropped request): try again soon.
    clearTimeout(retryTimer);
    retryTimer = setTimeout(flush, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  }

  async function flush() {
    if (flushing) return;
    flushing = true;
    clearTimeout(retryTimer);
    try {
      // In order, one at a time: messages arrive as they were written.
      while (connected) {
        const entry = outbox.find((e) => e.state === "queued");
        if (!entry) break;
        if (Date.now() - entry.created > OUTBOX_TIMEOUT) {
          fail(entry, "not sent within 5 minutes");
          continue;
        }
        if (!(await attempt(entry))) {
          scheduleRetry();
          break;
        }
        retryDelay = 1000;
      }
    } finally {
      flushing = false;
    }
  }

  function fail(entry, reason) {
    entry.state = "failed";
    entry.reason = reason;
    save();
    paint(entry);
  }

  /** One send of `entry`; false if the outcome is unknown (sent again later, same key). */
  async function attempt(entry) {
    entry.state = "sending";
    save();
    paint(entry);
    let res;
    let body = null;
    try {
      res = await fetch(`/chat/${slug}/send`, {
        method: "POST",
        credentials: "same-origin",
        redirect: "manual", // signed out: a redirect to the login page, not its HTML
        headers: { "Content-Type": "application/json", "X-CSRFToken": Demo.csrfToken() },
        body: JSON.stringify({ text: entry.text, key: entry.key }),
        // No answer in time: an unknown outcome like a dropped connection (sent again, same key).
        signal: typeof AbortSignal.timeout === "function" ? AbortSignal.timeout(REQUEST_TIMEOUT) : undefined,
      });
      if (res.type !== "opaqueredirect") body = await res.json().catch(() => null);
    } catch (err) {
      if (!pending.has(entry.key)) return true; // confirmed by a live event meanwhile
      entry.state = "queued";
      save();
      paint(entry);
      return false;
    }
    if (!pending.has(entry.key)) return true;
    if (res.ok && body && body.message) {
      confirm(entry.key, body.message);
      return true;
    }
    if (res.type === "opaqueredirect") {
      fail(entry, "you are signed out; sign in again, then retry");
    } else if (res.status >= 500 || res.status === 429 || (res.ok && !body)) {
      entry.state = "queued";
      save();
      paint(entry);
      return false;
    } else {
      const reason = body && body.error ? body.error.message : `the server answered ${res.status}`;
      fail(entry, res.status === 403 && !body ? "refused (403); reload the page, then retry" : reason);
    }
    return true;
  }

  function retryEntry(key) {
    const item = pending.get(key);
    if (!item) return;
    // The same key: if an earlier try did reach the server, this one is answered with it.
    item.entry.state = "queued";
    item.entry.created = Date.now();
    item.entry.reason = "";
    save();
    paint(item.entry);
    flush();
  }

  function discardEntry(key) {
    const item = pending.get(key);
    if (!item) return;
    pending.delete(key);
    item.li.remove();
    outbox = outbox.filter((e) => e.key !== key);
    save();
  }

  function submit(ev) {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text || !connected) return; // the text stays in the box
    const entry = { key: newKey(), text: text, state: "queued", reason: "", created: Date.now() };
    outbox.push(entry);
    save();
    paint(entry);
    input.value = ""; // it is in the list now, as pending
    saveDraft();
    flush();
  }

  function saveDraft() {
    try {
      if (input.value) sessionStorage.setItem(DRAFT, input.value);
      else sessionStorage.removeItem(DRAFT);
    } catch (err) {
      // Storage off: the draft lives as long as the page.
    }
  }

  function setConnected(change) {
    connected = change.state === "open";
    button.disabled = !connected;
    form.classList.toggle("paused", !connected);
    root.classList.toggle("disconnected", !connected); // "Here now" is stale meanwhile
    note.hidden = connected;
    if (!connected) {
      note.textContent =
        change.state === "connecting"
          ? "Connecting…"
          : "Sending is paused until the connection is back; what you type stays here.";
    }
    if (connected) {
      retryDelay = 1000;
      flush();
    }
  }

  // -- presence -------------------------------------------------------------------------

  function paintPresence(snap) {
    if (!snap) return;
    const ul = document.getElementById("presence");
    ul.replaceChildren(
      ...(snap.users || []).map((u) => {
        const li = document.createElement("li");
        li.textContent = u.name;
        li.dataset.userId = u.id;
        if (u.connections > 1) li.title = `${u.connections} connections`;
        if (String(u.id) === String(me.id)) li.classList.add("me");
        return li;
      })
    );
    document.getElementById("presence-count").textContent = (snap.users || []).length;
    document.getElementById("presence-anon").textContent =
      snap.anonymous ? `${snap.anonymous} anonymous` : "";
  }

  function watchPresence(client) {
    if (typeof client.watchPresence === "function") {
      // Kept current from join/leave notices on every transport (polling clients included).
      try {
        const watch = client.watchPresence(topic, paintPresence);
        paintPresence(watch && watch.snapshot);
        return;
      } catch (err) {
        console.warn("watchPresence", err);
      }
    }
    // An older client: ask on open and on each change; polling transports get no change
    // notices, so ask again now and then.
    const refresh = () => client.presence(topic).then(paintPresence, (err) => console.warn("presence", err));
    client.on("presence", (change) => {
      if (!change || change.topic === topic) refresh();
    });
    client.on("open", refresh);
    setInterval(() => {
      if (client.state === "open" && (client.transport === "poll" || client.transport === "longpoll")) refresh();
    }, 10000);
  }

  // -- start ----------------------------------------------------------------------------

  async function start() {
    const client = Demo.createClient();
    Demo.watchState(client, setConnected);
    outbox.forEach(paint); // what was waiting before a reload, at the bottom
    form.addEventListener("submit", submit);
    input.addEventListener("input", saveDraft);
    try {
      const draft = sessionStorage.getItem(DRAFT);
      if (draft && !input.value) input.value = draft;
    } catch (err) {
      // no storage
    }
    watchPresence(client);
    let since;
    try {
      const backlog = await Demo.history(topic, 50);
      backlog.events.forEach((e) => render(e.data));
      since = backlog.cursor;
    } catch (err) {
      console.warn("backlog", err);
    }
    client.subscribe(topic, (event) => render(event.data), { since });
  }
  start();
})();

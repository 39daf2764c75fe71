/* Live feed over SSE by default: backlog from history, then live items. */
(function () {
  "use strict";
  const list = document.getElementById("feed");
  const seen = new Set();

  function render(item, fresh) {
    if (seen.has(item.id)) return;
    seen.add(item.id);
    const li = document.createElement("li");
    li.dataset.id = item.id;
    if (fresh) li.classList.add("new");
    const h = document.createElement("h3");
    h.textContent = item.title;
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = `${item.body || ""} · ${new Date(item.created).toLocaleTimeString()}`;
    li.append(h, p);
    list.prepend(li);
  }

  async function start() {
    const client = Demo.createClient({ transports: ["sse", "longpoll", "poll"] });
    let since;
    try {
      const backlog = await Demo.history("feed", 30);
      backlog.events.forEach((e) => render(e.data, false));
      since = backlog.cursor;
    } catch (err) {
      console.warn("backlog", err);
    }
    client.subscribe("feed", (event) => render(event.data, true), { since });
    const notes = document.getElementById("notifications");
    if (notes) {
      document.addEventListener("demo:notification", (ev) => {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = ev.detail.data.url || "#";
        a.textContent = ev.detail.data.text;
        li.appendChild(a);
        notes.prepend(li);
      });
    }
  }
  start();
})();

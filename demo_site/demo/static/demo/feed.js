/* Live feed over SSE by default: backlog from history, then live items. An edit in the admin
 * ("feed.updated") changes the item in place, live and in the backlog of a later visit. */
(function () {
  "use strict";
  const list = document.getElementById("feed");
  const items = new Map(); // item id -> <li>

  function fill(li, item, edited) {
    const h = document.createElement("h3");
    h.textContent = item.title;
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = item.body || "";
    const meta = document.createElement("p");
    meta.className = "meta muted";
    const time = document.createElement("time");
    time.dateTime = item.created;
    time.textContent = new Date(item.created).toLocaleTimeString();
    meta.append(time);
    if (edited) {
      const mark = document.createElement("span");
      mark.className = "edited-mark";
      mark.textContent = "edited " + new Date(item.updated || item.created).toLocaleTimeString();
      meta.append(" · ", mark);
    }
    li.replaceChildren(h, p, meta);
  }

  function place(li, id) {
    // Newest first, by id (ids grow with creation), whatever order events came in.
    const after = [...list.children].find((other) => Number(other.dataset.id) < id);
    list.insertBefore(li, after || null);
  }

  function render(event, live) {
    const item = event.data;
    let li = items.get(item.id);
    if (li && event.type !== "feed.updated") return; // seen (backlog and live overlap)
    const updated = Boolean(li);
    if (!li) {
      li = document.createElement("li");
      li.dataset.id = item.id;
      items.set(item.id, li);
      place(li, item.id);
    }
    const edited = event.type === "feed.updated" || li.classList.contains("edited");
    li.classList.toggle("edited", edited);
    fill(li, item, edited);
    if (!live) return;
    // Restart the highlight: "new" for an item just added, "changed" for an edit.
    li.classList.remove("changed");
    void li.offsetWidth;
    li.classList.add(updated ? "changed" : "new");
  }

  async function start() {
    const client = Demo.createClient({ transports: ["sse", "longpoll", "poll"] });
    let since;
    try {
      const backlog = await Demo.history("feed", 30);
      backlog.events.forEach((e) => render(e, false));
      since = backlog.cursor;
    } catch (err) {
      console.warn("backlog", err);
    }
    client.subscribe("feed", (event) => render(event, true), { since });
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

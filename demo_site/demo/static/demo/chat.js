/* Chat room: backlog from history, live messages, presence. */
(function () {
  "use strict";
  const root = document.querySelector(".chat");
  const topic = root.dataset.topic;
  const slug = root.dataset.slug;
  const me = document.body.dataset.username;
  const list = document.getElementById("messages");
  const seen = new Set();

  function render(message) {
    if (seen.has(message.id)) return;
    seen.add(message.id);
    const li = document.createElement("li");
    li.dataset.id = message.id;
    if (message.author.name === me) li.classList.add("mine");
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = message.author.name;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = message.text;
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = new Date(message.created).toLocaleTimeString();
    li.append(author, text, time);
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
  }

  async function refreshPresence(client) {
    try {
      const snap = await client.presence(topic);
      const ul = document.getElementById("presence");
      ul.replaceChildren(
        ...snap.users.map((u) => {
          const li = document.createElement("li");
          li.textContent = u.name + (u.connections > 1 ? ` (${u.connections})` : "");
          li.dataset.userId = u.id;
          return li;
        })
      );
      document.getElementById("presence-count").textContent = snap.count;
      document.getElementById("presence-anon").textContent =
        snap.anonymous ? `${snap.anonymous} anonymous` : "";
    } catch (err) {
      console.warn("presence", err);
    }
  }

  async function start() {
    const client = Demo.createClient();
    let since;
    try {
      const backlog = await Demo.history(topic, 50);
      backlog.events.forEach((e) => render(e.data));
      since = backlog.cursor;
    } catch (err) {
      console.warn("backlog", err);
    }
    client.subscribe(topic, (event) => render(event.data), { since });
    client.on("presence", (change) => {
      if (!change || change.topic === topic) refreshPresence(client);
    });
    client.on("open", () => refreshPresence(client));
    // Presence counts streaming connections (WebSocket, SSE); on the polling transports no
    // join/leave notices arrive, so look again now and then.
    setInterval(() => {
      if (client.transport === "poll" || client.transport === "longpoll") refreshPresence(client);
    }, 10000);
    document.getElementById("send").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = document.getElementById("text");
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      const res = await fetch(`/chat/${slug}/send`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": Demo.csrfToken() },
        body: JSON.stringify({ text }),
      });
      if (!res.ok) Demo.toast("Could not send: " + res.status);
    });
  }
  start();
})();

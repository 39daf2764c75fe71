/* Shared demo wiring: one rtdelivery client per page, connection badge,
 * announcements and private notifications. `?transport=poll|longpoll|sse|ws` pins one. */
(function () {
  "use strict";
  const ALL = ["ws", "sse", "longpoll", "poll"];

  function transports(preferred) {
    const pinned = new URLSearchParams(location.search).get("transport");
    if (pinned && ALL.includes(pinned)) return [pinned];
    return preferred || ALL;
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

  function wireStatus(client) {
    const badge = document.getElementById("conn-status");
    const show = (state, label) => {
      badge.className = "conn " + state;
      badge.textContent = label;
      badge.dataset.state = state;
    };
    client.on("connecting", () => show("connecting", "connecting…"));
    client.on("open", () => show("open", "live · " + (client.transport || "")));
    client.on("transport", (name) => show("open", "live · " + name));
    client.on("closed", () => show("", "offline"));
  }

  function createClient(options) {
    const opts = Object.assign({}, options || {});
    opts.transports = transports(opts.transports);
    const client = new RTDelivery.Client(opts);
    wireStatus(client);
    // Announcements from the admin reach every page.
    client.subscribe("announcements", (event) => {
      const bar = document.getElementById("announcement");
      bar.textContent = "📣 " + event.data.text;
      bar.hidden = false;
    });
    const userId = document.body.dataset.userId;
    if (userId) {
      client.subscribe("user." + userId, (event) => {
        toast(event.data.text, event.data.url);
        document.dispatchEvent(new CustomEvent("demo:notification", { detail: event }));
      });
    }
    window.demoClient = client;
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

  window.Demo = { createClient, csrfToken, toast, history, transports };

  // Pages without a script of their own (index, room list) still get announcements and
  // notifications; page scripts create their client synchronously before this runs.
  document.addEventListener("DOMContentLoaded", () => {
    if (!window.demoClient) createClient();
  });
})();

/* The django-eventstream page: django-eventstream's ReconnectingEventSource and rtdelivery's
 * client side by side on one channel, served through rtdelivery's bridge. Each pane lists
 * what its client received (newest first); the button calls send_event() in a view. */
(function () {
  "use strict";
  const root = document.getElementById("es-demo");
  const button = document.getElementById("es-send-button");
  const state = { es: false, rt: false };
  window.esDemo = { es: [], rt: [] }; // what each pane received (the browser tests read it)

  function add(pane, list, data, id) {
    list.push(data.text + " · " + data.sent);
    const li = document.createElement("li");
    const h = document.createElement("h3");
    h.textContent = data.text;
    const meta = document.createElement("p");
    meta.className = "meta muted";
    const time = document.createElement("time");
    time.dateTime = data.sent;
    time.textContent = new Date(data.sent).toLocaleTimeString();
    meta.append(time, " · id " + id);
    li.append(h, meta);
    li.classList.add("new");
    document.getElementById(pane).prepend(li);
  }

  function ready(which, text) {
    state[which] = text === "open" || text === "live";
    document.getElementById(which + "-state").textContent = text;
    button.disabled = !(state.es && state.rt);
  }

  // django-eventstream's client, as a django-eventstream page has it.
  const es = new ReconnectingEventSource(root.dataset.url);
  es.addEventListener("stream-open", () => ready("es", "open"));
  es.addEventListener("error", () => ready("es", "reconnecting"));
  es.addEventListener("message", (e) => add("es-pane", window.esDemo.es, JSON.parse(e.data), e.lastEventId));

  // rtdelivery's client on the channel's topic (any transport: ?transport= pins one).
  const client = Demo.createClient();
  client.subscribe(root.dataset.topic, (event) => add("rt-pane", window.esDemo.rt, event.data, event.seq), {
    onState: (text) => ready("rt", text),
  });

  document.getElementById("es-send").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    button.disabled = true;
    try {
      await fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" });
    } finally {
      button.disabled = !(state.es && state.rt);
    }
  });
})();

/* Dashboard: live sensors and server stats over a switchable transport, with the
 * measured cost of each transport (requests, empty responses, bytes and latency per event). */
(function () {
  "use strict";
  const NAMES = { poll: "Polling", longpoll: "Long polling", sse: "SSE", ws: "WebSocket" };
  const WINDOW = 120; // points kept on the charts
  const rows = {}; // transport -> measured cost since it was selected
  let client = null;
  let current = null;

  const series = { t: [], temperature: [], humidity: [], load: [] };
  const latency = { t: [], ms: [] };

  function chart(el, opts, data) {
    const width = () => Math.max(300, el.clientWidth || 600);
    const plot = new uPlot(Object.assign({ width: width(), height: 240 }, opts), data, el);
    window.addEventListener("resize", () => plot.setSize({ width: width(), height: 240 }));
    return plot;
  }

  const sensorsPlot = chart(
    document.getElementById("chart-sensors"),
    {
      title: "Sensors",
      series: [
        {},
        { label: "Temperature °C", stroke: "#dc2626", scale: "c" },
        { label: "Humidity %", stroke: "#2f6fed", scale: "%" },
        { label: "Load", stroke: "#1f9d55", scale: "load" },
      ],
      axes: [{}, { scale: "c" }, { scale: "%", side: 1, grid: { show: false } }],
    },
    [[], [], [], []]
  );
  const latencyPlot = chart(
    document.getElementById("chart-latency"),
    {
      title: "Publish → receive latency per event (ms)",
      series: [{}, { label: "latency ms", stroke: "#7c3aed", points: { show: true } }],
    },
    [[], []]
  );

  function push(arr, v) {
    arr.push(v);
    if (arr.length > WINDOW) arr.shift();
  }

  function percentile(values, p) {
    if (!values.length) return null;
    const sorted = values.slice().sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  }

  function onEvent(event) {
    const now = Date.now();
    const row = rows[current];
    row.events += 1;
    row.latencies.push(Math.max(0, now - event.time));
    push(latency.t, now / 1000);
    push(latency.ms, Math.max(0, now - event.time));
    latencyPlot.setData([latency.t, latency.ms]);
    if (event.type === "sensors") {
      const d = event.data;
      document.getElementById("v-temperature").textContent = d.temperature.toFixed(1);
      document.getElementById("v-humidity").textContent = d.humidity.toFixed(0);
      document.getElementById("v-load").textContent = d.load.toFixed(2);
      push(series.t, event.time / 1000);
      push(series.temperature, d.temperature);
      push(series.humidity, d.humidity);
      push(series.load, d.load);
      sensorsPlot.setData([series.t, series.temperature, series.humidity, series.load]);
      document.body.dataset.sensorEvents = String(Number(document.body.dataset.sensorEvents || 0) + 1);
    } else if (event.type === "stats") {
      document.getElementById("v-published").textContent = event.data.published;
      document.getElementById("v-held").textContent = event.data.held_requests;
    }
  }

  function renderCosts() {
    const tbody = document.querySelector("#costs tbody");
    const stats = client && client.stats ? client.stats : null;
    if (stats && rows[current]) {
      const base = rows[current].base;
      rows[current].requests = stats.requests - base.requests;
      rows[current].empty = stats.emptyResponses - base.emptyResponses;
      rows[current].bytes = stats.bytesReceived - base.bytesReceived;
    }
    tbody.replaceChildren(
      ...Object.keys(NAMES)
        .filter((t) => rows[t])
        .map((t) => {
          const r = rows[t];
          const per = (x) => (r.events ? (x / r.events).toFixed(2) : "–");
          const p50 = percentile(r.latencies, 50);
          const p95 = percentile(r.latencies, 95);
          const tr = document.createElement("tr");
          tr.dataset.transport = t;
          if (t === current) tr.className = "current";
          [
            NAMES[t], r.events, r.requests, r.empty, per(r.requests),
            r.events ? Math.round(r.bytes / r.events) : "–",
            p50 === null ? "–" : p50 + " ms", p95 === null ? "–" : p95 + " ms",
          ].forEach((v) => {
            const td = document.createElement("td");
            td.textContent = v;
            tr.appendChild(td);
          });
          return tr;
        })
    );
  }

  function select(transport) {
    if (client) client.close();
    current = transport;
    document.querySelectorAll(".switch button").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.transport === transport));
    });
    // The address first: Demo.createClient() honours a `?transport=` pinned there.
    const url = new URL(location.href);
    url.searchParams.set("transport", transport);
    history.replaceState(null, "", url);
    client = Demo.createClient({ transports: [transport] });
    const s = client.stats || { requests: 0, emptyResponses: 0, bytesReceived: 0 };
    rows[transport] = {
      events: 0, requests: 0, empty: 0, bytes: 0, latencies: [],
      base: { requests: s.requests, emptyResponses: s.emptyResponses, bytesReceived: s.bytesReceived },
    };
    document.body.dataset.transport = transport;
    client.subscribe("dashboard.sensors", onEvent);
    client.subscribe("dashboard.stats", onEvent);
  }

  document.querySelectorAll(".switch button").forEach((b) =>
    b.addEventListener("click", () => select(b.dataset.transport))
  );
  setInterval(renderCosts, 1000);
  select(Demo.transports(["ws"])[0]);
})();

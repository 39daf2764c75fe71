/* Dashboard: four rtdelivery clients side by side, one per transport, on one event stream,
 * and what each costs as the browser measures it: requests, empty responses, bytes both ways
 * (headers and framing included), deliveries and latency; per second and per event.
 *
 * How bytes are measured (the page says it too):
 * - HTTP: every request of a measured client goes through `meteredFetch` (the client's `fetch`
 *   option). Its URL gets a fragment "#meter=<transport>-<n>" (never sent; it names the
 *   Resource Timing entry). Response head: status line + headers of the Response. Body: counted
 *   as it is read, then replaced by Resource Timing's encodedBodySize once the response ended.
 * - Request heads are estimated from a probe the server measures (GET dashboard/probe).
 * - WebSocket: a WebSocket subclass counts payload + frame header of each frame of the socket
 *   whose URL carries "meter=ws".
 * `window.dashboard` exposes the raw figures (the browser tests compare them with CDP's).
 */
(function () {
  "use strict";
  const ORDER = ["poll", "longpoll", "sse", "ws"];
  const NAMES = { poll: "Polling", longpoll: "Long polling", sse: "SSE", ws: "WebSocket" };
  const COLORS = { poll: "#d97706", longpoll: "#7c3aed", sse: "#1f9d55", ws: "#2f6fed" };
  const TOPIC = "dashboard.sensors";
  const CHART_SECONDS = 60;
  const CHART_POINTS = 300; // per transport
  const LATENCY_SAMPLES = 2000; // p50/p95 of each transport's latest deliveries
  const root = document.getElementById("dashboard");
  const POLL_INTERVAL = Number(root.dataset.pollInterval) || 2000;
  const RT_URL = JSON.parse(document.getElementById("rtdelivery-config").textContent).url || "/rt/";
  const MARK = "meter=";

  // -- counters -------------------------------------------------------------------

  function zero() {
    return { requests: 0, empty: 0, down: 0, up: 0, deliveries: 0, frames: 0, latencies: [] };
  }

  /** Per transport: `all` since the page loaded, `win` since the rate was set (the table). */
  const meters = {};
  ORDER.forEach((t) => (meters[t] = { all: zero(), win: zero(), confirmed: 0, http: 0 }));
  function add(t, field, n) {
    meters[t].all[field] += n;
    meters[t].win[field] += n;
  }
  let windowStart = performance.now();
  let pausedAt = null;
  // The window's deliveries are the events after this seq: those published since the rate
  // was set (its "rate" event's seq), not older ones a poll brings late. null: not known yet.
  let windowSeq = 0;
  function resetWindow(seq) {
    ORDER.forEach((t) => (meters[t].win = zero()));
    windowStart = performance.now();
    windowSeq = seq === undefined ? shownSeq : seq;
    if (pausedAt !== null) pausedAt = windowStart;
  }
  function windowSeconds() {
    return ((pausedAt !== null ? pausedAt : performance.now()) - windowStart) / 1000;
  }

  // -- sizes ----------------------------------------------------------------------

  const encoder = new TextEncoder();
  const line = (name, value) => name.length + 2 + String(value).length + 2; // "name: value\r\n"

  function payloadBytes(data) {
    if (typeof data === "string") return encoder.encode(data).length;
    if (data && typeof data.byteLength === "number") return data.byteLength;
    if (data && typeof data.size === "number") return data.size;
    return 0;
  }

  /** RFC 6455 5.2: 2 bytes, +2 or +8 for the extended length, +4 for the mask (client frames). */
  function frameHeader(length, masked) {
    return 2 + (length < 126 ? 0 : length < 65536 ? 2 : 8) + (masked ? 4 : 0);
  }

  // The probe: the request head the server received, minus its request line and Accept header.
  const probe = { base: null, headers: {} };
  const probeReady = fetch(root.dataset.probeUrl, {
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json" },
  })
    .then((res) => res.json())
    .then((answer) => {
      let total = 2; // the blank line ending the head
      answer.headers.forEach(([name, bytes]) => {
        probe.headers[name] = (probe.headers[name] || 0) + bytes;
        total += bytes;
      });
      probe.base = total - (probe.headers.accept || 0);
    })
    .catch((err) => console.warn("dashboard probe", err));

  function requestLine(url) {
    const u = new URL(url, location.href);
    return "GET ".length + (u.pathname + u.search).length + " HTTP/1.1\r\n".length;
  }

  /** Estimated bytes of a request head: the probe's, with this URL and these headers. */
  function requestBytes(url, headers) {
    let bytes = requestLine(url) + (probe.base || 0);
    Object.entries(headers || {}).forEach(([name, value]) => (bytes += line(name, value)));
    return bytes;
  }

  function handshakeBytes(url) {
    // Like a fetch from this page, with the upgrade's headers instead of Accept and Sec-Fetch-*.
    const kept = ["host", "user-agent", "accept-encoding", "accept-language", "cookie", "cache-control", "pragma"];
    let bytes = requestLine(url) + 2;
    kept.forEach((name) => (bytes += probe.headers[name] || 0));
    bytes += line("Connection", "Upgrade") + line("Upgrade", "websocket") + line("Origin", location.origin);
    bytes += line("Sec-WebSocket-Version", "13") + line("Sec-WebSocket-Key", "x".repeat(24));
    bytes += line("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits");
    return bytes;
  }
  // Daphne's answer to the upgrade (its Sec-WebSocket-Accept is 28 characters).
  const SWITCHING = "HTTP/1.1 101 Switching Protocols\r\n".length + line("Server", "daphne") +
    line("Upgrade", "WebSocket") + line("Connection", "Upgrade") +
    line("Sec-WebSocket-Accept", "x".repeat(28)) + 2;

  function responseHead(res) {
    let bytes = `HTTP/1.1 ${res.status} ${res.statusText}\r\n`.length + 2;
    res.headers.forEach((value, name) => (bytes += line(name, value)));
    return bytes;
  }

  // -- HTTP: the measured clients' fetch ------------------------------------------

  let sent = 0;
  let inFlight = 0;
  // The latest requests, each with its own figures (the browser tests compare them one by one).
  const records = [];
  const MAX_RECORDS = 5000;
  function addTo(rec, field, n) {
    rec[field] += n;
    add(rec.t, field, n);
  }
  const awaitingTiming = new Map(); // entry name -> request record

  function finish(rec, complete) {
    if (rec.done) return;
    rec.done = true;
    rec.complete = complete;
    inFlight -= 1;
    if (complete && rec.json !== null) {
      try {
        const events = JSON.parse(rec.json).events;
        if (Array.isArray(events) && events.length === 0) add(rec.t, "empty", 1);
      } catch (err) {
        // Not an rtdelivery answer (an error page): not an empty response either.
      }
    }
    if (rec.entry) reconcile(rec);
  }

  /** A complete response's body as Resource Timing measured it replaces the page's count. */
  function reconcile(rec) {
    if (!rec.complete || rec.reconciled || !rec.entry) return;
    rec.reconciled = true;
    meters[rec.t].confirmed += 1;
    const delta = rec.entry.encodedBodySize - rec.body;
    if (delta) addTo(rec, "down", delta);
  }

  if (typeof PerformanceObserver === "function") {
    new PerformanceObserver((list) => {
      list.getEntries().forEach((entry) => {
        const rec = awaitingTiming.get(entry.name);
        if (!rec) return;
        awaitingTiming.delete(entry.name);
        rec.entry = entry;
        reconcile(rec);
      });
    }).observe({ type: "resource" });
    // The observer sees every entry; the buffer would only fill up.
    performance.addEventListener("resourcetimingbufferfull", () => performance.clearResourceTimings());
  }

  function meteredFetch(t) {
    return async function (url, init) {
      await probeReady;
      sent += 1;
      const marked = String(url) + "#" + MARK + t + "-" + sent;
      const headers = (init && init.headers) || {};
      const rec = {
        t: t, id: t + "-" + sent, name: new URL(marked, location.href).href, body: 0, json: null,
        up: 0, down: 0,
        done: false, complete: false, reconciled: false, entry: null,
      };
      inFlight += 1;
      meters[t].http += 1;
      awaitingTiming.set(rec.name, rec);
      add(t, "requests", 1);
      addTo(rec, "up", requestBytes(url, headers));
      records.push(rec);
      if (records.length > MAX_RECORDS) records.shift();
      let res;
      try {
        res = await fetch(marked, init);
      } catch (err) {
        finish(rec, false);
        throw err;
      }
      addTo(rec, "down", responseHead(res));
      if (res.status === 304) add(t, "empty", 1);
      if (!res.body) {
        finish(rec, true);
        return res;
      }
      const type = res.headers.get("Content-Type") || "";
      const stream = type.indexOf("text/event-stream") === 0;
      if (type.indexOf("application/json") === 0) rec.json = "";
      const decoder = new TextDecoder();
      const reader = res.body.getReader();
      const body = new ReadableStream({
        async pull(controller) {
          let chunk;
          try {
            chunk = await reader.read();
          } catch (err) {
            finish(rec, false);
            controller.error(err);
            return;
          }
          if (chunk.done) {
            finish(rec, true);
            controller.close();
            return;
          }
          const n = chunk.value.byteLength;
          rec.body += n;
          // A streamed body arrives in HTTP/1.1 chunks: "<hex size>\r\n" ... "\r\n" each.
          addTo(rec, "down", n + (stream ? n.toString(16).length + 4 : 0));
          if (rec.json !== null && rec.json.length < 65536) rec.json += decoder.decode(chunk.value, { stream: true });
          controller.enqueue(chunk.value);
        },
        cancel(reason) {
          finish(rec, false);
          return reader.cancel(reason);
        },
      });
      return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
    };
  }

  // -- WebSocket: frames of the measured socket -----------------------------------

  const NativeWebSocket = window.WebSocket;
  class MeteredWebSocket extends NativeWebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.meter = String(url).indexOf(MARK + "ws") >= 0 ? "ws" : null;
      if (!this.meter) return;
      add("ws", "requests", 1);
      add("ws", "up", handshakeBytes(url));
      this.addEventListener("open", () => add("ws", "down", SWITCHING));
      this.addEventListener("message", (message) => {
        const n = payloadBytes(message.data);
        add("ws", "down", n + frameHeader(n, false));
        add("ws", "frames", 1);
      });
    }

    send(data) {
      if (this.meter && this.readyState === NativeWebSocket.OPEN) {
        const n = payloadBytes(data);
        add("ws", "up", n + frameHeader(n, true));
        add("ws", "frames", 1);
      }
      return super.send(data);
    }
  }
  window.WebSocket = MeteredWebSocket;

  // -- the four clients ------------------------------------------------------------

  const clients = {};
  const points = {}; // transport -> [[seconds, ms], ...] for the latency chart
  ORDER.forEach((t) => (points[t] = []));
  let currentRate = Number(root.dataset.rate);
  let shownSeq = 0;

  function wsUrl() {
    const url = new URL(RT_URL + "ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("meter", "ws");
    return url.href;
  }

  function start() {
    ORDER.forEach((t) => {
      const options = { transports: [t], shared: false, pollInterval: POLL_INTERVAL };
      if (t === "ws") options.wsUrl = wsUrl();
      else options.fetch = meteredFetch(t);
      const client = new RTDelivery.Client(options);
      client.subscribe(TOPIC, (event) => onEvent(t, event));
      clients[t] = client;
    });
  }

  function stop() {
    ORDER.forEach((t) => {
      if (clients[t]) clients[t].close();
      delete clients[t];
    });
  }

  function onEvent(t, event) {
    const now = Date.now();
    if (event.type === "rate") {
      if (event.data.rate !== currentRate) showRate(event.data.rate, event.seq);
      else if (windowSeq === null || windowSeq < event.seq) windowSeq = event.seq;
      return;
    }
    if (event.type !== "sensors") return;
    if (event.seq > shownSeq) {
      shownSeq = event.seq;
      showSensors(event);
    }
    if (windowSeq === null || event.seq <= windowSeq) return; // published before the window
    const ms = Math.max(0, now - event.time);
    add(t, "deliveries", 1);
    const latencies = meters[t].win.latencies;
    latencies.push(ms);
    if (latencies.length > LATENCY_SAMPLES) latencies.shift();
    points[t].push([now / 1000, ms]);
    if (points[t].length > CHART_POINTS) points[t].shift();
  }

  // -- rate control ------------------------------------------------------------------

  const rateButtons = document.querySelectorAll(".rates button");
  const rateError = document.getElementById("rate-error");

  /** Shows `rate`; `seq` (or null: to be told) starts a new window, undefined keeps it. */
  function showRate(rate, seq) {
    currentRate = rate;
    rateButtons.forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.rate) === rate)));
    document.getElementById("rate-text").textContent = rate === 0 ? "Quiet (0 events/s)" : `${rate} events/s`;
    root.dataset.rate = String(rate);
    if (seq !== undefined) resetWindow(seq);
  }

  function csrfToken() {
    if (window.Demo && Demo.csrfToken) return Demo.csrfToken();
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function setRate(rate) {
    const previous = currentRate;
    rateError.hidden = true;
    showRate(rate, null); // before the server's "rate" event can arrive
    let res;
    try {
      res = await fetch(root.dataset.rateUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ rate: rate }),
      });
    } catch (err) {
      res = null;
    }
    if (!res || !res.ok) {
      let message = res ? `HTTP ${res.status}` : "network error";
      try {
        message = (await res.json()).error.message;
      } catch (err) {
        // Keep the status.
      }
      rateError.textContent = "Rate not changed: " + message;
      rateError.hidden = false;
      showRate(previous, shownSeq);
      return false;
    }
    const answer = await res.json();
    if (windowSeq === null || windowSeq < answer.seq) windowSeq = answer.seq;
    return true;
  }

  rateButtons.forEach((b) => b.addEventListener("click", () => setRate(Number(b.dataset.rate))));

  // Paused by the visitor, or while the tab is hidden: the clients stop (and free their
  // connections) and the window's clock stops; resuming continues the same window.
  const pauseButton = document.getElementById("pause");
  let pausedByUser = false;
  function pause() {
    if (pausedAt !== null) return;
    stop();
    pausedAt = performance.now();
    document.getElementById("paused-note").hidden = false;
    render();
  }
  function resume() {
    if (pausedAt === null) return;
    windowStart += performance.now() - pausedAt;
    pausedAt = null;
    document.getElementById("paused-note").hidden = true;
    start();
  }
  function togglePause(paused) {
    pausedByUser = paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    if (paused) pause();
    else if (document.visibilityState !== "hidden") resume();
  }
  pauseButton.addEventListener("click", () => togglePause(!pausedByUser));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") pause();
    else if (!pausedByUser) resume();
  });
  document.getElementById("reset").addEventListener("click", () => {
    resetWindow();
    render();
  });

  // -- rendering ----------------------------------------------------------------------

  function percentile(values, p) {
    if (!values.length) return null;
    const sorted = values.slice().sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  }

  function fmt(x, digits) {
    if (x === null || !isFinite(x)) return "–";
    if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
    return x.toFixed(Math.abs(x) >= 100 ? 0 : digits);
  }

  function ms(x) {
    return x === null ? "–" : x < 10 ? `${x} ms` : `${Math.round(x).toLocaleString("en-US")} ms`;
  }

  const COLUMNS = [
    "Deliveries /s", "Requests /s", "Requests /event", "Empty /s", "Empty /event",
    "Bytes down /s", "Bytes down /event", "Bytes up /s", "Bytes up /event", "Latency p50", "Latency p95",
  ];

  function figures(t) {
    const w = meters[t].win;
    const secs = windowSeconds();
    const perSec = (x) => (secs >= 1 ? x / secs : null);
    const perEvent = (x) => (w.deliveries ? x / w.deliveries : null);
    return {
      seconds: secs,
      deliveriesPerSecond: perSec(w.deliveries),
      requestsPerSecond: perSec(w.requests), requestsPerEvent: perEvent(w.requests),
      emptyPerSecond: perSec(w.empty), emptyPerEvent: perEvent(w.empty),
      downPerSecond: perSec(w.down), downPerEvent: perEvent(w.down),
      upPerSecond: perSec(w.up), upPerEvent: perEvent(w.up),
      p50: percentile(w.latencies, 50), p95: percentile(w.latencies, 95),
    };
  }

  function row(cells, t) {
    const tr = document.createElement("tr");
    tr.dataset.transport = t;
    tr.style.setProperty("--series", COLORS[t]);
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = NAMES[t];
    tr.appendChild(th);
    cells.forEach(([label, value]) => {
      const td = document.createElement("td");
      td.dataset.label = label;
      td.textContent = value;
      tr.appendChild(td);
    });
    return tr;
  }

  function renderTable() {
    document.querySelector("#costs tbody").replaceChildren(
      ...ORDER.map((t) => {
        const f = figures(t);
        const values = [
          fmt(f.deliveriesPerSecond, 2), fmt(f.requestsPerSecond, 2), fmt(f.requestsPerEvent, 2),
          fmt(f.emptyPerSecond, 2), fmt(f.emptyPerEvent, 2), fmt(f.downPerSecond, 0),
          fmt(f.downPerEvent, 0), fmt(f.upPerSecond, 0), fmt(f.upPerEvent, 0), ms(f.p50), ms(f.p95),
        ];
        return row(values.map((v, i) => [COLUMNS[i], v]), t);
      })
    );
    document.querySelector("#totals tbody").replaceChildren(
      ...ORDER.map((t) => {
        const w = meters[t].win;
        return row(
          [
            ["Deliveries", w.deliveries], ["Requests", w.requests], ["Empty", w.empty],
            ["Bytes down", w.down.toLocaleString("en-US")], ["Bytes up", w.up.toLocaleString("en-US")],
            ["WebSocket frames", t === "ws" ? w.frames : "–"],
          ],
          t
        );
      })
    );
    document.getElementById("window-seconds").textContent = Math.floor(windowSeconds());
    const http = ORDER.reduce((n, t) => n + meters[t].http, 0);
    const confirmed = ORDER.reduce((n, t) => n + meters[t].confirmed, 0);
    document.getElementById("rt-confirmed").textContent =
      `So far ${confirmed} of ${http} HTTP responses were confirmed by Resource Timing.`;
  }

  function renderStates() {
    document.getElementById("states").replaceChildren(
      ...ORDER.map((t) => {
        const li = document.createElement("li");
        const state = clients[t] ? clients[t].state : "paused";
        li.className = "chip " + state;
        li.dataset.transport = t;
        li.dataset.state = state;
        li.style.setProperty("--series", COLORS[t]);
        li.textContent = `${NAMES[t]}: ${state}`;
        return li;
      })
    );
  }

  // -- charts ------------------------------------------------------------------------

  function chartWidth(el) {
    return Math.max(200, el.clientWidth || 600);
  }

  function chart(el, opts, data, height) {
    const plot = new uPlot(Object.assign({ width: chartWidth(el), height: height }, opts), data, el);
    window.addEventListener("resize", () => plot.setSize({ width: chartWidth(el), height: height }));
    return plot;
  }

  const latencyPlot = chart(
    document.getElementById("chart-latency"),
    {
      scales: { y: { distr: 3 } },
      series: [{}].concat(
        ORDER.map((t) => ({
          label: NAMES[t], stroke: COLORS[t], width: 1.5, spanGaps: true,
          points: { show: true, size: 4, fill: COLORS[t] },
          value: (u, v) => (v == null ? "–" : Math.round(v) + " ms"),
        }))
      ),
      axes: [{}, { label: "ms" }],
    },
    [[], [], [], [], []],
    260
  );

  /** The four series on one time axis (uPlot wants aligned arrays; null where none). */
  function latencyData() {
    const cutoff = Date.now() / 1000 - CHART_SECONDS;
    const rows = [];
    ORDER.forEach((t, i) => {
      points[t].forEach(([x, y]) => {
        if (x >= cutoff) rows.push([x, i, Math.max(1, y)]); // log scale: under 1 ms drawn at 1
      });
    });
    rows.sort((a, b) => a[0] - b[0]);
    const data = [[], [], [], [], []];
    rows.forEach(([x, i, y]) => {
      data[0].push(x);
      for (let s = 1; s <= 4; s++) data[s].push(s === i + 1 ? y : null);
    });
    return data;
  }

  const sensors = { t: [], temperature: [], humidity: [], load: [] };
  const sensorsPlot = chart(
    document.getElementById("chart-sensors"),
    {
      series: [
        {},
        { label: "Temperature °C", stroke: "#dc2626", scale: "c" },
        { label: "Humidity %", stroke: "#2f6fed", scale: "%" },
        { label: "Load", stroke: "#1f9d55", scale: "load" },
      ],
      axes: [{}, { scale: "c" }, { scale: "%", side: 1, grid: { show: false } }],
    },
    [[], [], [], []],
    200
  );

  function push(arr, v) {
    arr.push(v);
    if (arr.length > 120) arr.shift();
  }

  function showSensors(event) {
    const d = event.data;
    document.getElementById("v-temperature").textContent = d.temperature.toFixed(1);
    document.getElementById("v-humidity").textContent = d.humidity.toFixed(0);
    document.getElementById("v-load").textContent = d.load.toFixed(2);
    if (d.published !== undefined) document.getElementById("v-published").textContent = d.published;
    if (d.held_requests !== undefined) document.getElementById("v-held").textContent = d.held_requests;
    push(sensors.t, event.time / 1000);
    push(sensors.temperature, d.temperature);
    push(sensors.humidity, d.humidity);
    push(sensors.load, d.load);
    document.body.dataset.sensorEvents = String(Number(document.body.dataset.sensorEvents || 0) + 1);
  }

  function render() {
    renderTable();
    renderStates();
    latencyPlot.setData(latencyData());
    sensorsPlot.setData([sensors.t, sensors.temperature, sensors.humidity, sensors.load]);
  }

  // -- go -----------------------------------------------------------------------------

  window.dashboard = {
    clients: clients,
    /** The raw figures: {transport: {all: {...}, win: {...}, figures: {...}}}. */
    snapshot() {
      const out = {};
      ORDER.forEach((t) => {
        const copy = (m) => Object.assign({}, m, { latencies: m.latencies.length });
        out[t] = {
          all: copy(meters[t].all), win: copy(meters[t].win), figures: figures(t),
          confirmed: meters[t].confirmed, http: meters[t].http,
          state: clients[t] ? clients[t].state : "paused",
        };
      });
      return out;
    },
    /** No measured HTTP request is in flight (after pause(): every figure is final). */
    settled: () => inFlight === 0,
    /** The latest measured HTTP requests: [{id: "poll-12", up, down, complete}]. */
    records: () => records.map((r) => ({ id: r.id, up: r.up, down: r.down, complete: r.complete })),
    rate: () => currentRate,
    setRate: setRate,
    pause: () => togglePause(true),
    resume: () => togglePause(false),
    render: render,
  };
  showRate(currentRate);
  probeReady.then(() => {
    start();
    if (document.visibilityState === "hidden") pause(); // opened in a background tab
  });
  render();
  setInterval(render, 500);
})();

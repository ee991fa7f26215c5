// The ibsweep dashboard: sweeps, one sweep (progress, job table, the paper's comparison
// views, a job's information plane), one job, workers. Everything it shows comes from the
// coordinator's HTTP API (docs/usage.md, "The HTTP data API"); the event stream tells it
// when to read again. No framework: a few DOM helpers and uPlot for the charts.
"use strict";

const AXES = ["width", "kernel", "depth", "pooling", "dataset", "fc", "activation"];
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];

// ---- helpers --------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/// Replaces `el`'s children, leaving out the nulls of optional parts (the DOM would write
/// them as the text "null").
function put(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

/// A scale range that still shows a single value (one epoch, or a layer at its ceiling):
/// the data's span with 5 % either side, or ±0.5 around a lone value.
function padded(u, min, max) {
  if (min === null || max === null || !isFinite(min) || !isFinite(max)) return [0, 1];
  if (min === max) return [min - 0.5, max + 0.5];
  const pad = (max - min) * 0.05;
  return [min - pad, max + pad];
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (response.status === 401) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("not logged in");
  }
  if (!response.ok) throw new Error(`${path}: ${response.status} ${(await response.text()).trim()}`);
  return response;
}
const getJson = async (path) => (await api(path)).json();
async function getRows(path) {
  const response = await api(path);
  const rows = (await response.text()).split("\n").filter(Boolean).map((line) => JSON.parse(line));
  return { rows, provisional: response.headers.get("x-ibsweep-provisional") === "true" };
}

const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
function duration(seconds) {
  if (!isFinite(seconds) || seconds <= 0) return "–";
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = Math.floor(seconds % 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}
function ago(ms) {
  return duration((Date.now() - ms) / 1000) + " ago";
}
function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}
function select(id, label, options, value, onchange) {
  return h("label", {}, label + " ",
    h("select", { id, onchange: (e) => onchange(e.target.value) },
      options.map((o) => h("option", { value: o, selected: String(o) === String(value) }, o))));
}

// ---- the live feed --------------------------------------------------------------------

let feed = null;
function listen(sweepId, onEvent) {
  if (feed) feed.close();
  const indicator = document.getElementById("live");
  feed = new EventSource("/api/v1/events" + (sweepId ? "?sweep=" + sweepId : ""));
  feed.onopen = () => { indicator.textContent = "live"; indicator.className = "live on"; };
  feed.onerror = () => { indicator.textContent = "reconnecting"; indicator.className = "live off"; };
  for (const kind of ["measured", "job", "sweep", "lagged"]) {
    feed.addEventListener(kind, (e) => onEvent(JSON.parse(e.data)));
  }
}

// ---- charts ---------------------------------------------------------------------------

/// Lines over epochs: `series` is [{label, xs, ys}], drawn on the union of their epochs.
function pathChart(title, yLabel, series, width = 420) {
  const epochs = [...new Set(series.flatMap((s) => s.xs))].sort((a, b) => a - b);
  const at = new Map(epochs.map((e, i) => [e, i]));
  const columns = series.map((s) => {
    const col = new Array(epochs.length).fill(null);
    s.xs.forEach((x, i) => { col[at.get(x)] = s.ys[i]; });
    return col;
  });
  const box = h("div", { class: "chart" }, h("h3", {}, title));
  new uPlot({
    width, height: 260,
    scales: { x: { time: false, range: padded }, y: { range: padded } },
    axes: [{ label: "epoch" }, { label: yLabel }],
    series: [{ label: "epoch" }, ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], spanGaps: true, points: { show: true, size: 4 } }))],
  }, [epochs, ...columns], box);
  return box;
}

/// The information plane: I(X;T) against I(Y;T), one line per series through its points in
/// epoch order (x may go back and forth). uPlot (mode 2) keeps the axes, scales and legend;
/// the lines and points are drawn in its draw hook, which needs no sorted x. The box says
/// what it drew, for tests and screen readers: data-layers (series with points) and
/// data-points.
function planeChart(title, series, width = 420) {
  const drawn = series.map((s) => s.xs.map((x, i) => [x, s.ys[i]]).filter(([x, y]) => x !== null && y !== null));
  const all = drawn.flat();
  const extent = (k) => (all.length ? [Math.min(...all.map((p) => p[k])), Math.max(...all.map((p) => p[k]))] : [null, null]);
  const [x0, x1] = extent(0), [y0, y1] = extent(1);
  const box = h("div", { class: "chart plane", "data-layers": drawn.filter((d) => d.length).length, "data-points": all.length },
    h("h3", {}, title));
  const draw = (u) => {
    const ctx = u.ctx, dpr = window.devicePixelRatio || 1;
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    drawn.forEach((points, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const at = points.map(([x, y]) => [u.valToPos(x, "x", true), u.valToPos(y, "y", true)]);
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.lineWidth = 1.5 * dpr;
      ctx.beginPath();
      at.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
      for (const [x, y] of at) {
        ctx.beginPath();
        ctx.arc(x, y, 3.5 * dpr, 0, 2 * Math.PI);
        ctx.fill();
      }
    });
    ctx.restore();
  };
  const data = [null, ...drawn.map((d) => [d.map((p) => p[0]), d.map((p) => p[1])])];
  new uPlot({
    mode: 2, width, height: 300,
    scales: { x: { time: false, range: () => padded(null, x0, x1) }, y: { range: () => padded(null, y0, y1) } },
    axes: [{ label: "I(X;T) bits" }, { label: "I(Y;T) bits" }],
    legend: { live: false },
    cursor: { show: false },
    hooks: { draw: [draw] },
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: COLOURS[i % COLOURS.length], fill: null,
      paths: () => null, points: { show: false },
      facets: [{ scale: "x", auto: false }, { scale: "y", auto: false }],
    }))],
  }, data, box);
  return box;
}

// ---- rows of one job ------------------------------------------------------------------

/// The layer series of one job's rows for one split, estimator and bin size.
function layerSeries(rows, split, estimator, binSize) {
  const keep = rows.filter((r) => r.split === split && r.estimator === estimator &&
    (estimator !== "binning" || String(r.bin_size) === String(binSize)));
  const layers = new Map();
  for (const r of keep.sort((a, b) => a.epoch - b.epoch)) {
    const key = r.layer;
    if (!layers.has(key)) layers.set(key, { label: `${r.layer} ${r.layer_name}`, xs: [], ixt: [], iyt: [] });
    const l = layers.get(key);
    l.xs.push(r.epoch); l.ixt.push(r.i_xt); l.iyt.push(r.i_yt);
  }
  return [...layers.entries()].sort((a, b) => a[0] - b[0]).map(([, l]) => l);
}

function choicesOf(rows) {
  return {
    estimators: [...new Set(rows.map((r) => r.estimator))].sort(),
    binSizes: [...new Set(rows.filter((r) => r.estimator === "binning").map((r) => r.bin_size))].sort((a, b) => a - b),
    splits: [...new Set(rows.map((r) => r.split))].sort(),
  };
}

/// A job's charts: information plane, MI paths, loss and accuracy; redrawn in `into`.
function drawJob(into, rows, view) {
  put(into);
  if (!rows.length) { into.append(h("p", { class: "muted" }, "No measured epoch yet.")); return; }
  const layers = layerSeries(rows, view.split, view.estimator, view.binSize);
  const charts = h("div", { class: "charts" },
    planeChart(`Information plane (${view.split}, ${view.estimator})`, layers.map((l) => ({ label: l.label, xs: l.ixt, ys: l.iyt }))),
    pathChart("I(X;T)", "bits", layers.map((l) => ({ label: l.label, xs: l.xs, ys: l.ixt }))),
    pathChart("I(Y;T)", "bits", layers.map((l) => ({ label: l.label, xs: l.xs, ys: l.iyt }))));
  const perEpoch = (split, field) => {
    const seen = new Map();
    for (const r of rows) if (r.split === split && !seen.has(r.epoch)) seen.set(r.epoch, r[field]);
    const xs = [...seen.keys()].sort((a, b) => a - b);
    return { label: split, xs, ys: xs.map((x) => seen.get(x)) };
  };
  const splits = choicesOf(rows).splits;
  charts.append(pathChart("Loss", "cross-entropy", splits.map((s) => perEpoch(s, "loss"))),
    pathChart("Accuracy", "accuracy", splits.map((s) => perEpoch(s, "accuracy"))));
  into.append(charts);
}

function viewControls(choices, view, redraw) {
  if (!choices.estimators.includes(view.estimator)) view.estimator = choices.estimators[0];
  if (!choices.binSizes.map(String).includes(String(view.binSize))) view.binSize = choices.binSizes[0];
  if (!choices.splits.includes(view.split)) view.split = choices.splits.includes("test") ? "test" : choices.splits[0];
  return h("div", { class: "controls" },
    select("split", "Split", choices.splits, view.split, (v) => { view.split = v; redraw(); }),
    select("estimator", "Estimator", choices.estimators, view.estimator, (v) => { view.estimator = v; redraw(); }),
    choices.binSizes.length ? select("bin", "Bin size", choices.binSizes, view.binSize, (v) => { view.binSize = v; redraw(); }) : null);
}

// ---- pages ----------------------------------------------------------------------------

function progress(s) {
  const total = Math.max(1, s.total);
  return h("span", { class: "bar", title: `${s.done} done, ${s.failed} failed of ${s.total}` },
    h("span", { style: `width:${(100 * s.done) / total}%` }),
    h("span", { class: "failed", style: `left:${(100 * s.done) / total}%;width:${(100 * s.failed) / total}%` }));
}
function eta(s) {
  const left = s.total - s.done - s.failed - s.cancelled_jobs;
  if (left <= 0) return "finished";
  if (!s.running || !s.mean_job_seconds) return "–";
  return duration((left * s.mean_job_seconds) / s.running);
}

async function sweepsPage(app) {
  const draw = async () => {
    const status = await getJson("/api/v1/sweeps");
    const rows = status.sweeps.map((s) => h("tr", {},
      h("td", {}, h("a", { href: `/sweeps/${s.sweep_id}` }, s.name || s.sweep_id.slice(0, 8))),
      h("td", {}, progress(s), ` ${s.done} / ${s.total}`),
      h("td", { class: "num" }, s.running), h("td", { class: "num" }, s.pending),
      h("td", { class: "num" }, s.failed), h("td", {}, eta(s)),
      h("td", { class: "muted" }, s.sweep_id)));
    put(app, h("h1", {}, "Sweeps"),
      status.store_problem ? h("p", { class: "error" }, "Store: " + status.store_problem) : null,
      rows.length ? h("table", { id: "sweeps" },
        h("thead", {}, h("tr", {}, ["sweep", "progress", "running", "pending", "failed", "ETA", "id"].map((c) => h("th", {}, c)))),
        h("tbody", {}, rows))
        : h("p", { class: "muted" }, "No sweeps yet: coordinator submit GRID.yaml"));
  };
  await draw();
  listen(null, debounce(draw, 300));
}

/// A sortable, filterable table of `items` with `columns` [{name, get, num}].
function sortableTable(id, columns, items, onRow, selected) {
  let sortBy = null, up = true, filter = "";
  const body = h("tbody");
  const heads = columns.map((c, i) => h("th", { class: c.num ? "num" : null, onclick: () => {
    up = sortBy === i ? !up : true; sortBy = i; render();
  } }, c.name));
  const render = () => {
    heads.forEach((th, i) => { th.className = (columns[i].num ? "num " : "") + (sortBy === i ? "sorted" + (up ? " up" : "") : ""); });
    let shown = items.filter((it) => !filter || columns.some((c) => String(c.get(it)).toLowerCase().includes(filter)));
    if (sortBy !== null) {
      const get = columns[sortBy].get;
      shown = [...shown].sort((a, b) => {
        const x = get(a), y = get(b);
        const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
        return up ? order : -order;
      });
    }
    put(body, ...shown.map((it) => h("tr", { class: "clickable" + (selected && selected(it) ? " selected" : ""), "data-job": it.job_id, onclick: () => onRow && onRow(it) },
      columns.map((c) => h("td", { class: c.num ? "num" : (c.cls ? c.cls(it) : null) }, c.show ? c.show(it) : c.get(it))))));
  };
  render();
  const search = h("input", { type: "search", placeholder: "filter jobs", oninput: (e) => { filter = e.target.value.toLowerCase(); render(); } });
  return { element: h("div", {}, search, h("table", { id }, h("thead", {}, h("tr", {}, heads)), body)), render };
}

async function allJobs(sweepId) {
  let jobs = [], from = 0;
  for (;;) {
    const page = await getJson(`/api/v1/sweeps/${sweepId}/jobs?from=${from}&limit=10000`);
    jobs = jobs.concat(page.jobs);
    if (page.next === null) return jobs;
    from = page.next;
  }
}

async function sweepPage(app, sweepId) {
  const header = h("div"), comparison = h("div"), tableBox = h("div"), jobBox = h("div", { id: "job-panel" });
  put(app, header, h("h2", {}, "Job"), jobBox, h("h2", {}, "Jobs"), tableBox, h("h2", {}, "Comparison"), comparison);
  const view = { split: "test", estimator: "binning", binSize: null, by: "width" };
  let selectedJob = new URLSearchParams(location.search).get("job");
  let jobs = [];

  const drawHeader = async () => {
    const s = await getJson(`/api/v1/sweeps/${sweepId}`);
    put(header, h("h1", {}, s.name || sweepId),
      h("p", {}, progress(s), ` ${s.done} of ${s.total} done, ${s.running} running, ${s.pending} pending, ${s.failed} failed · ETA ${eta(s)}`),
      s.failures.length ? h("details", {}, h("summary", { class: "error" }, `${s.failures.length} failed jobs`),
        h("ul", { class: "plain" }, s.failures.map((f) => h("li", {}, h("a", { href: `/jobs/${f.job_id}` }, f.job_id.slice(0, 8)), " ", f.params, ": ", f.reasons.join("; "))))) : null);
  };
  const drawTable = async () => {
    jobs = await allJobs(sweepId);
    if (!selectedJob) {
      const pick = jobs.find((j) => j.state === "running") || jobs.find((j) => j.state === "done");
      selectedJob = pick ? pick.job_id : null;
    }
    const columns = [
      { name: "job", get: (j) => j.job_id.slice(0, 8), show: (j) => h("a", { href: `/jobs/${j.job_id}` }, j.job_id.slice(0, 8)) },
      ...AXES.map((a) => ({ name: a, get: (j) => j.spec[a], num: typeof jobs[0]?.spec[a] === "number" })),
      { name: "seed", get: (j) => j.spec.seed, num: true },
      { name: "state", get: (j) => j.state, cls: (j) => "state-" + j.state },
      { name: "attempts", get: (j) => j.attempts.length, num: true },
      { name: "epoch", get: (j) => (j.state === "done" ? j.spec.epochs : j.epoch_reached ?? 0), num: true },
      { name: "checkpoint", get: (j) => j.checkpoint_epoch ?? "", num: true },
    ];
    const table = sortableTable("jobs", columns, jobs, (j) => { selectedJob = j.job_id; table.render(); drawJobPanel(); }, (j) => j.job_id === selectedJob);
    put(tableBox, table.element);
  };
  const drawJobPanel = async () => {
    if (!selectedJob) { put(jobBox, h("p", { class: "muted" }, "No job has started yet.")); return; }
    const { rows, provisional } = await getRows(`/api/v1/jobs/${selectedJob}/results.jsonl`);
    const job = jobs.find((j) => j.job_id === selectedJob);
    const charts = h("div");
    const redraw = () => drawJob(charts, rows, view);
    put(jobBox,
      h("p", {}, h("a", { href: `/jobs/${selectedJob}` }, selectedJob.slice(0, 8)), " ",
        job ? AXES.map((a) => `${a} ${job.spec[a] || "–"}`).join(", ") : "", " ",
        provisional ? h("span", { class: "badge", title: "measured so far; results once the job is done" }, "provisional") : null),
      rows.length ? viewControls(choicesOf(rows), view, redraw) : null, charts);
    redraw();
  };
  const drawComparison = async () => {
    const q = new URLSearchParams({ by: view.by, split: view.split, estimator: view.estimator });
    if (view.binSize !== null && view.binSize !== undefined) q.set("bin_size", view.binSize);
    const agg = await getJson(`/api/v1/sweeps/${sweepId}/aggregate?${q}`);
    const layers = [...new Map(agg.series.map((s) => [s.layer, s.layer_name])).entries()].sort((a, b) => a[0] - b[0]);
    const controls = h("div", { class: "controls" },
      select("by", "Compare by", AXES, view.by, (v) => { view.by = v; drawComparison(); }),
      h("span", { class: "muted" }, `means over ${agg.jobs} finished jobs (${agg.split}, ${agg.estimator}${agg.bin_size ? ", bin " + agg.bin_size : ""})`));
    const charts = layers.map(([layer, name]) => {
      const of = agg.series.filter((s) => s.layer === layer);
      return h("div", {}, h("h3", {}, `Layer ${layer} ${name}`), h("div", { class: "charts" },
        planeChart("Information plane", of.map((s) => ({ label: `${agg.by} ${s.value}`, xs: s.i_xt, ys: s.i_yt })), 380),
        pathChart("I(X;T)", "bits", of.map((s) => ({ label: `${agg.by} ${s.value}`, xs: s.epochs, ys: s.i_xt })), 380),
        pathChart("I(Y;T)", "bits", of.map((s) => ({ label: `${agg.by} ${s.value}`, xs: s.epochs, ys: s.i_yt })), 380)));
    });
    put(comparison, controls, charts.length ? h("div", {}, charts) : h("p", { class: "muted" }, "No finished job yet."));
  };

  await drawHeader();
  await drawTable();
  await drawJobPanel();
  drawComparison().catch(showError);
  const refreshJob = debounce(() => drawJobPanel().catch(showError), 150);
  const refreshAll = debounce(() => Promise.all([drawHeader(), drawTable()]).then(drawJobPanel).catch(showError), 400);
  const refreshComparison = debounce(() => drawComparison().catch(showError), 2000);
  listen(sweepId, (e) => {
    if (e.kind === "measured" && e.job_id === selectedJob) refreshJob();
    if (e.kind === "job" || e.kind === "sweep" || e.kind === "lagged") refreshAll();
    if ((e.kind === "job" && e.state === "done") || e.kind === "lagged") refreshComparison();
  });
}

async function jobPage(app, jobId) {
  const view = { split: "test", estimator: "binning", binSize: null };
  const draw = async () => {
    const job = await getJson(`/api/v1/jobs/${jobId}`);
    const { rows, provisional } = await getRows(`/api/v1/jobs/${jobId}/results.jsonl`);
    const charts = h("div", { id: "job-panel" });
    const redraw = () => drawJob(charts, rows, view);
    put(app,
      h("h1", {}, `Job ${jobId.slice(0, 8)} `, provisional ? h("span", { class: "badge" }, "provisional") : null),
      h("p", {}, h("a", { href: `/sweeps/${job.sweep_id}?job=${jobId}` }, "sweep"), " · ",
        h("span", { class: "state-" + job.state }, job.state), " · ",
        Object.entries(job.spec).map(([k, v]) => `${k} ${v === "" ? "–" : v}`).join(", ")),
      rows.length ? viewControls(choicesOf(rows), view, redraw) : null, charts,
      h("h2", {}, "Attempts"),
      job.attempts.length ? h("table", { id: "attempts" }, h("thead", {}, h("tr", {}, ["#", "worker", "from epoch", "to epoch", "ended", "counted"].map((c) => h("th", {}, c)))),
        h("tbody", {}, job.attempts.map((a) => h("tr", {}, h("td", {}, a.attempt), h("td", {}, a.worker), h("td", { class: "num" }, a.start_epoch),
          h("td", { class: "num" }, a.end_epoch ?? "–"), h("td", {}, a.ended || "running"), h("td", {}, a.counted ? "yes" : "no")))))
        : h("p", { class: "muted" }, "Not started."),
      h("h2", {}, "Checkpoint"),
      h("p", {}, job.checkpoint_epoch === null ? "none" : `epoch ${job.checkpoint_epoch}`));
    redraw();
    return job;
  };
  const job = await draw();
  const refresh = debounce(() => draw().catch(showError), 150);
  listen(job.sweep_id, (e) => { if (e.job_id === jobId || e.kind === "lagged") refresh(); });
}

async function workersPage(app) {
  const draw = async () => {
    const workers = await getJson("/api/v1/workers");
    put(app, h("h1", {}, "Workers"),
      workers.length ? h("table", { id: "workers" },
        h("thead", {}, h("tr", {}, ["name", "threads", "job", "epoch", "last seen"].map((c) => h("th", {}, c)))),
        h("tbody", {}, workers.map((w) => h("tr", {}, h("td", {}, w.name), h("td", { class: "num" }, w.threads ?? "–"),
          h("td", {}, w.job_id ? h("a", { href: `/jobs/${w.job_id}` }, w.job_id.slice(0, 8)) : "idle"),
          h("td", { class: "num" }, w.job_id ? w.epoch : "–"), h("td", {}, ago(w.last_seen_ms))))))
        : h("p", { class: "muted" }, "No worker attached: worker --coordinator URL"));
  };
  await draw();
  listen(null, debounce(draw, 500));
  setInterval(() => draw().catch(showError), 10000);
}

function showError(e) {
  if (String(e.message).includes("not logged in")) return;
  const app = document.getElementById("app");
  app.prepend(h("p", { class: "error" }, String(e.message)));
}

async function route() {
  const app = document.getElementById("app");
  const path = location.pathname.replace(/\/+$/, "");
  let m;
  try {
    if (path === "" || path === "/sweeps") await sweepsPage(app);
    else if ((m = path.match(/^\/sweeps\/([0-9a-f-]{36})$/))) await sweepPage(app, m[1]);
    else if ((m = path.match(/^\/jobs\/([0-9a-f-]{36})$/))) await jobPage(app, m[1]);
    else if (path === "/workers") await workersPage(app);
    else put(app, h("p", { class: "error" }, `No page at ${path}.`));
  } catch (e) {
    showError(e);
  }
}

route();

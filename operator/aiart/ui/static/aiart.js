// aiart's dashboard: the little the pages do in the browser. Every call goes
// to the REST API (/api/v1) with the sign-in cookie; a change carries the
// header that lets the API take the cookie for it (auth/access.py).
"use strict";

const UI_HEADER = document.body.dataset.uiHeader;

function toLogin(message) {
  const next = location.pathname + location.search;
  location.assign(`/ui/login?next=${encodeURIComponent(next)}&message=${encodeURIComponent(message)}`);
}

// fetch() to the API: JSON back, and a revoked key back to the sign-in page.
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if ((options.method || "GET") !== "GET") headers[UI_HEADER] = "1";
  const response = await fetch(path, Object.assign({}, options, {headers, credentials: "same-origin"}));
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch (e) { body = {error: text}; }
  if (response.status === 401) {
    toLogin(body.error || "sign in again");
    throw new Error(body.error);
  }
  return {status: response.status, ok: response.ok, body};
}

function problemText(body) {
  const problems = (body.problems || []).map((p) => `\n- ${p}`).join("");
  return `${body.error || "failed"}${problems}`;
}

function say(id, text, bad) {
  const element = document.getElementById(id);
  if (!element) return;
  element.textContent = text;
  element.className = bad ? "problem" : "";
}

// The models table's filter: rows whose text holds every word typed.
function setUpFilter() {
  const input = document.querySelector("[data-filter]");
  if (!input) return;
  const rows = document.querySelectorAll(`#${input.dataset.filter} tbody tr[data-model]`);
  input.addEventListener("input", () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const row of rows) {
      const text = row.textContent.toLowerCase();
      row.hidden = !words.every((w) => text.includes(w));
    }
  });
}

function setUpDeploy() {
  const form = document.getElementById("deploy");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    say("outcome", "Uploading…");
    try {
      const answer = await api(form.dataset.action, {method: "POST", body: new FormData(form)});
      if (answer.status === 202) {
        location.assign(`/ui/models/${encodeURIComponent(answer.body.name)}`);
        return;
      }
      say("outcome", problemText(answer.body), true);
    } finally {
      button.disabled = false;
    }
  });
}

// A model package's file, sent whole as the body (POST /api/v1/packages).
function setUpImport() {
  const form = document.getElementById("import");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    say("import-outcome", "Uploading and checking…");
    try {
      const file = form.querySelector("input[type=file]").files[0];
      // Only an admin's page has the box, and the API checks the role again.
      const unsigned = form.querySelector("#allow-unsigned");
      const action = unsigned && unsigned.checked
        ? `${form.dataset.action}?allowUnsigned=true` : form.dataset.action;
      const answer = await api(action, {
        method: "POST", body: file, headers: {"Content-Type": "application/x-tar"}});
      if (answer.status === 201 || answer.status === 200) {
        location.assign(`/ui/models/${encodeURIComponent(answer.body.name)}`);
        return;
      }
      say("import-outcome", problemText(answer.body), true);
    } finally {
      button.disabled = false;
    }
  });
}

function setUpRunUpload() {
  const form = document.getElementById("run-upload");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say("run-outcome", "Uploading…");
    const answer = await api(form.dataset.action, {method: "POST", body: new FormData(form)});
    if (answer.status === 201) { location.assign(`${location.pathname}?prefix=runs/`); return; }
    say("run-outcome", problemText(answer.body), true);
  });
}

// A model's page: its versions' states as they change, without reloading.
function watchVersions(model) {
  const rows = new Map([...document.querySelectorAll("#versions tr[data-version]")]
    .map((row) => [row.dataset.version, row]));
  async function poll() {
    const answer = await api(`/api/v1/models/${model}`);
    if (answer.status === 404) { location.assign("/ui/"); return; }
    if (!answer.ok) return;
    const versions = answer.body.versions;
    if (versions.length !== rows.size || versions.some((v) => !rows.has(v.version))) {
      location.reload();  // a version came or went: the page anew
      return;
    }
    const status = document.getElementById("model-status");
    status.textContent = answer.body.status;
    status.className = `status s-${answer.body.status.toLowerCase()}`;
    for (const v of versions) {
      const row = rows.get(v.version);
      const fields = {status: v.status, message: v.message, replicas: v.replicas,
                      image: v.image, scale: v.scale ? v.scale.status : "",
                      alerts: v.alerts.join(", ")};
      for (const [name, value] of Object.entries(fields)) {
        const cell = row.querySelector(`[data-field="${name}"]`);
        if (cell && cell.textContent !== value) cell.textContent = value;
      }
      row.querySelector('[data-field="status"]').className = `status s-${v.status.toLowerCase()}`;
    }
  }
  setInterval(() => poll().catch(() => {}), 2000);
}

function setUpRemove(model) {
  for (const button of document.querySelectorAll("[data-remove]")) {
    button.addEventListener("click", async () => {
      const version = button.dataset.remove;
      if (!confirm(`Remove ${model} version ${version}? Its service and routes go.`)) return;
      const answer = await api(`/api/v1/models/${model}/versions/${encodeURIComponent(version)}`,
                               {method: "DELETE"});
      if (!answer.ok) { say("outcome", problemText(answer.body), true); return; }
      const left = document.querySelectorAll("#versions tr[data-version]").length - 1;
      location.assign(left > 0 ? location.pathname : "/ui/");
    });
  }
}

const charts = {};

function lineChart(id, datasets, labels) {
  if (typeof Chart === "undefined") return;
  if (charts[id]) {
    charts[id].data.labels = labels;
    charts[id].data.datasets.forEach((set, i) => { set.data = datasets[i].data; });
    charts[id].update("none");
    return;
  }
  charts[id] = new Chart(document.getElementById(id), {
    type: "line",
    data: {labels, datasets},
    options: {animation: false, responsive: true, maintainAspectRatio: false,
              spanGaps: false, elements: {point: {radius: 2}},
              scales: {y: {beginAtZero: true}, x: {ticks: {maxTicksLimit: 8}}}},
  });
}

function watchCharts(model) {
  async function draw() {
    const answer = await api(`/api/v1/models/${model}/metrics?minutes=60`);
    if (!answer.ok) { say("chart-caption", answer.body.error || "no figures", true); return; }
    // The whole span on the time axis, with gaps where nothing was counted
    // (a model deployed minutes ago has a few points at its right end).
    const {series, start, end, step} = answer.body;
    const times = [];
    for (let t = start; t <= end + 0.001; t += step) times.push(Math.round(t));
    const labels = times.map((t) => new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}));
    const values = (name, scale = 1) => {
      const known = new Map((series[name] || []).map(([t, v]) => [Math.round(t), v]));
      return times.map((t) => (known.has(t) && known.get(t) !== null ? known.get(t) * scale : null));
    };
    document.getElementById("total").textContent = answer.body.total;
    lineChart("rate-chart", [
      {label: "requests/s", data: values("requests"), borderColor: "#0b5cad"},
      {label: "server errors/s", data: values("errors"), borderColor: "#a3231b"},
    ], labels);
    lineChart("latency-chart", [
      {label: "p50", data: values("p50", 1000), borderColor: "#176b2c"},
      {label: "p99", data: values("p99", 1000), borderColor: "#8a5a00"},
    ], labels);
  }
  draw().catch(() => {});
  setInterval(() => draw().catch(() => {}), 10000);
}

// The playground's first request: one row of zeros shaped as the model's
// metadata says (a variable dimension taken as 1).
function exampleRequest(metadata) {
  const inputs = (metadata.inputs || []).map((input) => {
    const shape = (input.shape || [1]).map((d) => (d < 0 ? 1 : d));
    const size = shape.reduce((a, b) => a * b, 1);
    const zero = input.datatype === "BYTES" ? "" : (input.datatype === "BOOL" ? false : 0);
    return {name: input.name, datatype: input.datatype, shape, data: Array(size).fill(zero)};
  });
  return JSON.stringify({inputs}, null, 2);
}

function setUpPlayground(model) {
  const form = document.getElementById("playground");
  if (!form) return;
  const request = document.getElementById("request");
  // Until the model answers its metadata (a model just deployed has no
  // route yet): asked again every three seconds.
  async function build() {
    const answer = await api(`/api/v1/models/${model}/metadata`);
    if (answer.ok) {
      if (!request.value) request.value = exampleRequest(answer.body);
      say("answer-status", "");
      return;
    }
    say("answer-status", `no metadata yet (${answer.status}): ${answer.body.error || ""}`);
    setTimeout(() => build().catch(() => {}), 3000);
  }
  build().catch(() => {});
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say("answer-status", "Sending…");
    const answer = await api(`/api/v1/models/${model}/infer`, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: request.value});
    say("answer-status", `${answer.status} ${answer.ok ? "answered" : "refused"}`, !answer.ok);
    document.getElementById("answer").textContent = JSON.stringify(answer.body, null, 2);
  });
}

function watchLogs(model) {
  const pre = document.getElementById("logs");
  async function read() {
    const answer = await api(`/api/v1/models/${model}/logs?tail=40`);
    pre.textContent = answer.ok ? answer.body.lines.join("\n") : (answer.body.error || "");
  }
  read().catch(() => {});
  setInterval(() => read().catch(() => {}), 5000);
}

function setUpImageRemove(model) {
  for (const button of document.querySelectorAll("[data-remove-image]")) {
    button.addEventListener("click", async () => {
      const digest = button.dataset.removeImage;
      if (!confirm(`Remove the image ${digest} of ${model} from the registry?`)) return;
      const answer = await api(`/api/v1/models/${model}/images/${encodeURIComponent(digest)}`,
                               {method: "DELETE"});
      if (!answer.ok) { say("image-outcome", problemText(answer.body), true); return; }
      button.closest("tr").remove();
      say("image-outcome", `Image ${digest} removed.`);
    });
  }
}

// A model's events (the catalog's), newest first, read again every 5 s.
function watchEvents(model) {
  const body = document.querySelector("#events tbody");
  if (!body) return;
  async function read() {
    const answer = await api(`/api/v1/models/${model}/events`);
    if (!answer.ok) return;
    const rows = answer.body.events.slice(0, 30).map((e) => {
      const row = document.createElement("tr");
      const when = document.createElement("time");
      when.dateTime = e.at;
      when.textContent = e.at.slice(0, 19).replace("T", " ");
      const cells = [when, e.version, e.status, e.message].map((value) => {
        const cell = document.createElement("td");
        if (typeof value === "string") cell.textContent = value; else cell.append(value);
        return cell;
      });
      cells[3].className = "message";
      row.append(...cells);
      return row;
    });
    body.replaceChildren(...rows);
  }
  setInterval(() => read().catch(() => {}), 5000);
}

// The API keys page (admins): make a key, shown once; revoke one.
function setUpKeys() {
  const form = document.getElementById("key-create");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const models = String(data.get("models") || "").split(",").map((m) => m.trim()).filter(Boolean);
    say("key-outcome", "Making the key…");
    const answer = await api(form.dataset.action, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({name: data.get("name"), role: data.get("role"), models})});
    if (answer.status !== 201) { say("key-outcome", problemText(answer.body), true); return; }
    const k = answer.body;
    say("key-outcome", `Key ${k.name} (${k.id}) made: role ${k.role}, models ${k.models.join(", ")}.`);
    document.getElementById("new-key").textContent = k.key;
    document.getElementById("key-shown").hidden = false;
    form.reset();
  });
  for (const button of document.querySelectorAll("[data-revoke]")) {
    button.addEventListener("click", async () => {
      const {revoke, name} = button.dataset;
      if (!confirm(`Revoke the key ${name}? Whoever holds it is refused from now on.`)) return;
      const answer = await api(`/api/v1/keys/${encodeURIComponent(revoke)}`, {method: "DELETE"});
      if (!answer.ok) { say("key-outcome", problemText(answer.body), true); return; }
      button.closest("tr").remove();
      say("key-outcome", `Key ${name} (${revoke}) revoked.`);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpFilter();
  setUpDeploy();
  setUpImport();
  setUpKeys();
  const page = document.getElementById("model");
  if (page) {
    const model = page.dataset.model;
    watchVersions(model);
    setUpRemove(model);
    watchCharts(model);
    setUpPlayground(model);
    watchLogs(model);
    watchEvents(model);
    setUpImageRemove(model);
    setUpRunUpload();
  }
});

// semilab-agent status page: one snapshot per second over server-sent events (/api/v1/events),
// rendered without a framework. Nanosecond timestamps arrive as strings (beyond 2^53).
'use strict';

const $ = (id) => document.getElementById(id);
const cards = new Map();   // instrument id -> {el, selected channel}
let token = sessionStorage.getItem('semilab-token') || '';
let txInstrument = null;

function nsToDate(ns) { return ns && ns !== '0' ? new Date(Number(BigInt(ns) / 1000000n)) : null; }
function timeText(ns) { const d = nsToDate(ns); return d ? d.toLocaleTimeString() : 'never'; }
function ageText(s) {
  if (s < 120) return s.toFixed(0) + ' s';
  if (s < 7200) return (s / 60).toFixed(1) + ' min';
  if (s < 172800) return (s / 3600).toFixed(1) + ' h';
  return (s / 86400).toFixed(1) + ' d';
}
function bytesText(b) {
  if (b == null) return '–';
  if (b < 1024) return b + ' B';
  if (b < 1048576) return (b / 1024).toFixed(1) + ' KiB';
  if (b < 1073741824) return (b / 1048576).toFixed(1) + ' MiB';
  return (b / 1073741824).toFixed(2) + ' GiB';
}
function setText(id, v) { const e = $(id); if (e.textContent !== String(v)) e.textContent = v; }
const STATES = /\b(ok|degraded|failed|paused|queued|running|waiting|completed|aborted)\b/g;
function setState(el, state) { el.className = el.className.replace(STATES, '').replace(/\s+/g, ' ').trim() + ' ' + state; el.textContent = state; }

function reasonItems(ul, reasons, prefix) {
  ul.replaceChildren(...reasons.map((r) => {
    const li = document.createElement('li');
    li.className = r.level;
    li.dataset.code = r.code;
    li.textContent = (prefix || '') + r.text;
    return li;
  }));
}

function card(ins) {
  let c = cards.get(ins.id);
  if (!c) {
    const el = $('card-tpl').content.firstElementChild.cloneNode(true);
    el.dataset.instrument = ins.id;
    el.querySelector('.iid').textContent = ins.id;
    el.querySelector('.tx').addEventListener('click', () => showTransactions(ins.id));
    el.querySelector('.reconnect').addEventListener('click', () => reconnect(ins.id));
    $('instruments').appendChild(el);
    c = { el, selected: null };
    cards.set(ins.id, c);
  }
  return c;
}

function renderInstrument(ins, health) {
  const c = card(ins);
  const el = c.el;
  const h = health || { state: 'ok', reasons: [] };
  setState(el.querySelector('.state'), h.state);
  el.querySelector('.model').textContent = ins.model + ' · ' + ins.resource + (ins.idn ? ' · ' + ins.idn : '');
  const tbody = el.querySelector('.values tbody');
  const chans = ins.channels || [];
  if (!c.selected && chans.length) c.selected = chans[0].channel;
  const rows = chans.map((ch) => {
    const tr = document.createElement('tr');
    tr.dataset.channel = ch.channel;
    if (ch.channel === c.selected) tr.className = 'sel';
    const name = document.createElement('td');
    name.textContent = ch.channel;
    const val = document.createElement('td');
    val.className = 'value';
    val.dataset.channel = ch.channel;
    val.dataset.ts = ch.ts_ns;
    val.textContent = ch.value;
    const unit = document.createElement('td');
    unit.textContent = ch.unit + ((ch.quality & 1) ? ' ⚠ compliance' : '');
    tr.append(name, val, unit);
    tr.addEventListener('click', () => { c.selected = ch.channel; });
    return tr;
  });
  tbody.replaceChildren(...rows);
  const sel = chans.find((ch) => ch.channel === c.selected);
  plot(el.querySelector('.plot'), sel ? sel.points : [], sel ? sel.channel + ' [' + sel.unit + ']' : '');
  const bits = [
    ins.connected ? 'answering' : 'NOT ANSWERING',
    'readings ' + ins.readings,
    'errors ' + ins.errors,
    'last good ' + timeText(ins.last_good_ns),
  ];
  if (ins.latency_p50_ms != null) bits.push('p50 ' + ins.latency_p50_ms.toFixed(2) + ' ms · p99 ' + ins.latency_p99_ms.toFixed(2) + ' ms');
  if (ins.compliance_hits) bits.push('compliance ' + ins.compliance_hits);
  if (ins.error_queue_entries) bits.push('error queue ' + ins.error_queue_entries);
  if (ins.calibration_due) bits.push('calibration due ' + ins.calibration_due);
  if (ins.finished) bits.push('finished');
  if (ins.paused) bits.push('paused');
  if (ins.run_id) bits.push('in run ' + ins.run_id);
  el.querySelector('.stats').textContent = bits.join(' · ');
  reasonItems(el.querySelector('.ireasons'), h.reasons);
  el.querySelector('.tx').hidden = !ins.supports_transactions;
  el.querySelector('.reconnect').hidden = !ins.supports_transactions;
}

// Line plot of [seconds before now, value] points on a canvas, autoscaled.
function plot(canvas, pts, label) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300, hgt = canvas.clientHeight || 140;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(hgt * dpr); }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, hgt);
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = '#5f6670';
  if (!pts.length) { g.fillText('no values yet', 8, 16); return; }
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
  if (hi === lo) { const d = Math.abs(hi) * 0.01 || 1; hi += d; lo -= d; }
  const t0 = Math.min(pts[0][0], -1), pad = 6, top = 18, bottom = hgt - 14;
  const x = (t) => pad + (w - 2 * pad) * (t - t0) / (0 - t0);
  const y = (v) => bottom - (bottom - top) * (v - lo) / (hi - lo);
  g.strokeStyle = '#dde0e4';
  g.beginPath(); g.moveTo(pad, top); g.lineTo(pad, bottom); g.lineTo(w - pad, bottom); g.stroke();
  g.strokeStyle = '#1f5fbf';
  g.lineWidth = 1.5;
  g.beginPath();
  pts.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
  g.stroke();
  g.fillText(label + '  max ' + hi.toPrecision(6), 8, 12);
  g.fillText('min ' + lo.toPrecision(6) + '   ' + (-t0).toFixed(0) + ' s', 8, hgt - 2);
}

function render(s) {
  setText('agent', s.agent_id);
  setText('site', 'site ' + s.site);
  setText('updated', timeText(s.written_ns));
  $('updated').dataset.ns = s.written_ns;
  const health = s.health || { state: 'ok', reasons: [], instruments: [] };
  setState($('health'), health.state);
  const ownReasons = health.reasons || [];
  $('reasons-box').hidden = ownReasons.length === 0;
  reasonItems($('reasons'), ownReasons);
  const byId = new Map((health.instruments || []).map((h) => [h.id, h]));
  for (const ins of s.instruments || []) renderInstrument(ins, byId.get(ins.id));

  const o = s.outbox, k = s.counters, y = s.sync;
  setText('outbox-records', o.records);
  setText('outbox-bytes', bytesText(o.bytes));
  setText('outbox-oldest', o.records ? ageText(o.oldest_age_s) : '–');
  const used = o.quota_bytes ? o.bytes / o.quota_bytes : 0;
  setText('outbox-quota', o.quota_bytes ? (100 * used).toFixed(1) + ' %' : 'no quota');
  const bar = $('quota-bar');
  bar.style.width = Math.min(100, 100 * used).toFixed(1) + '%';
  bar.style.background = used > 0.95 ? 'var(--failed)' : used > 0.8 ? 'var(--degraded)' : 'var(--ok)';
  setText('produced', k.produced);
  setText('acked', k.acked);
  setText('dropped', k.dropped);
  setText('refused', k.refused ?? 0);
  setText('dead-letters', k.dead_letters);
  setText('broker', s.broker.connected ? 'connected' : 'DISCONNECTED');
  setText('central', y.central_online ? 'online' : 'offline');
  setText('last-ack', timeText(y.last_ack_ns));
  setText('upload-rate', bytesText(y.upload_bytes_per_s) + '/s' + (y.cap_bytes_per_s ? ' of ' + bytesText(y.cap_bytes_per_s) + '/s' : ''));
  setText('inflight', y.inflight_batches);
  setText('acks-refused', y.acks_refused ?? 0);
  renderRuns(s.runs || []);
  setText('disk-free', bytesText(s.host.disk_free_bytes));
  setText('clock', (s.clock_synced === false ? 'not synchronised' : s.clock_synced ? 'synchronised' : 'unknown') + (s.clock_steps ? ', ' + s.clock_steps + ' steps' : ''));

  $('events').replaceChildren(...(s.events || []).slice(0, 50).map((e) => {
    const li = document.createElement('li');
    li.className = e.level;
    const t = document.createElement('time');
    t.textContent = timeText(e.ts_ns);
    li.append(t, e.source + ': ' + e.text);
    return li;
  }));
  if (txInstrument) showTransactions(txInstrument, true);
}

// Runs in progress (queued, running, waiting) and the last few finished: a progress bar over
// every repeat's points, the operator prompt with its confirm button, abort.
const runEls = new Map();  // run id -> li
function renderRuns(runs) {
  $('runs-box').hidden = runs.length === 0;
  const seen = new Set();
  const items = runs.map((r) => {
    seen.add(r.run_id);
    let li = runEls.get(r.run_id);
    if (!li) {
      li = $('run-tpl').content.firstElementChild.cloneNode(true);
      li.dataset.run = r.run_id;
      li.querySelector('.confirm').addEventListener('click', () => runAction(li.dataset.run, 'confirm', Number(li.dataset.promptSeq)));
      li.querySelector('.abort').addEventListener('click', () => runAction(li.dataset.run, 'abort'));
      runEls.set(r.run_id, li);
    }
    const done = ['completed', 'aborted', 'failed'].includes(r.state);
    li.className = 'run ' + r.state + (done ? ' finished' : '');
    li.dataset.state = r.state;
    li.dataset.step = r.step;
    li.dataset.steps = r.steps;
    li.dataset.promptSeq = r.prompt_seq || 0;
    li.querySelector('.run-title').textContent = r.recipe + (r.sample ? ' · ' + r.sample : '');
    setState(li.querySelector('.run-state'), r.state);
    li.querySelector('.run-sub').textContent = r.method + ' · ' + r.run_id + ' · ' + (r.instruments || []).join(', ');
    const pct = r.steps ? Math.min(100, 100 * r.step / r.steps) : (r.state === 'completed' ? 100 : 0);
    const bar = li.querySelector('.progress');
    bar.firstElementChild.style.width = pct.toFixed(1) + '%';
    bar.setAttribute('aria-valuenow', pct.toFixed(0));
    let text = r.step + ' of ' + r.steps + ' points (' + pct.toFixed(0) + ' %)';
    if (r.repeats > 1) text += ' · repeat ' + Math.max(1, r.repeat) + ' of ' + r.repeats;
    if (done && r.reason) text += ' · ' + r.reason;
    if (r.state === 'completed' && r.pass === false) text += ' · outside the recipe limits';
    li.querySelector('.run-progress').textContent = text;
    const waiting = r.state === 'waiting' && r.prompt;
    const pr = li.querySelector('.run-prompt');
    pr.hidden = !waiting;
    pr.textContent = waiting ? 'Operator: ' + r.prompt : '';
    li.querySelector('.confirm').hidden = !waiting;
    li.querySelector('.abort').hidden = done;
    return li;
  });
  for (const id of [...runEls.keys()]) if (!seen.has(id)) runEls.delete(id);
  const ul = $('runs');
  if (items.length !== ul.children.length || items.some((li, i) => ul.children[i] !== li)) ul.replaceChildren(...items);
}

async function runAction(id, what, seq) {
  try {
    const body = what === 'confirm' && seq ? { prompt: seq } : {};
    const r = await fetch('/api/v1/runs/' + encodeURIComponent(id) + '/' + what, {
      method: 'POST', credentials: 'same-origin',
      headers: Object.assign({ 'Content-Type': 'application/json' }, actionHeaders()),
      body: JSON.stringify(body),
    });
    const j = await r.json();
    const msg = r.ok ? what + ' ' + id + ': accepted' : what + ' ' + id + ' refused (' + r.status + '): ' + j.error;
    setText('action-result', msg);
    $('action-result').dataset.status = r.status;
  } catch (e) {
    setText('action-result', what + ' ' + id + ': ' + e);
  }
}

async function showTransactions(id, quiet) {
  txInstrument = id;
  $('tx-panel').hidden = false;
  setText('tx-instrument', id);
  try {
    const r = await fetch('/api/v1/instruments/' + encodeURIComponent(id) + '/transactions');
    const j = await r.json();
    $('tx-table').tBodies[0].replaceChildren(...(j.transactions || []).map((t) => {
      const tr = document.createElement('tr');
      const cells = [timeText(t.time_ns), t.command, t.bytes_out, t.bytes_in, (t.duration_us / 1000).toFixed(2), t.outcome];
      for (const v of cells) { const td = document.createElement('td'); td.textContent = v; tr.appendChild(td); }
      if (!t.ok) tr.lastChild.className = 'bad';
      return tr;
    }));
  } catch (e) {
    if (!quiet) setText('action-result', 'transactions: ' + e);
  }
}

// Credentials of an action: the bearer token when one is set in this tab, else the session
// cookie (sent by the browser) plus its CSRF token, which only this page knows.
let csrf = '';
function actionHeaders() {
  if (token) return { Authorization: 'Bearer ' + token };
  return csrf ? { 'X-CSRF-Token': csrf } : {};
}

function showSession(s) {
  csrf = s ? s.csrf : '';
  $('session-box').hidden = !s;
  $('login-form').hidden = !!s;
  setText('session-user', s ? s.user : '');
  setText('session-role', s ? s.role : '');
}

async function loadSession() {
  try {
    const r = await fetch('/api/v1/session', { credentials: 'same-origin' });
    showSession(r.ok ? await r.json() : null);
  } catch (e) { showSession(null); }
}

async function refreshAcquisition() {
  try {
    const r = await fetch('/api/v1/acquisition');
    if (r.ok) setText('acquisition', (await r.json()).acquisition);
  } catch (e) { /* the next status update retries */ }
}

async function agentAction(what, url) {
  try {
    const r = await fetch(url, { method: 'POST', headers: actionHeaders(), credentials: 'same-origin' });
    const j = await r.json();
    const msg = r.ok ? what + ': done by ' + j.by : what + ' refused (' + r.status + '): ' + j.error;
    setText('action-result', msg);
    $('action-result').dataset.status = r.status;
  } catch (e) {
    setText('action-result', what + ': ' + e);
  }
  refreshAcquisition();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const r = await fetch('/api/v1/login', {
      method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: $('login-user').value, password: $('login-password').value }),
    });
    const j = await r.json();
    $('login-password').value = '';
    if (r.ok) { showSession(j); setText('action-result', 'logged in as ' + j.user); }
    else setText('action-result', 'login refused (' + r.status + '): ' + j.error);
  } catch (e) {
    setText('action-result', 'login: ' + e);
  }
});
$('logout').addEventListener('click', async () => {
  try { await fetch('/api/v1/logout', { method: 'POST', credentials: 'same-origin' }); } catch (e) { /* gone anyway */ }
  showSession(null);
  setText('action-result', 'logged out');
});
$('pause').addEventListener('click', () => agentAction('pause', '/api/v1/acquisition/pause'));
$('resume').addEventListener('click', () => agentAction('resume', '/api/v1/acquisition/resume'));
$('flush').addEventListener('click', () => agentAction('flush', '/api/v1/outbox/flush'));

async function reconnect(id) {
  const headers = actionHeaders();
  try {
    const r = await fetch('/api/v1/instruments/' + encodeURIComponent(id) + '/reconnect', { method: 'POST', headers, credentials: 'same-origin' });
    const j = await r.json();
    const msg = r.ok ? 'reconnect ' + id + ': accepted' : 'reconnect ' + id + ' refused (' + r.status + '): ' + j.error;
    setText('action-result', msg);
    $('action-result').dataset.status = r.status;
  } catch (e) {
    setText('action-result', 'reconnect ' + id + ': ' + e);
  }
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token').value;
  sessionStorage.setItem('semilab-token', token);
  setText('action-result', token ? 'token set for this tab' : 'token cleared');
});
$('tx-close').addEventListener('click', () => { txInstrument = null; $('tx-panel').hidden = true; });

function connect() {
  const es = new EventSource('/api/v1/events');
  es.addEventListener('status', (ev) => {
    setText('live', 'live');
    try { render(JSON.parse(ev.data)); } catch (e) { console.error(e); }
  });
  es.onerror = () => setText('live', 'reconnecting…');  // EventSource retries by itself
}
connect();
loadSession();
refreshAcquisition();
setInterval(refreshAcquisition, 2000);

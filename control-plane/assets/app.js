// Ai-semble Ops web dashboard: a single page, vanilla JavaScript, no build step, no external
// resources. Everything it shows comes from the control plane's authenticated JSON API; the page
// itself holds no data. Routes are hashes (#/fleet, #/alerts, #/host/NAME, #/backups, #/logs);
// the current view polls every POLL_MS so new alerts and values appear without a reload.
'use strict';

(() => {
  const TOKEN_KEY = 'aisemble-token';
  const THEME_KEY = 'aisemble-theme';
  const AUTHOR_KEY = 'aisemble-silence-author';
  const POLL_MS = 3000;
  const SPARK_WINDOW_S = 30 * 60;
  const DETAIL_WINDOW_S = 60 * 60;

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

  /** HTML-escapes any value for interpolation into markup. */
  const esc = (value) => String(value ?? '').replace(/[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

  /** A string literal for PromQL label matchers. */
  const promString = (value) => '"' + String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';

  // ---------------------------------------------------------------------------------------------
  // API access. Every call sends the bearer token; a 401 anywhere returns to the login form.

  class AuthError extends Error {}

  /** Calls the API; resolves to {status, ok, body}. Throws AuthError on 401. */
  async function api(path, { method = 'GET', body } = {}) {
    const headers = { Authorization: 'Bearer ' + (localStorage.getItem(TOKEN_KEY) || '') };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let parsed = null;
    try { parsed = await response.json(); } catch (_) { parsed = null; }
    if (response.status === 401) {
      showLogin('The control plane refused the token (' + errorText(response.status, parsed) + '). Sign in again.');
      throw new AuthError('unauthorized');
    }
    return { status: response.status, ok: response.ok, body: parsed };
  }

  /** The message of an API error body: `{"error":{"message"}}` or Prometheus' `{"error":"…"}`. */
  function errorText(status, body) {
    const error = body && body.error;
    if (error && typeof error === 'object' && error.message) return error.message;
    if (typeof error === 'string') return error;
    return 'HTTP ' + status;
  }

  /** GET that must succeed; throws an Error with the API's message otherwise. */
  async function getJson(path) {
    const r = await api(path);
    if (!r.ok) throw new Error(path + ': ' + errorText(r.status, r.body));
    return r.body;
  }

  /** A range query over the last `windowS` seconds: [{metric, points: [[t_s, v], …]}]. */
  async function queryRange(query, windowS, steps = 120) {
    const end = Date.now() / 1000;
    const start = end - windowS;
    const step = Math.max(1, Math.round(windowS / steps));
    const params = new URLSearchParams({ query, start: start.toFixed(3), end: end.toFixed(3), step: String(step) });
    const body = await getJson('/api/v1/query_range?' + params);
    const result = (body && body.data && body.data.result) || [];
    return result.map((s) => ({
      metric: s.metric || {},
      points: (s.values || []).map(([t, v]) => [Number(t), Number(v)]).filter(([, v]) => Number.isFinite(v)),
    })).map((s) => Object.assign(s, { step, start, end }));
  }

  // ---------------------------------------------------------------------------------------------
  // Formatting.

  const pct = (v) => (v == null || !Number.isFinite(Number(v)) ? '–' : Number(v).toFixed(1) + '%');
  const num = (v, digits = 0) => (v == null ? '–' : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits }));

  function ago(ms) {
    if (!ms) return 'never';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 5) return 'just now';
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.round(s / 60) + 'm ago';
    if (s < 86400) return Math.round(s / 3600) + 'h ago';
    return Math.round(s / 86400) + 'd ago';
  }

  function duration(seconds) {
    if (seconds == null) return '–';
    const s = Math.round(seconds);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function bytes(n) {
    if (n == null) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = Number(n);
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return (i === 0 ? v : v.toFixed(1)) + ' ' + units[i];
  }

  const clock = (tSeconds) => new Date(tSeconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const sinceIso = (iso) => (iso ? ago(Date.parse(iso)) : '–');

  function formatValue(v, unit) {
    if (v == null || !Number.isFinite(v)) return '–';
    if (unit === '%') return v.toFixed(1) + '%';
    if (unit === 's') return v < 1 ? Math.round(v * 1000) + ' ms' : v.toFixed(2) + ' s';
    if (unit === 'ratio') return (v * 100).toFixed(1) + '%';
    return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
  }

  // ---------------------------------------------------------------------------------------------
  // Charts: small hand-written SVG. Points are [t_seconds, value]; a gap longer than two steps
  // breaks the line, so missing data is not drawn as a straight interpolation.

  function segments(points, step) {
    const out = [];
    let current = [];
    let last = null;
    for (const p of points) {
      if (last !== null && p[0] - last > step * 2.5) { out.push(current); current = []; }
      current.push(p);
      last = p[0];
    }
    if (current.length) out.push(current);
    return out;
  }

  /** A sparkline of one series over [start, end], scaled to [0, max]. */
  function sparkline(series, { max = 100, width = 90, height = 22, cls = 's0' } = {}) {
    const baseline = `<line class="grid" x1="0" y1="${height - 1}" x2="${width}" y2="${height - 1}"/>`;
    if (!series || !series.points.length) {
      return `<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" aria-hidden="true">${baseline}</svg>`;
    }
    const { start, end } = series;
    const top = Math.max(max, ...series.points.map((p) => p[1]));
    const x = (t) => ((t - start) / Math.max(1, end - start)) * width;
    const y = (v) => height - 1 - (Math.max(0, v) / (top || 1)) * (height - 2);
    if (series.points.length === 1) {
      // A host that just connected has one step of history: a dot, not an empty box.
      const [t, v] = series.points[0];
      return `<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" aria-hidden="true">${baseline}<circle class="${cls}" r="2" cx="${Math.min(width - 2, x(t)).toFixed(1)}" cy="${y(v).toFixed(1)}"/></svg>`;
    }
    const paths = segments(series.points, series.step).map((seg) => {
      const line = seg.map((p, i) => (i ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1)).join('');
      const area = line + `L${x(seg[seg.length - 1][0]).toFixed(1)} ${height}L${x(seg[0][0]).toFixed(1)} ${height}Z`;
      return `<path class="area ${cls}" d="${area}"/><path class="line ${cls}" d="${line}"/>`;
    }).join('');
    return `<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" aria-hidden="true">${paths}</svg>`;
  }

  /**
   * A line chart of several series with a y axis, time labels and a legend.
   * `unit` picks value formatting; `yMax` fixes the top (e.g. 100 for percentages).
   */
  function lineChart(seriesList, { title, unit = '', yMax = null, label = (m) => JSON.stringify(m), threshold = null }) {
    const W = 520; const H = 170; const L = 44; const R = 8; const T = 8; const B = 20;
    const all = seriesList.flatMap((s) => s.points);
    const head = `<h3>${esc(title)}</h3>`;
    if (!all.length) return `<div class="card chart">${head}<div class="nodata-note">No data in the last hour.</div></div>`;
    const { start, end, step } = seriesList[0];
    let top = yMax ?? Math.max(...all.map((p) => p[1]));
    if (yMax != null) top = Math.max(yMax, ...all.map((p) => p[1]));
    if (!(top > 0)) top = 1;
    const x = (t) => L + ((t - start) / Math.max(1, end - start)) * (W - L - R);
    const y = (v) => T + (1 - Math.max(0, v) / top) * (H - T - B);
    let grid = '';
    for (let i = 0; i <= 4; i += 1) {
      const v = (top * i) / 4;
      grid += `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`
        + `<text class="axis" x="${L - 4}" y="${(y(v) + 3).toFixed(1)}" text-anchor="end">${esc(formatValue(v, unit))}</text>`;
    }
    for (let i = 0; i <= 4; i += 1) {
      const t = start + ((end - start) * i) / 4;
      grid += `<text class="axis" x="${x(t).toFixed(1)}" y="${H - 5}" text-anchor="${i === 0 ? 'start' : i === 4 ? 'end' : 'middle'}">${esc(clock(t))}</text>`;
    }
    if (threshold != null && threshold <= top) {
      grid += `<line class="threshold" x1="${L}" x2="${W - R}" y1="${y(threshold).toFixed(1)}" y2="${y(threshold).toFixed(1)}"/>`;
    }
    const lines = seriesList.slice(0, 6).map((s, i) => segments(s.points, step).map((seg) => {
      const d = seg.map((p, j) => (j ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1)).join('');
      return seg.length === 1
        ? `<circle class="s${i}" r="2" cx="${x(seg[0][0]).toFixed(1)}" cy="${y(seg[0][1]).toFixed(1)}"/>`
        : `<path class="line s${i}" d="${d}"/>`;
    }).join('')).join('');
    const legend = seriesList.slice(0, 6).map((s, i) => {
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      return `<span><i class="s${i}"></i>${esc(label(s.metric))} <b>${esc(formatValue(last, unit))}</b></span>`;
    }).join('') + (seriesList.length > 6 ? `<span>+${seriesList.length - 6} more</span>` : '');
    return `<div class="card chart">${head}<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${grid}${lines}</svg><div class="legend">${legend}</div></div>`;
  }

  /** Up/down strips, one per series of a 0/1 metric (health checks). */
  function statusStrips(seriesList, { title, label }) {
    const head = `<h3>${esc(title)}</h3>`;
    if (!seriesList.length) return `<div class="card chart">${head}<div class="nodata-note">No health checks reported in the last hour.</div></div>`;
    const W = 520; const L = 120; const rowH = 18; const B = 18;
    const H = seriesList.length * rowH + B;
    const { start, end, step } = seriesList[0];
    const x = (t) => L + ((t - start) / Math.max(1, end - start)) * (W - L - 4);
    const rows = seriesList.map((s, i) => {
      const yTop = i * rowH + 3;
      const cells = s.points.map(([t, v]) => {
        const w = Math.max(1, x(t + step) - x(t));
        return `<rect class="${v >= 1 ? 'up' : 'down'}" x="${x(t).toFixed(1)}" y="${yTop}" width="${w.toFixed(1)}" height="${rowH - 6}"/>`;
      }).join('');
      const now = s.points.length ? (s.points[s.points.length - 1][1] >= 1 ? 'up' : 'down') : 'no data';
      return `<rect class="nodata" x="${L}" y="${yTop}" width="${W - L - 4}" height="${rowH - 6}"/>${cells}`
        + `<text class="axis" x="0" y="${yTop + 10}">${esc(label(s.metric))} · ${now}</text>`;
    }).join('');
    const axis = [0, 2, 4].map((i) => {
      const t = start + ((end - start) * i) / 4;
      return `<text class="axis" x="${x(t).toFixed(1)}" y="${H - 4}" text-anchor="${i === 0 ? 'start' : i === 4 ? 'end' : 'middle'}">${esc(clock(t))}</text>`;
    }).join('');
    return `<div class="card chart">${head}<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${rows}${axis}</svg></div>`;
  }

  // ---------------------------------------------------------------------------------------------
  // Views. Each has mount(root, params) (builds the static part once per visit) and refresh()
  // (fetches and fills the live parts; called on mount and then every POLL_MS).

  const views = {};

  views.fleet = {
    title: 'Fleet',
    mount(root) {
      root.innerHTML = `
        <div id="fleet-summary" class="tiles"></div>
        <div class="table-wrap"><table id="fleet-table">
          <thead><tr><th>Host</th><th>State</th><th>CPU</th><th>Memory</th><th>Fullest disk</th>
          <th>Buffer</th><th>Last seen</th><th>Version</th></tr></thead>
          <tbody><tr><td colspan="8" class="empty">Loading…</td></tr></tbody></table></div>
        <p class="muted small">Sparklines: the last 30 minutes. Click a host for its charts.</p>`;
    },
    async refresh(root) {
      const [status, agents, alerts, cpu, mem, disk] = await Promise.all([
        getJson('/ops/status'),
        getJson('/ops/agents'),
        getJson('/ops/alerts?history=0'),
        queryRange('aisemble_system_cpu_usage_percent', SPARK_WINDOW_S, 60).catch(() => []),
        queryRange('aisemble_system_memory_usage_percent', SPARK_WINDOW_S, 60).catch(() => []),
        queryRange('max by (host) (aisemble_system_disk_usage_percent)', SPARK_WINDOW_S, 60).catch(() => []),
      ]);
      const byHost = (list) => Object.fromEntries(list.map((s) => [s.metric.host, s]));
      const cpuBy = byHost(cpu); const memBy = byHost(mem); const diskBy = byHost(disk);
      $('#fleet-summary', root).innerHTML = summaryTiles(status, alerts);
      const rows = (agents.agents || []).map((a) => {
        const r = a.resources || {};
        const disk = r.fullest_disk;
        const state = a.connected ? 'up' : 'down';
        return `<tr data-host="${esc(a.id)}" data-state="${state}">
          <td><a href="#/host/${encodeURIComponent(a.id)}"><b>${esc(a.id)}</b></a><div class="muted small">${esc(a.hostname)}</div></td>
          <td><span class="pill ${state}">${state}</span>${a.monitoring === 'paused' ? ' <span class="pill paused">paused</span>' : ''}</td>
          <td><div class="metric"><span class="v">${pct(r.cpu_usage_percent)}</span>${sparkline(cpuBy[a.id], { cls: 's0' })}</div></td>
          <td><div class="metric"><span class="v">${pct(r.memory_usage_percent)}</span>${sparkline(memBy[a.id], { cls: 's4' })}</div></td>
          <td><div class="metric"><span class="v">${disk ? pct(disk.usage_percent) : '–'}</span>${sparkline(diskBy[a.id], { cls: 's3' })}
            <span class="muted small">${disk ? esc(disk.mount) : ''}</span></div></td>
          <td class="num">${num(a.buffer && a.buffer.records)} rec${a.buffer && a.buffer.dropped_records ? ` <span class="pill down">${num(a.buffer.dropped_records)} dropped</span>` : ''}</td>
          <td class="num" title="${esc(a.last_seen_ms ? new Date(a.last_seen_ms).toLocaleString() : '')}">${ago(a.last_seen_ms)}</td>
          <td class="muted">${esc(a.version)}</td></tr>`;
      });
      $('#fleet-table tbody', root).innerHTML = rows.join('')
        || '<tr><td colspan="8" class="empty">No agents yet. Add a host with <code>aisemble-cp certs issue-agent NAME</code>.</td></tr>';
    },
  };

  function backupTile(b, tile) {
    if (!b) return '';
    const failing = b.failing || [];
    const sub = failing.length ? 'failing: ' + esc(failing.join(', '))
      : b.last_success ? 'last success ' + sinceIso(b.last_success) : `${num(b.jobs)} jobs, none run yet`;
    return tile('Backups', `${num(b.snapshots)} snapshot${b.snapshots === 1 ? '' : 's'}`, sub, failing.length ? 'bad' : b.jobs ? 'ok' : '');
  }

  function summaryTiles(status, alerts) {
    const a = status.agents || {};
    const res = status.resources || {};
    const counts = (alerts && alerts.counts) || {};
    const firing = (sev) => (counts[sev] && counts[sev].firing) || 0;
    const tile = (label, value, sub, cls = '') => `<div class="tile ${cls}"><div class="label">${esc(label)}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
    const avgMax = (s) => (s ? `avg ${pct(s.avg)} · max ${pct(s.max)}` : 'no data');
    const checks = status.checks || {};
    // The fleet's word is the worst of its agents and checks (`status`) and its firing alerts, as
    // `aisemble-cp dashboard --mode status` judges it: "healthy" beside a critical alert would mislead.
    const overall = firing('critical') ? ['critical', 'bad']
      : status.status && status.status !== 'healthy' ? [status.status, 'warn']
        : firing('warning') ? ['warning', 'warn'] : [status.status || '–', status.status === 'healthy' ? 'ok' : ''];
    return [
      tile('Fleet', esc(overall[0]), `agents and checks ${esc(status.status || '–')} · uptime ${duration(status.uptime_seconds)} · ${esc(status.version || '')}`,
        overall[1]),
      tile('Agents', `${num(a.connected)} / ${num(a.total)}`, `${num(a.disconnected)} disconnected`, a.disconnected ? 'bad' : 'ok'),
      tile('Critical alerts', num(firing('critical')), 'firing', firing('critical') ? 'bad' : 'ok'),
      tile('Warnings', num(firing('warning')), 'firing', firing('warning') ? 'warn' : 'ok'),
      tile('CPU', res.cpu_usage_percent ? pct(res.cpu_usage_percent.avg) : '–', avgMax(res.cpu_usage_percent)),
      tile('Memory', res.memory_usage_percent ? pct(res.memory_usage_percent.avg) : '–', avgMax(res.memory_usage_percent)),
      tile('Disk', res.disk_usage_percent ? pct(res.disk_usage_percent.max) : '–', res.disk_usage_percent ? 'fullest mount' : 'no data'),
      tile('Health checks', `${num(checks.up)} / ${num(checks.total)}`, `${num((checks.down || []).length)} down`, (checks.down || []).length ? 'bad' : 'ok'),
      backupTile(status.backups, tile),
    ].join('');
  }

  // Alerts: filters live in the hash (#/alerts?severity=critical) and go to the API as query
  // parameters, so what is shown is what the control plane filtered.
  views.alerts = {
    title: 'Alerts',
    mount(root, params) {
      this.params = params;
      const opt = (name, values) => values.map(([v, text]) => `<option value="${esc(v)}"${(params.get(name) || '') === v ? ' selected' : ''}>${esc(text)}</option>`).join('');
      root.innerHTML = `
        <div class="filters">
          <label>Severity <select id="filter-severity">${opt('severity', [['', 'all'], ['critical', 'critical'], ['warning', 'warning'], ['info', 'info']])}</select></label>
          <label>State <select id="filter-state">${opt('state', [['', 'all'], ['firing', 'firing'], ['pending', 'pending'], ['resolved', 'resolved']])}</select></label>
          <label>Host <select id="filter-host"><option value="">all</option></select></label>
          <span class="spacer"></span><span id="alerts-evaluated" class="muted small"></span>
        </div>
        <div id="alert-counts" class="counts"></div>
        <p id="alerts-error" class="error" role="alert"></p>
        <div class="table-wrap"><table id="alerts-table">
          <thead><tr><th>Severity</th><th>Alert</th><th>Host</th><th>State</th><th>Summary</th><th>Since</th><th>Value</th><th></th></tr></thead>
          <tbody><tr><td colspan="8" class="empty">Loading…</td></tr></tbody></table></div>
        <h2>History</h2>
        <div class="table-wrap"><table id="alerts-history">
          <thead><tr><th>Severity</th><th>Alert</th><th>Host</th><th>Started</th><th>Ended</th><th>Summary</th></tr></thead>
          <tbody></tbody></table></div>`;
      for (const name of ['severity', 'state', 'host']) {
        $('#filter-' + name, root).addEventListener('change', (e) => {
          const next = new URLSearchParams(this.params);
          if (e.target.value) next.set(name, e.target.value); else next.delete(name);
          const q = next.toString();
          location.hash = '#/alerts' + (q ? '?' + q : '');
        });
      }
      this.byFingerprint = new Map();
      $('#alerts-table', root).addEventListener('click', (e) => {
        const button = e.target.closest('button[data-silence]');
        if (button) openSilence(this.byFingerprint.get(button.dataset.silence));
      });
    },
    async refresh(root) {
      const query = new URLSearchParams();
      for (const name of ['severity', 'state', 'host']) if (this.params.get(name)) query.set(name, this.params.get(name));
      query.set('history', '20');
      const [r, agents] = await Promise.all([api('/ops/alerts?' + query), getJson('/ops/agents')]);
      if (!r.ok) { $('#alerts-error', root).textContent = errorText(r.status, r.body); return; }
      $('#alerts-error', root).textContent = '';
      const body = r.body;
      const alerts = body.alerts || [];
      for (const a of alerts) this.byFingerprint.set(a.fingerprint, a);
      const hosts = new Set((agents.agents || []).map((a) => a.id));
      for (const a of alerts) if (a.host) hosts.add(a.host);
      const hostSelect = $('#filter-host', root);
      const wanted = this.params.get('host') || '';
      if (wanted) hosts.add(wanted);
      const options = '<option value="">all</option>' + [...hosts].sort().map((h) => `<option value="${esc(h)}"${h === wanted ? ' selected' : ''}>${esc(h)}</option>`).join('');
      // Rebuilt only when the host list changes, and never under the user's open dropdown.
      if (hostSelect.renderedOptions !== options && document.activeElement !== hostSelect) {
        hostSelect.innerHTML = options;
        hostSelect.renderedOptions = options;
      }
      const counts = body.counts || {};
      $('#alert-counts', root).innerHTML = ['critical', 'warning', 'info', 'none'].filter((s) => counts[s]).map((s) => {
        const c = counts[s];
        return `<span class="pill ${s}">${esc(s)}: ${num(c.firing || 0)} firing, ${num(c.pending || 0)} pending</span>`;
      }).join('') || '<span class="pill ok">nothing firing or pending</span>';
      $('#alerts-evaluated', root).textContent = body.evaluated_at ? 'rules evaluated ' + sinceIso(body.evaluated_at) : '';
      $('#alerts-table tbody', root).innerHTML = alerts.map((a) => {
        const muted = (a.silenced_by || []).length ? `<div class="silenced">silenced (${esc(a.silenced_by.join(', '))})</div>`
          : (a.inhibited_by || []).length ? '<div class="silenced">inhibited</div>' : '';
        const since = a.state === 'firing' ? a.fired_at : a.state === 'pending' ? a.active_at : a.resolved_at;
        return `<tr data-alert="${esc(a.name)}" data-severity="${esc(a.severity || 'none')}" data-state="${esc(a.state)}" data-host="${esc(a.host || '')}">
          <td><span class="pill ${esc(a.severity || 'none')}">${esc(a.severity || 'none')}</span></td>
          <td><b>${esc(a.name)}</b></td>
          <td>${a.host ? `<a href="#/host/${encodeURIComponent(a.host)}">${esc(a.host)}</a>` : '<span class="muted">fleet</span>'}</td>
          <td><span class="pill ${esc(a.state === 'inactive' ? 'resolved' : a.state)}">${esc(a.state === 'inactive' ? 'resolved' : a.state)}</span>${muted}</td>
          <td>${esc((a.annotations && (a.annotations.summary || a.annotations.description)) || '')}</td>
          <td class="num" title="${esc(since || '')}">${sinceIso(since)}</td>
          <td class="num">${esc(typeof a.value === 'number' ? formatValue(a.value) : a.value)}</td>
          <td>${a.state === 'firing' || a.state === 'pending' ? `<button type="button" data-silence="${esc(a.fingerprint)}">Silence</button>` : ''}</td></tr>`;
      }).join('') || '<tr><td colspan="8" class="empty">No alerts match. All quiet.</td></tr>';
      $('#alerts-history tbody', root).innerHTML = (body.history || []).map((h) => `<tr>
          <td><span class="pill ${esc(h.severity || 'none')}">${esc(h.severity || 'none')}</span></td>
          <td>${esc(h.name)}</td><td>${esc(h.host || '')}</td>
          <td class="num" title="${esc(h.starts_at)}">${sinceIso(h.starts_at)}</td>
          <td class="num" title="${esc(h.ends_at || '')}">${h.ends_at ? sinceIso(h.ends_at) : '<span class="pill firing">ongoing</span>'}</td>
          <td>${esc((h.annotations && h.annotations.summary) || '')}</td></tr>`).join('')
        || '<tr><td colspan="6" class="empty">No past alerts.</td></tr>';
    },
  };

  views.host = {
    title: 'Host',
    mount(root, params, name) {
      this.host = name;
      root.innerHTML = `
        <p><a href="#/fleet">← Fleet</a></p>
        <h1 id="host-title">${esc(name)}</h1>
        <p id="host-error" class="error" role="alert"></p>
        <div class="grid2">
          <div class="card"><h2>Agent</h2><dl id="host-info" class="kv"></dl>
            <div class="actions" id="host-actions" hidden><button type="button" class="danger" id="host-remove"
              title="For a decommissioned host: it leaves the fleet's health; its data stays until retention">Remove from fleet</button></div></div>
          <div class="card"><h2>Alerts on this host</h2><div id="host-alerts"></div></div>
        </div>
        <div id="host-charts" class="charts"></div>
        <h2>Health checks</h2>
        <div class="table-wrap"><table id="host-checks"><thead><tr><th>Check</th><th>Kind</th><th>State</th><th>Latency</th><th>Error</th></tr></thead><tbody></tbody></table></div>`;
      this.chartsAt = 0;
      $('#host-remove', root).addEventListener('click', async () => {
        if (!window.confirm(`Remove ${name} from the fleet? It no longer counts as down; its data stays until retention, and it comes back if it connects again. Revoke its certificate to keep it out.`)) return;
        const r = await api('/ops/agents/' + encodeURIComponent(name), { method: 'DELETE' });
        if (r.ok) { window.location.hash = '#/fleet'; return; }
        $('#host-error', root).textContent = errorText(r.status, r.body) + (r.status === 403 ? ' This needs an admin token.' : '');
      });
    },
    async refresh(root) {
      const host = this.host;
      const sel = `host=${promString(host)}`;
      const r = await api('/ops/agents/' + encodeURIComponent(host));
      if (r.status === 404) { $('#host-error', root).textContent = `No agent named ${host}.`; return; }
      if (!r.ok) { $('#host-error', root).textContent = errorText(r.status, r.body); return; }
      const a = r.body;
      const res = a.resources || {};
      const state = a.connected ? 'up' : 'down';
      $('#host-info', root).innerHTML = [
        ['State', `<span class="pill ${state}">${state}</span>${a.monitoring === 'paused' ? ' <span class="pill paused">paused</span>' : ''}`],
        ['Hostname', esc(a.hostname)], ['Version', esc(a.version)], ['Remote', esc(a.remote || '–')],
        ['Last seen', esc(ago(a.last_seen_ms))], ['Uptime', esc(duration(res.uptime_seconds))],
        ['Load (1m)', esc(res.load1 == null ? '–' : Number(res.load1).toFixed(2))],
        ['Buffer', `${num(a.buffer && a.buffer.records)} records, ${bytes(a.buffer && a.buffer.bytes)}, ${num(a.buffer && a.buffer.dropped_records)} dropped`],
        ['Labels', Object.entries(a.labels || {}).map(([k, v]) => `<code>${esc(k)}=${esc(v)}</code>`).join(' ') || '–'],
      ].map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('');
      // Only a disconnected agent can be removed (the API refuses a connected one).
      $('#host-actions', root).hidden = a.connected;
      const checks = a.checks || [];
      $('#host-checks tbody', root).innerHTML = checks.map((c) => `<tr><td>${esc(c.check)}</td><td>${esc(c.kind)}</td>
          <td><span class="pill ${c.up ? 'up' : 'down'}">${c.up ? 'up' : 'down'}</span></td>
          <td class="num">${c.duration_seconds == null ? '–' : formatValue(Number(c.duration_seconds), 's')}</td>
          <td class="muted">${esc(c.error || '')}</td></tr>`).join('')
        || '<tr><td colspan="5" class="empty">No health checks configured on this host.</td></tr>';
      const alerts = await getJson('/ops/alerts?history=0&host=' + encodeURIComponent(host));
      $('#host-alerts', root).innerHTML = (alerts.alerts || []).map((x) => `<div><span class="pill ${esc(x.severity || 'none')}">${esc(x.severity || 'none')}</span>
        <b>${esc(x.name)}</b> <span class="pill ${esc(x.state === 'inactive' ? 'resolved' : x.state)}">${esc(x.state === 'inactive' ? 'resolved' : x.state)}</span>
        <span class="muted">${esc((x.annotations && x.annotations.summary) || '')}</span></div>`).join('')
        || '<p class="muted">None.</p>';
      // Hour-long charts cost more to query; refresh them every fourth poll.
      if (Date.now() - this.chartsAt < POLL_MS * 4 - 100) return;
      this.chartsAt = Date.now();
      const q = (expr) => queryRange(expr, DETAIL_WINDOW_S).catch((e) => ({ error: e.message }));
      const [cpu, mem, disk, checkUp, p95, errors] = await Promise.all([
        q(`aisemble_system_cpu_usage_percent{${sel}}`),
        q(`aisemble_system_memory_usage_percent{${sel}}`),
        q(`aisemble_system_disk_usage_percent{${sel}}`),
        q(`aisemble_check_up{${sel}}`),
        q(`histogram_quantile(0.95, sum by (le, model) (rate(aisemble_model_inference_duration_seconds_bucket{${sel}}[5m])))`),
        q(`sum by (model) (rate(aisemble_model_inference_total{${sel},outcome="failure"}[5m])) / sum by (model) (rate(aisemble_model_inference_total{${sel}}[5m]))`),
      ]);
      const chart = (data, opts) => (data.error ? `<div class="card chart"><h3>${esc(opts.title)}</h3><p class="error">${esc(data.error)}</p></div>` : lineChart(data, opts));
      $('#host-charts', root).innerHTML = [
        chart(cpu, { title: 'CPU', unit: '%', yMax: 100, threshold: 80, label: () => 'cpu' }),
        chart(mem, { title: 'Memory', unit: '%', yMax: 100, threshold: 85, label: () => 'memory' }),
        chart(disk, { title: 'Disk usage by mount', unit: '%', yMax: 100, threshold: 85, label: (m) => m.mount || m.device || 'disk' }),
        checkUp.error ? chart(checkUp, { title: 'Health checks' }) : statusStrips(checkUp, { title: 'Health checks (up/down)', label: (m) => m.check || 'check' }),
        chart(p95, { title: 'Inference latency p95', unit: 's', label: (m) => m.model || 'all models' }),
        chart(errors, { title: 'Inference error rate', unit: 'ratio', threshold: 0.05, label: (m) => m.model || 'all models' }),
      ].join('');
    },
  };

  /** A pane for an endpoint that a control plane may not have yet: a 404 says so honestly. */
  function unavailable(what, endpoint) {
    return `<div class="notice" data-unavailable="${esc(endpoint)}"><strong>${esc(what)} is not available on this control plane yet.</strong>
      <p><code>${esc(endpoint)}</code> answered 404 Not Found. This page shows real data only; it will fill in once the
      control plane serves that endpoint.</p></div>`;
  }

  // Backups: jobs with their last run and success rate, runs going on and done, snapshots with
  // a restore dialog, and a repository check. Run now, restore and check need an operator token.
  const RUN_STATE = { running: 'pending', succeeded: 'ok', failed: 'critical' };

  function runPill(run) {
    if (!run) return '<span class="pill muted">never</span>';
    return `<span class="pill ${RUN_STATE[run.state] || 'muted'}">${esc(run.state)}</span>`;
  }

  views.backups = {
    title: 'Backups',
    mount(root) {
      root.innerHTML = `<h1>Backups</h1>
        <div id="backups-summary" class="counts"></div>
        <p id="backups-message" class="muted small" role="status"></p>
        <div id="backups-body"><p class="muted">Loading…</p></div>`;
      this.snapshots = new Map();
      root.addEventListener('click', (e) => {
        const run = e.target.closest('button[data-run-job]');
        if (run) this.act(root, '/ops/backups/manual', { job: run.dataset.runJob }, `Started ${run.dataset.runJob}.`);
        const restore = e.target.closest('button[data-restore]');
        if (restore) openRestore(this.snapshots.get(restore.dataset.restore));
        if (e.target.closest('button[data-check]')) this.act(root, '/ops/backups/check', { read_data: true }, 'Repository check started.');
        const del = e.target.closest('button[data-delete-job]');
        const job = del && del.dataset.deleteJob;
        if (job && window.confirm(`Delete the backup job ${job}? It will no longer run; its snapshots stay and can still be restored.`)) {
          this.act(root, '/ops/backups/jobs/' + encodeURIComponent(job), undefined, `Deleted ${job}; its snapshots stay.`, 'DELETE');
        }
      });
    },
    async act(root, path, body, done, method = 'POST') {
      const message = $('#backups-message', root);
      const r = await api(path, { method, body });
      if (!r.ok) {
        const hint = r.status === 403 ? ' This needs an operator or admin token.' : '';
        message.textContent = errorText(r.status, r.body) + hint;
        message.className = 'error';
        return;
      }
      message.textContent = done;
      message.className = 'muted small';
      poll();
    },
    async refresh(root) {
      const [r, snaps] = await Promise.all([api('/ops/backups/status'), api('/ops/backups/snapshots')]);
      const out = $('#backups-body', root);
      if (r.status === 404) { out.innerHTML = unavailable('Backups', 'GET /ops/backups/status'); return; }
      if (!r.ok) { out.innerHTML = `<div class="notice error-box">${esc(errorText(r.status, r.body))}</div>`; return; }
      const status = r.body;
      const repo = status.repository || {};
      const check = status.last_check;
      const ratio = repo.stored_bytes ? repo.snapshot_bytes / repo.stored_bytes : null;
      $('#backups-summary', root).innerHTML = `
        <span class="pill info">${num(repo.snapshots)} snapshots</span>
        <span class="pill info">${bytes(repo.stored_bytes)} stored${ratio ? ` (${num(ratio, 1)}× dedup and compression)` : ''}</span>
        <span class="pill ${check ? RUN_STATE[check.state] : 'muted'}" id="backups-check-state" title="${esc(check ? check.detail : '')}">check: ${check ? esc(check.state) + ' ' + sinceIso(check.finished_at) : 'never run'}</span>
        <button type="button" data-check="1">Check repository</button>`;
      const jobs = status.jobs || [];
      const jobRows = jobs.map((j) => `<tr data-job="${esc(j.spec.name)}">
          <td><b>${esc(j.spec.name)}</b>${j.spec.class ? ` <span class="muted small">${esc(j.spec.class)}</span>` : ''}</td>
          <td>${esc(j.source)}</td>
          <td>${esc((j.spec.agents || []).join(', '))}</td>
          <td><code>${esc(j.schedule || 'manual')}</code></td>
          <td class="num">${j.next_run ? esc(new Date(j.next_run).toLocaleString()) : '–'}</td>
          <td>${runPill(j.last_run)} <span class="muted small">${j.last_run ? sinceIso(j.last_run.started_at) : ''}</span></td>
          <td class="num">${j.success_rate == null ? '–' : num(j.success_rate * 100, 1) + '%'}</td>
          <td class="num">${num(j.snapshots)}</td>
          <td><button type="button" data-run-job="${esc(j.spec.name)}">Run now</button>
            <button type="button" class="danger" data-delete-job="${esc(j.spec.name)}">Delete</button></td></tr>`).join('');
      const runs = status.recent_runs || [];
      const runRows = runs.slice(0, 20).map((run) => `<tr data-run="${esc(run.id)}" data-state="${esc(run.state)}">
          <td class="num">${esc(run.id)}</td><td>${esc(run.kind)}</td><td>${esc(run.job || '')}</td><td>${esc(run.agent || '')}</td>
          <td>${runPill(run)}</td><td class="num" title="${esc(run.started_at)}">${sinceIso(run.started_at)}</td>
          <td class="num">${duration(run.duration_seconds)}</td><td class="num">${bytes(run.bytes)}</td>
          <td class="detail">${esc(run.detail)}</td></tr>`).join('');
      const snapshots = (snaps.ok && snaps.body && snaps.body.snapshots) || [];
      this.snapshots = new Map(snapshots.map((s) => [s.id, s]));
      const snapRows = snapshots.slice(0, 50).map((s) => `<tr data-snapshot="${esc(s.id)}">
          <td><code>${esc(s.id)}</code></td><td>${esc(s.job)}</td><td>${esc(s.agent)}</td>
          <td class="num" title="${esc(s.time)}">${sinceIso(s.time)}</td><td class="num">${num(s.entries)}</td>
          <td class="num">${bytes(s.bytes)}</td><td class="num">${bytes(s.added_bytes)}</td>
          <td><button type="button" data-restore="${esc(s.id)}">Restore…</button></td></tr>`).join('');
      out.innerHTML = `
        <h2>Jobs</h2>
        <div class="table-wrap"><table id="backup-jobs"><thead><tr><th>Job</th><th>Source</th><th>Agents</th><th>Schedule (UTC)</th><th>Next run</th><th>Last run</th><th>Success</th><th>Snapshots</th><th></th></tr></thead>
          <tbody>${jobRows || '<tr><td colspan="9" class="empty">No backup jobs yet. Create one with POST /ops/backups/jobs.</td></tr>'}</tbody></table></div>
        <h2>Runs</h2>
        <div class="table-wrap"><table id="backup-runs"><thead><tr><th>#</th><th>Kind</th><th>Job</th><th>Agent</th><th>State</th><th>Started</th><th>Took</th><th>Bytes</th><th>Detail</th></tr></thead>
          <tbody>${runRows || '<tr><td colspan="9" class="empty">Nothing has run yet.</td></tr>'}</tbody></table></div>
        <h2>Snapshots</h2>
        <div class="table-wrap"><table id="backup-snapshots"><thead><tr><th>Id</th><th>Job</th><th>Agent</th><th>Taken</th><th>Entries</th><th>Size</th><th>Added</th><th></th></tr></thead>
          <tbody>${snapRows || '<tr><td colspan="8" class="empty">No snapshots yet.</td></tr>'}</tbody></table></div>`;
    },
  };

  let restoreTarget = null;

  async function openRestore(snapshot) {
    if (!snapshot) return;
    restoreTarget = snapshot;
    $('#restore-what').textContent = `${snapshot.job} from ${snapshot.agent}, ${new Date(snapshot.time).toLocaleString()} (${bytes(snapshot.bytes)}, ${num(snapshot.entries)} entries)`;
    const agents = await getJson('/ops/agents').catch(() => ({ agents: [] }));
    const names = [...new Set([snapshot.agent, ...(agents.agents || []).map((a) => a.id)])];
    $('#restore-agent').innerHTML = names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join('');
    $('#restore-error').textContent = '';
    $('#restore-submit').disabled = false;
    $('#restore-dialog').showModal();
    $('#restore-path').focus();
  }

  async function submitRestore(event) {
    event.preventDefault();
    if (!restoreTarget) return;
    $('#restore-submit').disabled = true;
    try {
      const r = await api('/ops/backups/restore', {
        method: 'POST',
        body: { snapshot: restoreTarget.id, agent: $('#restore-agent').value, target: $('#restore-path').value.trim() },
      });
      if (!r.ok) {
        const hint = r.status === 403 ? '\nRestoring needs an operator or admin token.' : '';
        $('#restore-error').textContent = `Not started: ${errorText(r.status, r.body)}${hint}`;
        $('#restore-submit').disabled = false;
        return;
      }
      $('#restore-dialog').close();
      poll();
    } catch (e) {
      if (!(e instanceof AuthError)) $('#restore-error').textContent = 'Not started: ' + e.message;
      $('#restore-submit').disabled = false;
    }
  }

  /** Lines per hour as bars, the error and critical part of each in red. */
  function hourlyBars(hourly, { start, end }) {
    // Wide and low: a day of hours beside the counts card, not a square chart.
    const W = 1000; const H = 150; const L = 44; const R = 8; const T = 8; const B = 20;
    const hourMs = 3600 * 1000;
    const t0 = Math.floor(Date.parse(start) / hourMs) * hourMs; const t1 = Date.parse(end);
    const n = Math.max(1, Math.round((t1 - t0) / hourMs));
    const top = Math.max(1, ...hourly.map((h) => h.total));
    const x = (t) => L + ((t - t0) / (n * hourMs)) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const w = Math.max(1, (W - L - R) / n - 2);
    let grid = '';
    for (let i = 0; i <= 2; i += 1) {
      const v = (top * i) / 2;
      grid += `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`
        + `<text class="axis" x="${L - 4}" y="${(y(v) + 3).toFixed(1)}" text-anchor="end">${esc(num(v))}</text>`;
    }
    for (let i = 0; i <= 4; i += 1) {
      const t = t0 + (n * hourMs * i) / 4;
      grid += `<text class="axis" x="${x(t).toFixed(1)}" y="${H - 5}" text-anchor="${i === 0 ? 'start' : i === 4 ? 'end' : 'middle'}">${esc(clock(t / 1000))}</text>`;
    }
    const bars = hourly.map((h) => {
      const at = x(Date.parse(h.hour)) + 1;
      const all = `<rect class="bar" x="${at.toFixed(1)}" y="${y(h.total).toFixed(1)}" width="${w.toFixed(1)}" height="${(y(0) - y(h.total)).toFixed(1)}"><title>${esc(new Date(h.hour).toLocaleString())}: ${num(h.total)} lines, ${num(h.errors)} errors</title></rect>`;
      const errors = h.errors ? `<rect class="bar errors" x="${at.toFixed(1)}" y="${y(h.errors).toFixed(1)}" width="${w.toFixed(1)}" height="${(y(0) - y(h.errors)).toFixed(1)}"/>` : '';
      return all + errors;
    }).join('');
    return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="Lines per hour">${grid}${bars}</svg>`;
  }

  // Logs: the last day's counts (GET /ops/logs/stats) above an on-demand search (form submit, not
  // polled); the first search probes whether the endpoint exists.
  views.logs = {
    title: 'Logs',
    poll: false,
    mount(root) {
      root.innerHTML = `<h1>Logs</h1>
        <div id="logs-stats" class="logs-stats"></div>
        <form id="logs-form" class="filters">
          <input id="logs-text" placeholder="Full text" size="28">
          <select id="logs-level"><option value="">any level</option><option value="critical">critical</option><option value="error">error and above</option><option value="warn">warn and above</option><option value="info">info and above</option><option value="debug">debug and above</option><option value="trace">trace and above</option></select>
          <input id="logs-service" placeholder="Service" size="12">
          <input id="logs-host" placeholder="Host" size="12">
          <input id="logs-trace" placeholder="Trace id" size="16">
          <select id="logs-range"><option value="900">last 15 min</option><option value="3600" selected>last hour</option><option value="86400">last day</option></select>
          <button class="primary" type="submit">Search</button>
        </form>
        <div id="logs-body"><p class="muted">Loading…</p></div>`;
      $('#logs-form', root).addEventListener('submit', (e) => { e.preventDefault(); this.refresh(root).catch(reportError); });
      $('#logs-stats', root).addEventListener('click', (e) => {
        const pick = e.target.closest('[data-level], [data-service]');
        if (!pick) return;
        if (pick.dataset.level) $('#logs-level', root).value = pick.dataset.level;
        if (pick.dataset.service) $('#logs-service', root).value = pick.dataset.service;
        this.refresh(root).catch(reportError);
      });
    },
    async refresh(root) {
      await Promise.all([this.search(root), this.stats(root)]);
    },
    async stats(root) {
      const r = await api('/ops/logs/stats');
      const out = $('#logs-stats', root);
      if (!r.ok) { out.innerHTML = ''; return; }
      const s = r.body;
      const top = (counts, n) => Object.entries(counts || {}).filter(([, c]) => c > 0).sort((a, b) => b[1] - a[1]).slice(0, n);
      const levels = top(s.by_level, 6).map(([level, c]) =>
        `<button type="button" class="chip" data-level="${esc(level)}" title="Search ${esc(level)} and above"><span class="level level-${esc(level)}">${esc(level)}</span> ${num(c)}</button>`).join('');
      const services = top(s.by_service, 6).map(([service, c]) =>
        `<button type="button" class="chip" data-service="${esc(service)}" title="Search ${esc(service)}">${esc(service)} ${num(c)}</button>`).join('');
      out.innerHTML = `<div class="card">
          <div class="stat-line"><span><b>${num(s.total)}</b> lines</span>
            <span class="${s.errors ? 'bad-text' : ''}"><b>${num(s.errors)}</b> errors</span>
            <span><b>${pct(100 * (s.error_rate || 0))}</b> error rate</span>
            <span class="muted small">${esc(new Date(s.start).toLocaleString())} – ${esc(new Date(s.end).toLocaleString())}</span></div>
          <div class="chips">${levels || '<span class="muted small">No lines in the last day.</span>'}</div>
          ${services ? `<div class="chips">${services}</div>` : ''}
        </div>
        <div class="card chart"><h3>Lines per hour <span class="muted">errors in red</span></h3>${hourlyBars(s.hourly || [], s)}</div>`;
    },
    async search(root) {
      const end = new Date();
      const start = new Date(end.getTime() - Number($('#logs-range', root).value) * 1000);
      const body = { start: start.toISOString(), end: end.toISOString(), limit: 200 };
      const text = $('#logs-text', root).value.trim();
      if (text) body.query = text;
      const level = $('#logs-level', root).value;
      if (level) body.min_level = level;
      const trace = $('#logs-trace', root).value.trim();
      if (trace) body.trace_id = trace;
      for (const [key, id] of [['services', 'logs-service'], ['hosts', 'logs-host']]) {
        const v = $('#' + id, root).value.trim();
        if (v) body[key] = v.split(',').map((x) => x.trim()).filter(Boolean);
      }
      const r = await api('/ops/logs/search', { method: 'POST', body });
      const out = $('#logs-body', root);
      if (r.status === 404) { out.innerHTML = unavailable('Log search', 'POST /ops/logs/search'); return; }
      if (!r.ok) { out.innerHTML = `<div class="notice error-box">${esc(errorText(r.status, r.body))}</div>`; return; }
      const logs = r.body.logs || [];
      const note = r.body.truncated ? `<p class="muted">Newest ${logs.length} shown; narrow the search for more.</p>`
        : r.body.timed_out ? '<p class="muted">The search stopped at its time budget; narrow the range.</p>' : '';
      out.innerHTML = logs.length === 0 ? '<p class="muted">No matching lines.</p>' : `${note}<div class="table-wrap"><table class="logs"><thead><tr>
          <th>Time</th><th>Level</th><th>Host</th><th>Service</th><th>Message</th></tr></thead><tbody>${logs.map((l) => `<tr>
          <td class="nowrap" title="${esc(l.timestamp)}">${esc(new Date(l.timestamp_ms).toLocaleString())}</td><td><span class="level level-${esc(l.level)}">${esc(l.level)}</span></td>
          <td>${esc(l.host)}</td><td>${esc(l.service)}</td><td>${esc(l.message)}${l.context ? `<div class="muted small">${esc(JSON.stringify(l.context))}</div>` : ''}${l.trace_id ? `<div class="muted small">trace ${esc(l.trace_id)}</div>` : ''}</td></tr>`).join('')}</tbody></table></div>`;
    },
  };

  // ---------------------------------------------------------------------------------------------
  // Silence dialog (POST /ops/silences needs an operator token; a viewer sees the API's 403).

  let silenceTarget = null;

  function openSilence(alert) {
    if (!alert) return;
    silenceTarget = alert;
    const labels = alert.labels || {};
    $('#silence-matchers').innerHTML = Object.entries(labels).map(([k, v]) => `<li><code>${esc(k)}="${esc(v)}"</code></li>`).join('');
    $('#silence-author').value = localStorage.getItem(AUTHOR_KEY) || '';
    $('#silence-error').textContent = '';
    $('#silence-submit').disabled = false;
    $('#silence-dialog').showModal();
    ($('#silence-author').value ? $('#silence-submit') : $('#silence-author')).focus();
  }

  async function submitSilence(event) {
    event.preventDefault();
    if (!silenceTarget) return;
    const author = $('#silence-author').value.trim();
    localStorage.setItem(AUTHOR_KEY, author);
    const matchers = Object.entries(silenceTarget.labels || {}).map(([name, value]) => ({ name, value, isRegex: false, isEqual: true }));
    $('#silence-submit').disabled = true;
    try {
      const r = await api('/ops/silences', {
        method: 'POST',
        body: { matchers, duration: $('#silence-duration').value, createdBy: author, comment: $('#silence-comment').value.trim() },
      });
      if (!r.ok) {
        const hint = r.status === 403 ? '\nSilencing needs an operator or admin token.' : '';
        $('#silence-error').textContent = `Not silenced: ${errorText(r.status, r.body)}${hint}`;
        $('#silence-submit').disabled = false;
        return;
      }
      $('#silence-dialog').close();
      poll();
    } catch (e) {
      if (!(e instanceof AuthError)) $('#silence-error').textContent = 'Not silenced: ' + e.message;
      $('#silence-submit').disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Routing, polling, login, theme.

  let current = null; // {name, view, root}
  let timer = null;
  let pollSeq = 0; // bumped by every poll, so a superseded one neither reports nor reschedules

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, '');
    const [path, query = ''] = raw.split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const name = Object.hasOwn(views, parts[0] || '') ? parts[0] : 'fleet';
    return { name, arg: parts[1], params: new URLSearchParams(query) };
  }

  function route() {
    if (!localStorage.getItem(TOKEN_KEY)) { showLogin(''); return; }
    const { name, arg, params } = parseHash();
    if (name === 'host' && !arg) { location.hash = '#/fleet'; return; }
    $('#login').hidden = true;
    $('#view').hidden = false; $('#nav').hidden = false; $('#logout').hidden = false;
    for (const a of $$('#nav a')) a.classList.toggle('active', a.dataset.route === name || (name === 'host' && a.dataset.route === 'fleet'));
    const view = views[name];
    // A fresh container per visit: a refresh still in flight from the previous view writes into a
    // detached element instead of this one.
    const root = document.createElement('div');
    root.dataset.view = name;
    $('#view').replaceChildren(root);
    view.mount(root, params, arg);
    current = { name, view, root };
    document.title = (name === 'host' ? arg : view.title) + ' · Ai-semble Ops';
    poll();
  }

  function reportError(e) {
    if (e instanceof AuthError) return;
    $('#live').textContent = 'Cannot load: ' + e.message;
    $('#live').classList.add('error');
  }

  /** Refreshes the current view and the alert badge; reschedules itself. */
  async function poll() {
    clearTimeout(timer);
    if (!current) return;
    pollSeq += 1;
    const mine = pollSeq;
    const { view, root } = current;
    // A hidden tab does not poll; visibilitychange polls at once when it is shown again.
    if (document.hidden) return;
    try {
      await Promise.all([view.refresh(root), updateBadge()]);
      if (mine !== pollSeq) return;
      $('#live').textContent = 'Live · updated ' + new Date().toLocaleTimeString();
      $('#live').classList.remove('error');
    } catch (e) {
      if (mine !== pollSeq) return;
      reportError(e);
    }
    if (mine !== pollSeq || !current || view.poll === false) return;
    timer = setTimeout(poll, POLL_MS);
  }

  async function updateBadge() {
    const body = await getJson('/ops/alerts?state=firing&history=0');
    const alerts = body.alerts || [];
    const badge = $('#alert-badge');
    badge.hidden = alerts.length === 0;
    badge.textContent = String(alerts.length);
    badge.classList.toggle('warning', !alerts.some((a) => a.severity === 'critical'));
  }

  function showLogin(message) {
    clearTimeout(timer);
    current = null;
    pollSeq += 1;
    localStorage.removeItem(TOKEN_KEY);
    $('#view').hidden = true; $('#nav').hidden = true; $('#logout').hidden = true;
    $('#view').replaceChildren();
    $('#login').hidden = false;
    $('#login-error').textContent = message || '';
    $('#live').textContent = '';
    const dialog = $('#silence-dialog');
    if (dialog.open) dialog.close();
    $('#token-input').focus();
  }

  async function login(event) {
    event.preventDefault();
    const token = $('#token-input').value.trim();
    if (!token) return;
    $('#login-submit').disabled = true;
    $('#login-error').textContent = '';
    try {
      // Check the token before keeping it, so a typo is reported here and not as a blank page.
      const r = await fetch('/ops/status', { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
      let body = null;
      try { body = await r.json(); } catch (_) { body = null; }
      if (!r.ok) { $('#login-error').textContent = 'Sign-in failed: ' + errorText(r.status, body); return; }
      localStorage.setItem(TOKEN_KEY, token);
      $('#token-input').value = '';
      route();
    } catch (e) {
      $('#login-error').textContent = 'Cannot reach the control plane: ' + e.message;
    } finally {
      $('#login-submit').disabled = false;
    }
  }

  function applyTheme(theme) {
    if (theme === 'dark' || theme === 'light') document.documentElement.dataset.theme = theme;
    else delete document.documentElement.dataset.theme;
    const dark = theme === 'dark' || (theme !== 'light' && matchMedia('(prefers-color-scheme: dark)').matches);
    $('#theme-toggle').textContent = dark ? 'Light' : 'Dark';
    $('#theme-toggle').setAttribute('aria-label', dark ? 'Switch to the light theme' : 'Switch to the dark theme');
  }

  function toggleTheme() {
    const dark = document.documentElement.dataset.theme === 'dark'
      || (!document.documentElement.dataset.theme && matchMedia('(prefers-color-scheme: dark)').matches);
    const next = dark ? 'light' : 'dark';
    localStorage.setItem(THEME_KEY, next);
    applyTheme(next);
  }

  document.addEventListener('DOMContentLoaded', () => {
    applyTheme(localStorage.getItem(THEME_KEY));
    matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => applyTheme(localStorage.getItem(THEME_KEY)));
    $('#theme-toggle').addEventListener('click', toggleTheme);
    $('#logout').addEventListener('click', () => showLogin('Signed out.'));
    $('#login-form').addEventListener('submit', login);
    $('#silence-form').addEventListener('submit', submitSilence);
    $('#silence-cancel').addEventListener('click', () => $('#silence-dialog').close());
    $('#restore-form').addEventListener('submit', submitRestore);
    $('#restore-cancel').addEventListener('click', () => $('#restore-dialog').close());
    window.addEventListener('hashchange', route);
    // Come back to fresh data at once when the tab is shown again.
    document.addEventListener('visibilitychange', () => { if (!document.hidden && current) poll(); });
    route();
  });
})();

/* brokerstream's built-in dashboard page: the dashboards/ definitions, rendered without Grafana.
 *
 * Plain JS, no build step, no network beyond this server. The server runs each panel's query
 * (/api/dashboards/<uid>/panels/<id>) and answers columns (name, type: time|number|string|
 * boolean) and rows; this file draws them: time series and column charts in SVG, bars, stats,
 * pies and tables in HTML. Every panel carries data-state="loading|ok|empty|error|unsupported";
 * JS errors and failed requests are collected in window.__errors and #errors (the page's tests
 * read both from the DOM). The URL holds the state as Grafana's does: from, to, refresh,
 * var-<name>. Times are shown in UTC, as the data is stored.
 */
'use strict';

(function () {
  // ---- errors ------------------------------------------------------------------------
  const errors = [];
  window.__errors = errors;

  function reportError(message) {
    errors.push(String(message));
    const el = document.getElementById('errors');
    if (el) {
      el.textContent = errors.join('\n');
      el.hidden = false;
      el.dataset.count = String(errors.length);
    }
  }

  window.addEventListener('error', (e) => {
    reportError(`JS error: ${e.message || e.error} (${e.filename || '?'}:${e.lineno || '?'})`);
  });
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    reportError(`unhandled: ${(r && r.message) || r}`);
  });

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function getJSON(url) {
    let response;
    try {
      response = await fetch(url, { cache: 'no-store' });
    } catch (e) {
      reportError(`request failed: ${url}: ${e.message}`);
      throw new ApiError(`the server did not answer (${e.message})`, 0);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (response.status === 401) { // the session ended (expired, logged out, password changed)
      location.href = `/login?${new URLSearchParams({ next: location.pathname + location.search })}`;
      throw new ApiError('log in again', 401);
    }
    if (!response.ok) {
      const message = (body && body.error) || `${response.status} ${response.statusText}`;
      reportError(`request failed: ${url}: ${response.status} ${message}`);
      throw new ApiError(message, response.status);
    }
    return body;
  }

  // ---- DOM helpers ---------------------------------------------------------------------
  const SVG_NS = 'http://www.w3.org/2000/svg';

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k === 'style') node.style.cssText = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'text') node.textContent = v;
      else node.setAttribute(k, String(v));
    }
    return node;
  }

  // Grafana's classic palette: familiar to anyone who knows the Grafana version.
  const PALETTE = ['#7EB26D', '#EAB839', '#6ED0E0', '#EF843C', '#E24D42', '#1F78C1', '#BA43A9',
    '#705DA0', '#508642', '#CCA300', '#447EBC', '#C15C17', '#890F02', '#0A437C', '#6D1F62',
    '#584477', '#B7DBAB', '#F4D598', '#70DBED', '#F9BA8F'];
  const color = (i) => PALETTE[i % PALETTE.length];

  // ---- formatting ------------------------------------------------------------------------
  const pad2 = (n) => String(n).padStart(2, '0');

  function fmtDate(ms, withSeconds) {
    const d = new Date(ms);
    const base = `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ` +
      `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
    return withSeconds ? `${base}:${pad2(d.getUTCSeconds())}` : base;
  }

  function fmtTick(ms, stepMs, spanMs) {
    const d = new Date(ms);
    const md = `${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
    const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
    if (stepMs >= 86400000) return md;
    if (stepMs < 60000) return `${hm}:${pad2(d.getUTCSeconds())}`;
    if (spanMs > 86400000 && d.getUTCHours() === 0 && d.getUTCMinutes() === 0) return md;
    return spanMs > 2 * 86400000 ? `${md} ${hm}` : hm;
  }

  function trimNumber(v, digits) {
    return Number(v.toFixed(digits)).toLocaleString('en-US', { maximumFractionDigits: digits });
  }

  function fmtShort(v) {
    const a = Math.abs(v);
    if (a >= 1e12) return trimNumber(v / 1e12, 2) + 'T';
    if (a >= 1e9) return trimNumber(v / 1e9, 2) + 'B';
    if (a >= 1e6) return trimNumber(v / 1e6, 2) + 'M';
    if (a >= 1e4) return trimNumber(v / 1e3, 1) + 'K';
    if (a >= 100) return trimNumber(v, 0);
    if (a >= 1) return trimNumber(v, 2);
    if (a === 0) return '0';
    return Number(v.toPrecision(3)).toString();
  }

  function fmtDuration(s) {
    const a = Math.abs(s);
    if (a === 0) return '0 s';
    if (a < 0.001) return trimNumber(s * 1e6, 0) + ' µs';
    if (a < 1) return trimNumber(s * 1000, a < 0.01 ? 2 : 0) + ' ms';
    if (a < 60) return trimNumber(s, 2) + ' s';
    if (a < 3600) return trimNumber(s / 60, 1) + ' min';
    if (a < 86400) return trimNumber(s / 3600, 1) + ' h';
    return trimNumber(s / 86400, 1) + ' d';
  }

  function fmtBytes(v) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let x = v;
    while (Math.abs(x) >= 1024 && i < units.length - 1) {
      x /= 1024;
      i += 1;
    }
    return `${trimNumber(x, i ? 1 : 0)} ${units[i]}`;
  }

  const CURRENCY = { currencyUSD: '$', currencyEUR: '€', currencyGBP: '£', currencyJPY: '¥' };

  function fmtValue(v, unit) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    if (typeof v !== 'number') return String(v);
    unit = unit || 'short';
    if (CURRENCY[unit]) return (v < 0 ? '-' : '') + CURRENCY[unit] + fmtShort(Math.abs(v));
    switch (unit) {
      case 'percent': return trimNumber(v, 1) + '%';
      case 'percentunit': return trimNumber(v * 100, 1) + '%';
      case 's': return fmtDuration(v);
      case 'ms': return fmtDuration(v / 1000);
      case 'bytes': case 'decbytes': return fmtBytes(v);
      case 'reqps': return fmtShort(v) + ' req/s';
      case 'ops': case 'rps': case 'wps': return fmtShort(v) + '/s';
      case 'none': return trimNumber(v, 4);
      case 'locale': return v.toLocaleString('en-US');
      default: return fmtShort(v);
    }
  }

  // Identifiers (logins, ids) are numbers in ClickHouse but must not look like amounts.
  const ID_COLUMN = /(^|_)(id|login|ticket|order|position|deal|key|version|partition)s?$/i;

  function fmtCell(v, column) {
    if (v === null || v === undefined) return '';
    if (column.type === 'time') return v % 86400000 === 0 ? fmtDate(v).slice(0, 10) : fmtDate(v, true);
    if (column.type === 'number') {
      if (ID_COLUMN.test(column.name) && Number.isInteger(v)) return String(v);
      const digits = Math.abs(v) >= 100 ? 2 : Math.abs(v) >= 1 ? 4 : 6;
      return v.toLocaleString('en-US', { maximumFractionDigits: digits });
    }
    if (column.type === 'boolean') return v ? 'true' : 'false';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  // ---- shaping query results -------------------------------------------------------------
  function columnsOf(data) {
    const cols = data.columns.map((c, i) => ({ ...c, index: i }));
    return {
      time: cols.find((c) => c.type === 'time'),
      strings: cols.filter((c) => c.type === 'string' || c.type === 'boolean'),
      numbers: cols.filter((c) => c.type === 'number'),
    };
  }

  /* Time series from long (time, labels…, values…) or wide (time, value columns…) results:
   * [{name, points: [[ms, value], …]}], points sorted by time. */
  function toSeries(data) {
    const { time, strings, numbers } = columnsOf(data);
    if (!time || !numbers.length) return [];
    const byName = new Map();
    for (const row of data.rows) {
      const t = row[time.index];
      if (t === null) continue;
      const key = strings.map((c) => String(row[c.index])).join(' / ');
      for (const c of numbers) {
        const v = row[c.index];
        if (v === null || v === undefined) continue;
        let name = key || c.name;
        if (key && numbers.length > 1) name = `${key} ${c.name}`;
        if (!byName.has(name)) byName.set(name, []);
        byName.get(name).push([t, v]);
      }
    }
    const series = [...byName.entries()].map(([name, points]) => ({
      name, points: points.sort((a, b) => a[0] - b[0]),
    }));
    return series;
  }

  /* Categories and values for bars, pies and stat tiles: [{label, values: [..]}], names. */
  function toCategories(data) {
    const { time, strings, numbers } = columnsOf(data);
    const labelCols = strings.length ? strings : time ? [time] : [];
    const valueCols = numbers;
    const items = data.rows.map((row) => ({
      label: labelCols.map((c) => (c.type === 'time' ? fmtDate(row[c.index]) : String(row[c.index]))).join(' / '),
      values: valueCols.map((c) => row[c.index]),
    }));
    return { items, names: valueCols.map((c) => c.name), labelled: labelCols.length > 0 };
  }

  // ---- scales and ticks --------------------------------------------------------------------
  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    const nice = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10;
    return nice * mag;
  }

  function yDomain(values, count, includeZero) {
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (includeZero) {
      lo = Math.min(0, lo);
      hi = Math.max(0, hi);
    }
    if (lo === hi) {
      const d = Math.abs(hi) || 1;
      lo -= includeZero && lo === 0 ? 0 : d / 2;
      hi += d / 2;
    }
    const step = niceStep(hi - lo, count);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const ticks = [];
    for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
    return { lo, hi, ticks };
  }

  const TIME_STEPS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
    2 * 86400, 3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400].map((s) => s * 1000);

  function timeTicks(from, to, count) {
    const span = to - from;
    const step = TIME_STEPS.find((s) => span / s <= count) || TIME_STEPS[TIME_STEPS.length - 1];
    const ticks = [];
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) ticks.push(t);
    return { ticks, step };
  }

  function textWidth(text) {
    return text.length * 6.6 + 4; // 11px system font; close enough to size the axis gutter
  }

  /* The frame shared by time series and column charts: grid, axes, and the plot box. */
  function drawFrame(root, width, height, x0, x1, yVals, unit, opts) {
    const yd = yDomain(yVals.length ? yVals : [0, 1], Math.max(2, Math.floor(height / 48)), opts.zero);
    const yLabels = yd.ticks.map((v) => fmtValue(v, unit));
    const left = Math.max(...yLabels.map(textWidth)) + 6;
    const box = { left, right: width - 10, top: 8, bottom: height - 22 };
    const sx = (t) => box.left + ((t - x0) / Math.max(1, x1 - x0)) * (box.right - box.left);
    const sy = (v) => box.bottom - ((v - yd.lo) / (yd.hi - yd.lo || 1)) * (box.bottom - box.top);
    const grid = svg('g', { class: 'grid' });
    yd.ticks.forEach((v, i) => {
      const y = sy(v);
      grid.append(svg('line', { x1: box.left, x2: box.right, y1: y, y2: y }));
      root.append(svg('text', { x: box.left - 6, y: y + 4, class: 'axis y', 'text-anchor': 'end', text: yLabels[i] }));
    });
    const tt = timeTicks(x0, x1, Math.max(2, Math.floor((box.right - box.left) / 75)));
    for (const t of tt.ticks) {
      const x = sx(t);
      grid.append(svg('line', { x1: x, x2: x, y1: box.top, y2: box.bottom }));
      root.append(svg('text', { x, y: height - 6, class: 'axis x', 'text-anchor': 'middle', text: fmtTick(t, tt.step, x1 - x0) }));
    }
    root.prepend(grid);
    return { box, sx, sy, yd, x0, x1 };
  }

  // ---- renderers -----------------------------------------------------------------------------
  function legendFor(series, unit, onToggle) {
    const legend = el('div', { class: 'legend' });
    series.forEach((s, i) => {
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      legend.append(el('span', { class: 'legend-item', title: s.name, onclick: () => onToggle && onToggle(i) },
        el('i', { class: 'swatch', style: `background:${color(i)}` }),
        el('span', { class: 'legend-name', text: s.name }),
        last === null ? null : el('span', { class: 'legend-value', text: fmtValue(last, unit) })));
    });
    return legend;
  }

  function renderTimeseries(body, data, panel) {
    const all = toSeries(data);
    if (!all.length) return false;
    const MAX = 20; // more lines than this are noise on a small panel
    const series = all.slice(0, MAX);
    const chart = el('div', { class: 'chart' });
    body.append(chart);
    const legend = legendFor(series, panel.unit);
    if (all.length > MAX) legend.append(el('span', { class: 'legend-more', text: `+${all.length - MAX} more` }));
    body.append(legend);
    const width = Math.max(120, chart.clientWidth);
    const height = Math.max(80, chart.clientHeight);
    const x0 = data.from;
    const x1 = data.to;
    const values = series.flatMap((s) => s.points.map((p) => p[1]));
    const root = svg('svg', { width, height, class: 'plot' });
    const f = drawFrame(root, width, height, x0, x1, values, panel.unit, { zero: Math.min(...values) >= 0 });
    // Consecutive points are joined whatever the distance, as Grafana does with ClickHouse
    // results (no nulls in them); sparse series also get dots, so a lone point shows.
    series.forEach((s, i) => {
      const pts = s.points.filter((p) => p[0] >= x0 - 1 && p[0] <= x1 + 1);
      if (!pts.length) return;
      const xy = pts.map(([t, v]) => [f.sx(t).toFixed(1), f.sy(v).toFixed(1)]);
      const d = xy.map(([x, y], k) => `${k ? 'L' : 'M'}${x},${y}`).join('');
      if (series.length <= 2) { // fills of many overlapping series only blur them
        const base = f.sy(Math.max(f.yd.lo, Math.min(0, f.yd.hi))).toFixed(1);
        const area = `M${xy[0][0]},${base}${xy.map(([x, y]) => `L${x},${y}`).join('')}L${xy[xy.length - 1][0]},${base}Z`;
        root.append(svg('path', { d: area, fill: color(i), 'fill-opacity': 0.1, stroke: 'none' }));
      }
      root.append(svg('path', { d, fill: 'none', stroke: color(i), 'stroke-width': 1.6, 'stroke-linejoin': 'round', class: 'line' }));
      if (pts.length <= 60) {
        for (const [x, y] of xy) root.append(svg('circle', { cx: x, cy: y, r: pts.length === 1 ? 3 : 2, fill: color(i) }));
      }
    });
    attachHover(chart, root, f, series, panel.unit);
    chart.append(root);
    return true;
  }

  function nearest(points, t) {
    let lo = 0;
    let hi = points.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid][0] < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && Math.abs(points[lo - 1][0] - t) < Math.abs(points[lo][0] - t)) lo -= 1;
    return points[lo];
  }

  function attachHover(chart, root, f, series, unit) {
    const cross = svg('line', { class: 'crosshair', y1: f.box.top, y2: f.box.bottom, visibility: 'hidden' });
    root.append(cross);
    const tip = el('div', { class: 'tooltip', hidden: true });
    chart.append(tip);
    root.addEventListener('mousemove', (e) => {
      const rect = root.getBoundingClientRect();
      const x = e.clientX - rect.left;
      if (x < f.box.left || x > f.box.right) {
        cross.setAttribute('visibility', 'hidden');
        tip.hidden = true;
        return;
      }
      const time = f.x0 + ((x - f.box.left) / Math.max(1, f.box.right - f.box.left)) * (f.x1 - f.x0);
      let best = null;
      const lines = [];
      series.forEach((s, i) => {
        if (!s.points.length) return;
        const p = nearest(s.points, time);
        if (best === null || Math.abs(p[0] - time) < Math.abs(best - time)) best = p[0];
        lines.push({ i, name: s.name, p });
      });
      if (best === null) return;
      const shown = lines.filter((l) => l.p[0] === best).sort((l1, l2) => l2.p[1] - l1.p[1]).slice(0, 12);
      const bx = f.sx(best);
      cross.setAttribute('x1', bx);
      cross.setAttribute('x2', bx);
      cross.setAttribute('visibility', 'visible');
      tip.replaceChildren(el('div', { class: 'tooltip-time', text: fmtDate(best, true) }),
        ...shown.map((l) => el('div', { class: 'tooltip-row' },
          el('i', { class: 'swatch', style: `background:${color(l.i)}` }),
          el('span', { class: 'tooltip-name', text: l.name }),
          el('b', { text: fmtValue(l.p[1], unit) }))));
      tip.hidden = false;
      const left = bx + 14 + tip.offsetWidth > rect.width ? bx - tip.offsetWidth - 14 : bx + 14;
      tip.style.left = `${Math.max(0, left)}px`;
      tip.style.top = `${f.box.top + 4}px`;
    });
    root.addEventListener('mouseleave', () => {
      cross.setAttribute('visibility', 'hidden');
      tip.hidden = true;
    });
  }

  /* Bars over time (a time column): grouped columns on a time axis. */
  function renderColumns(body, data, panel) {
    const series = toSeries(data).slice(0, 12);
    if (!series.length) return false;
    const chart = el('div', { class: 'chart' });
    body.append(chart);
    if (series.length > 1) body.append(legendFor(series, panel.unit));
    const width = Math.max(120, chart.clientWidth);
    const height = Math.max(80, chart.clientHeight);
    const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
    let band = Infinity;
    for (let i = 1; i < times.length; i++) band = Math.min(band, times[i] - times[i - 1]);
    if (!Number.isFinite(band)) band = (data.interval_s || 3600) * 1000;
    const x0 = Math.min(data.from, times[0] - band / 2);
    const x1 = Math.max(data.to, times[times.length - 1] + band / 2);
    const values = series.flatMap((s) => s.points.map((p) => p[1]));
    const root = svg('svg', { width, height, class: 'plot' });
    const f = drawFrame(root, width, height, x0, x1, values, panel.unit, { zero: true });
    const bandPx = Math.max(1, f.sx(x0 + band) - f.sx(x0));
    const barW = Math.max(1, (bandPx * 0.8) / series.length);
    const zero = f.sy(0);
    series.forEach((s, i) => {
      for (const [t, v] of s.points) {
        const x = f.sx(t) - (bandPx * 0.8) / 2 + i * barW;
        const y = f.sy(v);
        root.append(svg('rect', {
          x: x.toFixed(1), y: Math.min(y, zero).toFixed(1), width: Math.max(1, barW - 1).toFixed(1),
          height: Math.max(1, Math.abs(zero - y)).toFixed(1), fill: color(i), class: 'bar',
        }));
      }
    });
    attachHover(chart, root, f, series, panel.unit);
    chart.append(root);
    return true;
  }

  /* Horizontal bars per category (barchart, bargauge), from a zero line (negatives go left). */
  function renderBars(body, data, panel) {
    const { items, names } = toCategories(data);
    if (!items.length || !names.length) return false;
    const MAX = 60;
    const shown = items.slice(0, MAX);
    const values = shown.flatMap((it) => it.values.filter((v) => v !== null));
    const lo = Math.min(0, ...values);
    const hi = Math.max(0, ...values);
    const span = hi - lo || 1;
    const pos = (v) => ((v - lo) / span) * 100;
    const list = el('div', { class: `bars ${panel.type === 'bargauge' ? 'gauge' : ''}` });
    // one column width for every row, so that bar lengths compare across rows
    const valueText = shown.map((it) => it.values.map((v) => fmtValue(v, panel.unit)).join(' · '));
    const labelW = Math.min(body.clientWidth * 0.3, Math.max(40, ...shown.map((it) => textWidth(it.label || '–') + 4)));
    const valueW = Math.max(...valueText.map((t) => textWidth(t) + 4));
    list.style.setProperty('--bar-columns', `${labelW.toFixed(0)}px minmax(40px, 1fr) ${valueW.toFixed(0)}px`);
    for (const [n, it] of shown.entries()) {
      const tracks = el('div', { class: 'bar-tracks' });
      it.values.forEach((v, i) => {
        const a = pos(Math.min(0, v || 0));
        const b = pos(Math.max(0, v || 0));
        tracks.append(el('div', { class: 'bar-track', title: `${names[i]}: ${fmtValue(v, panel.unit)}` },
          el('div', { class: 'bar-fill', style: `left:${a}%;width:${Math.max(0.4, b - a)}%;background:${color(names.length > 1 ? i : 0)}` })));
      });
      list.append(el('div', { class: 'bar-row' },
        el('span', { class: 'bar-label', title: it.label, text: it.label || '–' }),
        tracks,
        el('span', { class: 'bar-value', text: valueText[n] })));
    }
    body.append(list);
    if (names.length > 1) {
      body.append(legendFor(names.map((n) => ({ name: n, points: [] })), panel.unit));
    }
    if (items.length > MAX) body.append(el('div', { class: 'panel-foot', text: `first ${MAX} of ${items.length}` }));
    return true;
  }

  function renderPie(body, data, panel) {
    const { items } = toCategories(data);
    const parts = items.map((it) => ({ label: it.label || '–', value: Number(it.values[0]) || 0 }))
      .filter((p) => p.value > 0);
    if (!parts.length) return false;
    const total = parts.reduce((s, p) => s + p.value, 0);
    const wrap = el('div', { class: 'pie' });
    const size = Math.max(60, Math.min(body.clientHeight - 8, body.clientWidth * 0.5));
    const r = size / 2;
    const inner = r * 0.58;
    const root = svg('svg', { width: size, height: size, viewBox: `${-r} ${-r} ${size} ${size}` });
    let angle = -Math.PI / 2;
    parts.forEach((p, i) => {
      const sweep = (p.value / total) * Math.PI * 2;
      const a1 = angle + Math.min(sweep, Math.PI * 2 - 1e-4);
      const large = sweep > Math.PI ? 1 : 0;
      const pt = (a, rad) => `${(Math.cos(a) * rad).toFixed(2)},${(Math.sin(a) * rad).toFixed(2)}`;
      const d = `M${pt(angle, r)}A${r},${r} 0 ${large} 1 ${pt(a1, r)}L${pt(a1, inner)}A${inner},${inner} 0 ${large} 0 ${pt(angle, inner)}Z`;
      const slice = svg('path', { d, fill: color(i), stroke: '#181b1f', 'stroke-width': 1 });
      slice.append(svg('title', { text: `${p.label}: ${fmtValue(p.value, panel.unit)}` }));
      root.append(slice);
      angle += sweep;
    });
    root.append(svg('text', { x: 0, y: 5, 'text-anchor': 'middle', class: 'pie-total', text: fmtValue(total, panel.unit) }));
    const legend = el('div', { class: 'pie-legend' });
    parts.forEach((p, i) => legend.append(el('div', { class: 'legend-item' },
      el('i', { class: 'swatch', style: `background:${color(i)}` }),
      el('span', { class: 'legend-name', text: p.label, title: p.label }),
      el('span', { class: 'legend-value', text: `${fmtValue(p.value, panel.unit)} (${trimNumber((100 * p.value) / total, 1)}%)` }))));
    wrap.append(root, legend);
    body.append(wrap);
    return true;
  }

  function renderStat(body, data, panel) {
    const { time, strings, numbers } = columnsOf(data);
    if (!numbers.length || !data.rows.length) return false;
    let tiles = [];
    if (time && strings.length) { // long series: the last value of each
      for (const s of toSeries(data)) tiles.push({ label: s.name, value: s.points[s.points.length - 1][1], spark: s.points });
    } else if (strings.length && data.rows.length > 1) { // one tile per row
      tiles = data.rows.map((row) => ({
        label: strings.map((c) => String(row[c.index])).join(' / '), value: row[numbers[0].index],
      }));
    } else {
      const rows = time ? [...data.rows].sort((a, b) => a[time.index] - b[time.index]) : data.rows;
      const last = rows[rows.length - 1];
      tiles = numbers.map((c) => ({
        label: numbers.length > 1 ? c.name : (strings.length ? String(last[strings[0].index]) : ''),
        value: last[c.index],
        spark: time && rows.length > 2 ? rows.map((r) => [r[time.index], r[c.index]]) : null,
      }));
    }
    tiles = tiles.slice(0, 24);
    const grid = el('div', { class: 'stats' });
    body.append(grid);
    const cols = Math.ceil(Math.sqrt((tiles.length * grid.clientWidth) / Math.max(1, grid.clientHeight) / 2.2)) || 1;
    const ncols = Math.min(tiles.length, Math.max(1, cols));
    const nrows = Math.ceil(tiles.length / ncols);
    grid.style.gridTemplateColumns = `repeat(${ncols}, 1fr)`;
    const tileW = grid.clientWidth / ncols;
    const tileH = grid.clientHeight / nrows;
    tiles.forEach((t, i) => {
      const text = fmtValue(t.value, panel.unit);
      const size = Math.max(12, Math.min(tileH * (t.label ? 0.42 : 0.55), (tileW * 0.9) / Math.max(2, text.length * 0.6), 64));
      const tile = el('div', { class: 'stat' },
        el('div', { class: 'stat-value', style: `font-size:${size.toFixed(0)}px;color:${tiles.length > 1 ? color(i) : '#73bf69'}`, text }),
        t.label ? el('div', { class: 'stat-label', text: t.label, title: t.label }) : null);
      if (t.spark) tile.prepend(sparkline(t.spark, tileW, tileH, tiles.length > 1 ? color(i) : '#73bf69'));
      grid.append(tile);
    });
    return true;
  }

  function sparkline(points, width, height, stroke) {
    const pts = points.filter((p) => p[1] !== null);
    const root = svg('svg', { class: 'spark', width: Math.max(10, width - 8), height: Math.max(10, height * 0.4), preserveAspectRatio: 'none' });
    if (pts.length < 2) return root;
    const w = Math.max(10, width - 8);
    const h = Math.max(10, height * 0.4);
    const t0 = pts[0][0];
    const t1 = pts[pts.length - 1][0];
    const vs = pts.map((p) => p[1]);
    const lo = Math.min(...vs);
    const hi = Math.max(...vs);
    const x = (t) => ((t - t0) / (t1 - t0 || 1)) * w;
    const y = (v) => h - 2 - ((v - lo) / (hi - lo || 1)) * (h - 4);
    const d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
    root.append(svg('path', { d: `${d}L${w},${h}L0,${h}Z`, fill: stroke, 'fill-opacity': 0.12, stroke: 'none' }));
    root.append(svg('path', { d, fill: 'none', stroke, 'stroke-width': 1.2, 'stroke-opacity': 0.7 }));
    return root;
  }

  function renderTable(body, data) {
    if (!data.rows.length) return false;
    const LIMIT = 1000; // the DOM stays quick; the server sends at most 5,000
    const cols = data.columns;
    const wrap = el('div', { class: 'table-wrap' });
    const table = el('table', { class: 'table' });
    const thead = el('thead');
    const tbody = el('tbody');
    let sortCol = -1;
    let sortDir = 1;
    const fill = () => {
      let rows = data.rows;
      if (sortCol >= 0) {
        rows = [...rows].sort((a, b) => {
          const x = a[sortCol];
          const y = b[sortCol];
          if (x === y) return 0;
          if (x === null) return 1;
          if (y === null) return -1;
          return (x < y ? -1 : 1) * sortDir;
        });
      }
      tbody.replaceChildren(...rows.slice(0, LIMIT).map((row) => el('tr', {},
        ...cols.map((c, i) => el('td', { class: c.type === 'number' ? 'num' : c.type, text: fmtCell(row[i], c), title: typeof row[i] === 'string' && row[i].length > 40 ? row[i] : null })))));
    };
    thead.append(el('tr', {}, ...cols.map((c, i) => el('th', {
      class: c.type === 'number' ? 'num' : c.type,
      title: 'sort',
      onclick: () => {
        sortDir = sortCol === i ? -sortDir : 1;
        sortCol = i;
        thead.querySelectorAll('th').forEach((th, j) => { th.dataset.sort = j === i ? (sortDir > 0 ? 'asc' : 'desc') : ''; });
        fill();
      },
    }, c.name))));
    fill();
    table.append(thead, tbody);
    wrap.append(table);
    body.append(wrap);
    const shown = Math.min(LIMIT, data.rows.length);
    if (data.truncated || data.rows.length > LIMIT) {
      body.append(el('div', { class: 'panel-foot', text: `showing the first ${shown.toLocaleString('en-US')} rows` }));
    } else {
      body.append(el('div', { class: 'panel-foot', text: `${data.rows.length.toLocaleString('en-US')} rows` }));
    }
    return true;
  }

  function render(body, data, panel) {
    switch (panel.type) {
      case 'timeseries': return renderTimeseries(body, data, panel);
      case 'stat': return renderStat(body, data, panel);
      case 'table': return renderTable(body, data, panel);
      case 'piechart': return renderPie(body, data, panel);
      case 'barchart': case 'bargauge':
        if (columnsOf(data).time && !columnsOf(data).strings.length) return renderColumns(body, data, panel);
        return renderBars(body, data, panel);
      default:
        return columnsOf(data).time ? renderTimeseries(body, data, panel) : renderTable(body, data, panel);
    }
  }

  // ---- page state -----------------------------------------------------------------------------
  const TIME_PRESETS = [
    ['now/d', 'now', 'Today so far'], ['now-1h', 'now', 'Last 1 hour'], ['now-6h', 'now', 'Last 6 hours'], ['now-24h', 'now', 'Last 24 hours'],
    ['now-7d', 'now', 'Last 7 days'], ['now-30d', 'now', 'Last 30 days'], ['all', 'all', 'All data'],
  ];
  const REFRESH_OPTIONS = [['', 'Off'], ['5s', '5s'], ['10s', '10s'], ['30s', '30s'], ['1m', '1m']];

  const state = {
    dashboards: [], defaultRange: null, dash: null, from: null, to: null, refresh: '',
    vars: {}, timer: null, loading: false, loads: 0, panels: new Map(),
  };

  function parseRefresh(text) {
    const m = /^(\d+)(s|m|h)$/.exec(text || '');
    return m ? Number(m[1]) * { s: 1000, m: 60000, h: 3600000 }[m[2]] : 0;
  }

  function writeUrl() {
    const p = new URLSearchParams();
    p.set('from', state.from);
    p.set('to', state.to);
    p.set('refresh', state.refresh || 'off');
    for (const [name, values] of Object.entries(state.vars)) {
      if (values === null) p.append(`var-${name}`, 'All');
      else values.forEach((v) => p.append(`var-${name}`, v));
    }
    history.replaceState(null, '', `${location.pathname}?${p.toString()}`);
  }

  function queryParams(extra) {
    const p = new URLSearchParams({ from: state.from, to: state.to });
    for (const [name, values] of Object.entries(state.vars)) {
      if (values === null) p.append(`var-${name}`, 'All');
      else values.forEach((v) => p.append(`var-${name}`, v));
    }
    for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
    return p.toString();
  }

  // ---- controls ---------------------------------------------------------------------------------
  function setupTime() {
    const select = document.getElementById('time-select');
    const options = TIME_PRESETS.map(([f, t, label]) => ({ value: `${f}|${t}`, label }));
    const current = `${state.from}|${state.to}`;
    if (!options.some((o) => o.value === current)) {
      const show = (x) => (/^\d{9,14}$/.test(x) ? fmtDate(Number(x)) : x);
      options.push({ value: current, label: `${show(state.from)} → ${show(state.to)}` });
    }
    select.replaceChildren(...options.map((o) => el('option', { value: o.value, text: o.label, selected: o.value === current })));
    select.onchange = () => {
      [state.from, state.to] = select.value.split('|');
      writeUrl();
      loadPanels();
    };
  }

  function setupRefresh() {
    const select = document.getElementById('refresh-select');
    const known = REFRESH_OPTIONS.some(([v]) => v === state.refresh);
    const options = known ? REFRESH_OPTIONS : [...REFRESH_OPTIONS, [state.refresh, state.refresh]];
    select.replaceChildren(...options.map(([v, label]) => el('option', { value: v, text: label, selected: v === state.refresh })));
    select.onchange = () => {
      state.refresh = select.value;
      writeUrl();
      scheduleRefresh();
    };
    document.getElementById('refresh-now').onclick = () => loadPanels();
  }

  function scheduleRefresh() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    const ms = parseRefresh(state.refresh);
    if (ms > 0) state.timer = setInterval(() => { if (!state.loading) loadPanels(); }, ms);
  }

  async function setupVariables(dash, params) {
    const box = document.getElementById('variables');
    box.replaceChildren();
    state.vars = {};
    for (const v of dash.variables) {
      const raw = [...params.getAll(`var-${v.name}`), ...params.getAll(v.name)];
      if (v.type === 'textbox') { // free text (the client view's search): never split on commas
        state.vars[v.name] = [raw.length ? raw[0] : ((v.current || [])[0] || '')];
        box.append(textControl(dash, v));
        continue;
      }
      let asked = raw.flatMap((x) => x.split(',')).filter((x) => x);
      let values = [];
      try {
        // the values chosen so far go along: a variable's query may use them (chained)
        const res = await getJSON(`/api/variables/${encodeURIComponent(dash.uid)}/${encodeURIComponent(v.name)}?${queryParams()}`);
        values = res.values;
      } catch (e) {
        values = [];
      }
      // a value the list no longer offers (the search changed) gives way to the default
      asked = asked.filter((x) => values.includes(x) || ['All', 'all', '$__all'].includes(x));
      if (!asked.length) { // the definition's default, as Grafana would start
        const current = (v.current || []).filter((x) => x === '$__all' || values.includes(x));
        if (current.length) asked.push(...current);
        else if (!(v.include_all || v.multi) && values.length) asked.push(values[0]);
      }
      const all = !asked.length || asked.some((x) => ['All', 'all', '$__all'].includes(x));
      state.vars[v.name] = all ? null : (v.multi ? asked : asked.slice(0, 1));
      box.append(variableControl(v, values));
    }
  }

  function textControl(dash, v) {
    const wrap = el('div', { class: 'control variable', 'data-variable': v.name });
    const input = el('input', {
      type: 'search', class: 'variable-text', value: state.vars[v.name][0], placeholder: v.description || v.label || v.name,
      title: v.description || '', maxlength: '200', 'aria-label': v.label || v.name,
    });
    input.onchange = async () => { // Enter or leaving the box: the variables after it are listed again
      state.vars[v.name] = [input.value];
      writeUrl();
      await setupVariables(dash, new URLSearchParams(location.search));
      writeUrl();
      loadPanels();
    };
    wrap.append(el('span', { class: 'control-label', text: v.label || v.name }), input);
    return wrap;
  }

  function variableControl(v, values) {
    const wrap = el('div', { class: 'control variable', 'data-variable': v.name });
    const button = el('button', { type: 'button', class: 'variable-button' });
    const menu = el('div', { class: 'variable-menu', hidden: true });
    const label = () => {
      const chosen = state.vars[v.name];
      button.textContent = chosen === null ? 'All' : chosen.join(' + ') || 'None';
    };
    const choose = (value, on) => {
      let chosen = state.vars[v.name];
      if (value === null) chosen = null;
      else if (!v.multi) chosen = [value];
      else {
        chosen = chosen === null ? [] : [...chosen];
        if (on) chosen.push(value);
        else chosen = chosen.filter((x) => x !== value);
        if (!chosen.length || chosen.length === values.length) chosen = null;
      }
      state.vars[v.name] = chosen;
      label();
      drawMenu();
      writeUrl();
      loadPanels();
    };
    const drawMenu = () => {
      const chosen = state.vars[v.name];
      const rows = [];
      if (v.include_all || v.multi) {
        rows.push(el('label', { class: 'variable-option' },
          el('input', { type: v.multi ? 'checkbox' : 'radio', name: `var-${v.name}`, checked: chosen === null, onchange: () => choose(null, true) }),
          el('span', { text: 'All' })));
      }
      for (const value of values) {
        rows.push(el('label', { class: 'variable-option' },
          el('input', { type: v.multi ? 'checkbox' : 'radio', name: `var-${v.name}`, checked: chosen !== null && chosen.includes(value), onchange: (e) => choose(value, e.target.checked) }),
          el('span', { text: value })));
      }
      menu.replaceChildren(...rows);
    };
    button.onclick = (e) => {
      e.stopPropagation();
      menu.hidden = !menu.hidden;
    };
    document.addEventListener('click', (e) => { if (!wrap.contains(e.target)) menu.hidden = true; });
    label();
    drawMenu();
    wrap.append(el('span', { class: 'control-label', text: v.label || v.name }), button, menu);
    return wrap;
  }

  // ---- panels --------------------------------------------------------------------------------------
  function panelBox(panel) {
    const g = panel.grid;
    const body = el('div', { class: 'panel-body' });
    const status = el('span', { class: 'panel-status' });
    const info = panel.query ? el('span', { class: 'panel-info', title: panel.query, text: 'ⓘ' }) : null;
    const box = el('section', {
      class: `panel panel-${panel.type}`, 'data-panel-id': panel.id, 'data-type': panel.type,
      'data-datasource': panel.datasource, 'data-state': 'loading',
      style: `grid-column:${g.x + 1} / span ${g.w};grid-row:${g.y + 1} / span ${g.h}`,
    }, el('header', { class: 'panel-header' },
      el('h2', { class: 'panel-title', text: panel.title, title: panel.description || panel.title }), status, info), body);
    return { box, body, status, panel, data: null };
  }

  function showPanel(p) {
    const { body, panel, data } = p;
    body.replaceChildren();
    if (data.error) {
      p.box.dataset.state = 'error';
      body.append(el('div', { class: 'panel-error', role: 'alert', text: data.error }));
      return;
    }
    if (data.unsupported) {
      p.box.dataset.state = 'unsupported';
      body.append(el('div', { class: 'panel-note', text: data.unsupported }));
      return;
    }
    let drawn = false;
    try {
      drawn = render(body, data, panel);
    } catch (e) {
      reportError(`panel ${panel.id} (${panel.title}): ${e.message}`);
      body.replaceChildren(el('div', { class: 'panel-error', role: 'alert', text: `cannot draw: ${e.message}` }));
      p.box.dataset.state = 'error';
      return;
    }
    if (!drawn) {
      body.replaceChildren(el('div', { class: 'panel-empty', text: 'No data' }));
      p.box.dataset.state = 'empty';
    } else {
      p.box.dataset.state = 'ok';
    }
  }

  async function loadPanel(p) {
    p.status.textContent = '…';
    const points = Math.max(100, Math.min(2000, Math.round(p.body.clientWidth / 2) || 500));
    const url = `/api/dashboards/${encodeURIComponent(state.dash.uid)}/panels/${encodeURIComponent(p.panel.id)}?${queryParams({ points })}`;
    try {
      p.data = await getJSON(url);
      const n = p.data.rows ? p.data.rows.length : 0;
      p.status.textContent = '';
      p.status.title = `${n} rows in ${p.data.took_ms} ms`;
    } catch (e) {
      p.data = { error: e.message };
      p.status.textContent = '';
    }
    showPanel(p);
  }

  async function loadPanels() {
    if (!state.dash) return;
    state.loading = true;
    document.getElementById('busy').hidden = false;
    const queue = [...state.panels.values()];
    const worker = async () => {
      while (queue.length) await loadPanel(queue.shift());
    };
    // a few at a time: the server runs one query at a time anyway
    await Promise.all([worker(), worker(), worker(), worker()]);
    state.loading = false;
    state.loads += 1;
    document.getElementById('busy').hidden = true;
    document.body.dataset.loads = String(state.loads);
    document.body.dataset.ready = '1';
  }

  function redraw() {
    for (const p of state.panels.values()) if (p.data) showPanel(p);
  }

  // ---- pages ---------------------------------------------------------------------------------------
  function showUser(user) {
    const box = document.getElementById('user');
    if (!box || !user) return;
    const scope = user.role === 'admin' ? 'every tenant' : user.tenants.join(', ');
    box.replaceChildren(
      el('span', { id: 'user-name', text: user.name, title: `${user.role}: ${scope}` }),
      el('form', { method: 'post', action: '/logout' }, el('button', { type: 'submit', id: 'logout', text: 'Log out' })));
    box.dataset.tenants = user.tenants.join(',');
    box.hidden = false;
  }

  function showIndex() {
    document.title = 'brokerstream dashboards';
    const content = document.getElementById('content');
    const keep = location.search;
    const cards = state.dashboards.map((d) => {
      const kinds = [...new Set(d.panels.map((p) => p.datasource))].join(', ');
      return el('a', { class: 'card', href: `/d/${encodeURIComponent(d.uid)}${keep}`, 'data-uid': d.uid },
        el('h2', { text: d.title }),
        el('p', { text: `${d.panels.length} panels · ${kinds || 'no panels'}` }),
        el('p', { class: 'muted', text: `refresh ${d.refresh || 'off'} · ${d.time.from} → ${d.time.to}` }));
    });
    content.replaceChildren(
      el('h1', { class: 'page-title', text: 'Dashboards' }),
      el('p', { class: 'muted intro', text: 'The same definitions as the Grafana dashboards in dashboards/, rendered by the engine itself against its ClickHouse.' }),
      cards.length ? el('div', { class: 'cards' }, ...cards) : el('p', { class: 'panel-empty', text: 'No dashboards found.' }));
    document.body.dataset.ready = '1';
  }

  async function showDashboard(uid) {
    const dash = state.dashboards.find((d) => d.uid === uid);
    const content = document.getElementById('content');
    if (!dash) {
      content.replaceChildren(el('div', { class: 'panel-error', text: `no dashboard ${uid}` }));
      reportError(`no dashboard ${uid}`);
      return;
    }
    state.dash = dash;
    document.title = `${dash.title} · brokerstream`;
    const params = new URLSearchParams(location.search);
    const fallback = state.defaultRange || [dash.time.from, dash.time.to];
    state.from = params.get('from') || fallback[0] || 'now-6h';
    state.to = params.get('to') || fallback[1] || 'now';
    state.refresh = params.has('refresh') ? (params.get('refresh') === 'off' ? '' : params.get('refresh')) : dash.refresh || '';
    const select = document.getElementById('dashboard-select');
    select.replaceChildren(...state.dashboards.map((d) => el('option', { value: d.uid, text: d.title, selected: d.uid === uid })));
    select.hidden = false;
    select.onchange = () => { location.href = `/d/${encodeURIComponent(select.value)}?${queryParams()}&refresh=${state.refresh || 'off'}`; };
    document.getElementById('controls').hidden = false;
    setupTime();
    setupRefresh();
    await setupVariables(dash, params);
    const grid = el('div', { class: 'grid' });
    state.panels = new Map();
    for (const panel of dash.panels) {
      const p = panelBox(panel);
      state.panels.set(panel.id, p);
      grid.append(p.box);
    }
    content.replaceChildren(grid);
    writeUrl();
    scheduleRefresh();
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(redraw, 150);
    });
    await loadPanels();
  }

  async function main() {
    try {
      const res = await getJSON('/api/dashboards');
      state.dashboards = res.dashboards;
      state.defaultRange = res.default_range;
      showUser(res.user);
    } catch (e) {
      document.getElementById('content').replaceChildren(el('div', { class: 'panel-error', text: `cannot load the dashboards: ${e.message}` }));
      return;
    }
    const m = /^\/d\/([^/]+)/.exec(location.pathname);
    if (m) await showDashboard(decodeURIComponent(m[1]));
    else showIndex();
  }

  main();
}());

/* brokerstream's built-in dashboard page: the dashboards/ definitions, rendered without Grafana.
 *
 * Plain JS, no build step, no network beyond this server. The server runs each panel's query
 * (/api/dashboards/<uid>/panels/<id>) and answers columns (name, type: time|number|string|
 * boolean) and rows; this file draws them: time series, column, bar, pie and sparkline charts
 * with Apache ECharts (vendored in static/vendor/, loaded by index.html), stat values and
 * tables in HTML. Every panel carries data-state="loading|ok|empty|error|unsupported";
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

  // ---- charts: Apache ECharts (static/vendor/, see its README) ------------------------------
  // Every chart is an ECharts instance in a `.chart` box (SVG renderer, dark theme, UTC); the
  // boxes of a panel are disposed of before it is drawn again.
  const AXIS_LABEL = { color: '#9a9aab', fontSize: 11 };
  const SPLIT_LINE = { show: true, lineStyle: { color: 'rgba(255, 255, 255, 0.07)' } };
  const TIME_LABELS = {
    year: '{yyyy}', month: '{yyyy}-{MM}', day: '{MM}-{dd}', hour: '{HH}:{mm}', minute: '{HH}:{mm}',
    second: '{HH}:{mm}:{ss}', millisecond: '{HH}:{mm}:{ss}',
  };
  const TOOLTIP_STYLE = {
    backgroundColor: '#22252b', borderColor: '#34373d', textStyle: { color: '#ccccdc', fontSize: 12 },
    confine: true,
  };
  const TEXT = '#ccccdc';

  const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  function chartIn(box, option) {
    if (!window.echarts) throw new Error('the chart library (static/vendor/echarts.common.min.js) did not load');
    const chart = window.echarts.init(box, 'dark', { renderer: 'svg' });
    chart.setOption({
      backgroundColor: 'transparent', color: PALETTE, animation: false, useUTC: true,
      textStyle: { fontFamily: getComputedStyle(document.body).fontFamily }, ...option,
    });
    box.dataset.chart = 'echarts';
    return chart;
  }

  function disposeCharts(body) {
    if (!window.echarts) return;
    for (const node of body.querySelectorAll('[data-chart="echarts"]')) {
      const chart = window.echarts.getInstanceByDom(node);
      if (chart) chart.dispose();
    }
  }

  /* A legend under the chart: name and last value, scrolling when long; a click hides a series. */
  function legendOption(names, valueOf) {
    return {
      type: 'scroll', bottom: 0, left: 0, icon: 'roundRect', itemWidth: 14, itemHeight: 4,
      textStyle: { color: TEXT, fontSize: 12 }, pageTextStyle: { color: TEXT },
      formatter: (name) => (valueOf && valueOf(name) !== null ? `${name}  ${valueOf(name)}` : name),
      data: names,
    };
  }

  /* The tooltip of the time charts: the time, then each series' value there, largest first. */
  function timeTooltip(unit) {
    return {
      ...TOOLTIP_STYLE, trigger: 'axis',
      axisPointer: { type: 'line', lineStyle: { color: '#b0b0c0', type: 'dashed' } },
      formatter: (params) => {
        const list = (Array.isArray(params) ? params : [params]).filter((p) => p.value && p.value[1] !== null);
        if (!list.length) return '';
        list.sort((a, b) => b.value[1] - a.value[1]);
        const rows = list.slice(0, 12).map((p) => `<div class="tooltip-row">${p.marker}<span class="tooltip-name">` +
          `${escapeHtml(p.seriesName)}</span><b>${escapeHtml(fmtValue(p.value[1], unit))}</b></div>`);
        return `<div class="tooltip-time">${fmtDate(list[0].value[0], true)}</div>${rows.join('')}`;
      },
    };
  }

  function timeAxis(min, max) {
    return {
      type: 'time', min, max, splitLine: SPLIT_LINE,
      axisLabel: { ...AXIS_LABEL, formatter: TIME_LABELS, hideOverlap: true },
    };
  }

  function valueAxis(unit) {
    return { type: 'value', splitLine: SPLIT_LINE, axisLabel: { ...AXIS_LABEL, formatter: (v) => fmtValue(v, unit) } };
  }

  function lastValues(series, unit) {
    const last = new Map(series.map((s) => [s.name, s.points.length ? s.points[s.points.length - 1][1] : null]));
    return (name) => (last.get(name) === null || last.get(name) === undefined ? null : fmtValue(last.get(name), unit));
  }

  function renderTimeseries(body, data, panel) {
    const all = toSeries(data);
    if (!all.length) return false;
    const MAX = 20; // more lines than this are noise on a small panel
    const series = all.slice(0, MAX);
    const box = el('div', { class: 'chart' });
    body.append(box);
    if (all.length > MAX) body.append(el('div', { class: 'panel-foot', text: `first ${MAX} of ${all.length} series` }));
    // Consecutive points are joined whatever the distance, as Grafana does with ClickHouse
    // results (no nulls in them); sparse series also get dots, so a lone point shows.
    chartIn(box, {
      grid: { left: 4, right: 12, top: 10, bottom: 32, containLabel: true },
      xAxis: timeAxis(data.from, data.to),
      yAxis: valueAxis(panel.unit),
      tooltip: timeTooltip(panel.unit),
      legend: legendOption(series.map((s) => s.name), lastValues(series, panel.unit)),
      series: series.map((s) => ({
        type: 'line', name: s.name, data: s.points, connectNulls: true,
        showSymbol: s.points.length <= 60, symbol: 'circle', symbolSize: s.points.length === 1 ? 6 : 4,
        lineStyle: { width: 1.6 }, emphasis: { disabled: true },
        areaStyle: series.length <= 2 ? { opacity: 0.1 } : undefined, // fills of many series only blur them
      })),
    });
    return true;
  }

  /* Bars over time (a time column): grouped columns on a time axis. */
  function renderColumns(body, data, panel) {
    const series = toSeries(data).slice(0, 12);
    if (!series.length) return false;
    const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
    let band = Infinity;
    for (let i = 1; i < times.length; i++) band = Math.min(band, times[i] - times[i - 1]);
    if (!Number.isFinite(band)) band = (data.interval_s || 3600) * 1000;
    const box = el('div', { class: 'chart' });
    body.append(box);
    chartIn(box, {
      grid: { left: 4, right: 12, top: 10, bottom: series.length > 1 ? 32 : 4, containLabel: true },
      xAxis: timeAxis(Math.min(data.from, times[0] - band / 2), Math.max(data.to, times[times.length - 1] + band / 2)),
      yAxis: valueAxis(panel.unit),
      tooltip: { ...timeTooltip(panel.unit), axisPointer: { type: 'shadow' } },
      legend: series.length > 1 ? legendOption(series.map((s) => s.name), lastValues(series, panel.unit)) : undefined,
      series: series.map((s) => ({ type: 'bar', name: s.name, data: s.points, barMaxWidth: 40, emphasis: { disabled: true } })),
    });
    return true;
  }

  /* Horizontal bars per category (barchart, bargauge), from a zero line (negatives go left);
   * a long list scrolls, each row keeping its height. */
  function renderBars(body, data, panel) {
    const { items, names } = toCategories(data);
    if (!items.length || !names.length) return false;
    const MAX = 60;
    const shown = items.slice(0, MAX);
    const rowPx = (panel.type === 'bargauge' ? 22 : 18) * Math.max(1, names.length) + 6;
    const legend = names.length > 1 ? 26 : 0;
    const scroll = el('div', { class: 'chart-scroll' });
    body.append(scroll);
    const box = el('div', { class: 'chart' });
    box.style.height = `${Math.max(scroll.clientHeight, shown.length * rowPx + legend + 24)}px`;
    scroll.append(box);
    const labels = shown.map((it) => it.label || '–');
    chartIn(box, {
      grid: { left: 4, right: 16, top: legend + 4, bottom: 4, containLabel: true },
      yAxis: {
        type: 'category', inverse: true, data: labels, axisTick: { show: false },
        axisLabel: { ...AXIS_LABEL, color: TEXT, width: Math.max(60, box.clientWidth * 0.3), overflow: 'truncate' },
      },
      xAxis: valueAxis(panel.unit),
      tooltip: {
        ...TOOLTIP_STYLE, trigger: 'axis', axisPointer: { type: 'shadow' },
        valueFormatter: (v) => fmtValue(v, panel.unit),
      },
      legend: names.length > 1 ? { ...legendOption(names), top: 0, bottom: 'auto' } : undefined, // above: the list scrolls
      series: names.map((name, i) => ({
        type: 'bar', name, data: shown.map((it) => it.values[i]), barMaxWidth: panel.type === 'bargauge' ? 18 : 14,
        itemStyle: { color: PALETTE[names.length > 1 ? i % PALETTE.length : 0], borderRadius: 2 },
        label: { show: true, position: 'right', color: TEXT, fontSize: 11, formatter: (p) => fmtValue(p.value, panel.unit) },
        emphasis: { disabled: true },
      })),
    });
    if (items.length > MAX) body.append(el('div', { class: 'panel-foot', text: `first ${MAX} of ${items.length}` }));
    return true;
  }

  /* A donut with the total in the middle and a legend of values and shares beside it. */
  function renderPie(body, data, panel) {
    const { items } = toCategories(data);
    const parts = items.map((it) => ({ name: it.label || '–', value: Number(it.values[0]) || 0 }))
      .filter((p) => p.value > 0);
    if (!parts.length) return false;
    const total = parts.reduce((s, p) => s + p.value, 0);
    const share = (v) => `${trimNumber((100 * v) / total, 1)}%`;
    const byName = new Map(parts.map((p) => [p.name, p.value]));
    const box = el('div', { class: 'chart' });
    body.append(box);
    const size = Math.max(60, Math.min(box.clientHeight - 8, box.clientWidth * 0.5));
    chartIn(box, {
      title: {
        text: fmtValue(total, panel.unit), left: size / 2 + 4, top: 'middle', textAlign: 'center',
        textStyle: { color: TEXT, fontSize: 13, fontWeight: 600 },
      },
      tooltip: {
        ...TOOLTIP_STYLE, trigger: 'item',
        formatter: (p) => `${p.marker}${escapeHtml(p.name)}: <b>${escapeHtml(fmtValue(p.value, panel.unit))}</b> (${share(p.value)})`,
      },
      legend: {
        type: 'scroll', orient: 'vertical', left: size + 20, top: 'middle', icon: 'roundRect', itemWidth: 14,
        itemHeight: 4, textStyle: { color: TEXT, fontSize: 12 }, pageTextStyle: { color: TEXT },
        formatter: (name) => `${name}  ${fmtValue(byName.get(name), panel.unit)} (${share(byName.get(name))})`,
      },
      series: [{
        type: 'pie', data: parts, center: [size / 2 + 4, '50%'], radius: [size * 0.29, size / 2], label: { show: false },
        itemStyle: { borderColor: '#181b1f', borderWidth: 1 }, emphasis: { scale: false },
      }],
    });
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
      const tint = tiles.length > 1 ? color(i) : '#73bf69';
      const tile = el('div', { class: 'stat' },
        el('div', { class: 'stat-value', style: `font-size:${size.toFixed(0)}px;color:${tint}`, text }),
        t.label ? el('div', { class: 'stat-label', text: t.label, title: t.label }) : null);
      grid.append(tile);
      if (t.spark) sparkline(tile, t.spark, tileW, tileH, tint);
    });
    return true;
  }

  /* The faint area chart behind a stat's value: no axes, no tooltip. */
  function sparkline(tile, points, width, height, tint) {
    const pts = points.filter((p) => p[1] !== null);
    if (pts.length < 2) return;
    const box = el('div', {
      class: 'spark', style: `width:${Math.max(10, width - 8).toFixed(0)}px;height:${Math.max(10, height * 0.4).toFixed(0)}px`,
    });
    tile.prepend(box);
    chartIn(box, {
      grid: { left: 0, right: 0, top: 2, bottom: 0 },
      xAxis: { type: 'time', show: false, min: 'dataMin', max: 'dataMax' },
      yAxis: { type: 'value', show: false, scale: true },
      series: [{
        type: 'line', data: pts, showSymbol: false, silent: true, lineStyle: { width: 1.2, opacity: 0.7, color: tint },
        areaStyle: { opacity: 0.12, color: tint },
      }],
    });
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
      // engine health on this page: current values (no time column) are drawn as bars
      case 'timeseries': return columnsOf(data).time ? renderTimeseries(body, data, panel) : renderBars(body, data, panel);
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
    const { body, data } = p;
    disposeCharts(body);
    body.replaceChildren();
    // a built-in definition may show another quantity than Grafana's (a total, not a rate)
    const panel = data.unit ? { ...p.panel, unit: data.unit } : p.panel;
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
      if (drawn && data.note) body.append(el('div', { class: 'panel-foot', text: data.note }));
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

// schedtrace HTML report: draws the embedded data (no network access).
(function () {
  'use strict';
  const root = document.documentElement;
  const errors = [];
  window.addEventListener('error', (e) => {
    errors.push(String(e.message));
    root.setAttribute('data-status', 'error: ' + errors.join('; '));
  });

  const DATA = JSON.parse(document.getElementById('schedtrace-data').textContent);
  const SVGNS = 'http://www.w3.org/2000/svg';
  const STATE_COLOR = { running: '#2e9e5b', runnable: '#f0a030', sleeping: '#e6e8eb', blocked: '#c0392b' };
  // What else held a CPU: another process's task, the idle task, not recorded.
  const OTHER_COLOR = ['#98a2b3', '#ffffff', 'url(#unrec)'];
  const OTHER_NAME = ['another process', 'idle', 'not recorded'];
  // Wait classes (summary off_cpu.reasons[].class), for the breakdown bars.
  const CLASS_COLOR = { idle: '#8fb8de', lock: '#e15759', sleep: '#b07aa1', io: '#f28e2b', page_fault: '#9c755f',
    other_blocked: '#c0392b', other: '#bab0ac', exit: '#79706e', unknown: '#d0d5dd' };
  const PALETTE = ['#4e79a7', '#59a14f', '#e15759', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7',
    '#9c755f', '#f28e2b', '#8cd17d', '#499894', '#d37295', '#86bcb6', '#b6992d', '#79706e', '#a0cbe8'];
  const LABEL_W = 190;
  const AXIS_H = 26;
  const CPU_H = 18;
  const CONC_H = 44;
  const THREAD_H = 15;
  const GAP = 3;
  const SECTION_H = 18;
  // Thread lanes open at first with several processes: the busiest
  // processes' up to this many, the others collapsed to their heading.
  const MAX_OPEN_LANES = 80;
  // Stacking order of the aggregate slots, bottom first: threads' running,
  // runnable, blocked, sleeping; CPUs' traced thread, another process, not
  // recorded, idle.
  const SLOT_ORDER = [0, 1, 3, 2];
  const THREAD_SLOT_COLOR = [STATE_COLOR.running, STATE_COLOR.runnable, STATE_COLOR.sleeping, STATE_COLOR.blocked];
  const CPU_SLOT_COLOR = [STATE_COLOR.running, OTHER_COLOR[0], OTHER_COLOR[1], OTHER_COLOR[2]];
  const CPU_SLOT_ORDER = [0, 1, 3, 2];

  function el(tag, attrs, parent, svg) {
    const e = svg === false ? document.createElement(tag) : document.createElementNS(SVGNS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function h(tag, attrs, parent, text) {
    const e = el(tag, attrs, parent, false);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmtDur(ns) {
    if (ns >= 100e9) return (ns / 1e9).toFixed(0) + ' s';
    if (ns >= 1e9) return (ns / 1e9).toFixed(2) + ' s';
    if (ns >= 1e6) return (ns / 1e6).toFixed(1) + ' ms';
    if (ns >= 1e3) return (ns / 1e3).toFixed(1) + ' µs';
    return Math.round(ns) + ' ns';
  }
  function fmtTick(ns) {
    if (ns === 0) return '0';
    const trim = (v) => String(+v.toFixed(3));
    if (ns >= 1e9) return trim(ns / 1e9) + 's';
    if (ns >= 1e6) return trim(ns / 1e6) + 'ms';
    if (ns >= 1e3) return trim(ns / 1e3) + 'µs';
    return trim(ns) + 'ns';
  }
  function pct(a, b) { return b > 0 ? (100 * a / b).toFixed(1) + '%' : '-'; }
  function niceStep(x) {
    let p = 1;
    for (;;) {
      for (const m of [1, 2, 5]) if (p * m >= x) return p * m;
      p *= 10;
    }
  }
  /** Stacking order of a colour in a pixel cell: running at the bottom. */
  const STACK = [STATE_COLOR.running, STATE_COLOR.runnable, STATE_COLOR.blocked, STATE_COLOR.sleeping];
  function rank(color) {
    const r = STACK.indexOf(color);
    return r < 0 ? -1 : r;
  }
  function stateOf(code) {
    return code >= 0 ? 'running' : ['', 'runnable', 'sleeping', 'blocked'][-code];
  }
  /** First index i (in 3-number records) whose end > t. */
  function firstEndingAfter(flat, t) {
    let lo = 0, hi = flat.length / 3;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (flat[mid * 3 + 1] <= t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function drawRun(run, ri, container) {
    const tl = run.timeline;
    const s = run.summary;
    const W0 = tl.window_ns;
    const threads = tl.threads;
    // CPUs the target could use: the pinned set, else all.
    const usable = (s.target.pinned_cpus || []).length || tl.ncpus;
    const colorOf = (i) => PALETTE[i % PALETTE.length];
    const roleOf = {};
    for (const t of s.threads) if (t.role) roleOf[t.tid] = t.role.label;
    const nameOf = (i) => threads[i].comm + ' (' + threads[i].tid + ')' + (roleOf[threads[i].tid] ? ' ' + roleOf[threads[i].tid] : '');
    const labelOf = (i) => (i >= 0 && tl.labels ? tl.labels[i] : null);

    // Lanes, top to bottom; `layout` places those shown (a collapsed
    // process shows its heading only, the filter hides lanes whose thread
    // and process names do not contain it).
    const allLanes = [];
    allLanes.push({ kind: 'section', h: SECTION_H, step: SECTION_H, label: 'CPUs (which thread ran on each core; grey: another process, white: idle)' });
    for (let c = 0; c < tl.cpu.length; c++) {
      allLanes.push({ kind: 'cpu', id: c, h: CPU_H, step: CPU_H + GAP, label: 'CPU ' + c, flat: tl.cpu[c], others: (tl.others || [])[c] || [] });
    }
    allLanes.push({ kind: 'conc', h: CONC_H, pad: 2, step: CONC_H + 8, label: 'running + runnable', sub: '(dashed: ' + usable + ' CPU' + (usable === 1 ? ')' : 's)') });
    allLanes.push({ kind: 'section', h: SECTION_H, step: SECTION_H, label: 'Threads (green running, orange runnable, grey sleeping, red blocked)' });
    // With several processes, each one's threads together under its name,
    // the busiest process first (as the summary lists them).
    const procs = s.processes || [];
    const rankOf = {};
    procs.forEach((p, r) => { rankOf[p.tgid] = r; });
    const order = threads.map((t, i) => i);
    const several = new Set(threads.map((t) => t.tgid)).size > 1;
    if (several) {
      const rk = (i) => (threads[i].tgid in rankOf ? rankOf[threads[i].tgid] : procs.length);
      order.sort((a, b) => rk(a) - rk(b) || threads[a].tgid - threads[b].tgid || a - b);
    }
    let proc = null;
    const procLanes = [];
    for (const i of order) {
      const t = threads[i];
      if (several && (!proc || t.tgid !== proc.tgid)) {
        const p = procs.find((q) => q.tgid === t.tgid);
        const name = p ? p.comm : (t.tid === t.tgid ? t.comm : '');
        proc = { kind: 'section', process: true, tgid: t.tgid, h: SECTION_H, step: SECTION_H, label: 'process ' + t.tgid + (name ? ' (' + name + ')' : ''), members: [] };
        allLanes.push(proc);
        procLanes.push(proc);
      }
      const lane = { kind: 'thread', id: t.tid, idx: i, tgid: t.tgid, h: THREAD_H, step: THREAD_H + GAP, label: t.comm + ' ' + t.tid + (roleOf[t.tid] ? ' · ' + roleOf[t.tid] : ''), flat: tl.segs[i] };
      if (proc) proc.members.push(lane);
      allLanes.push(lane);
    }
    // With many threads, the busiest processes open and the rest collapsed,
    // so that the first drawing stays quick.
    const collapsed = new Set();
    let open = 0;
    for (const p of procLanes) {
      if (open > 0 && open + p.members.length > MAX_OPEN_LANES) collapsed.add(p.tgid);
      else open += p.members.length;
    }
    let filter = '';
    const matches = (lane) => !filter || lane.label.toLowerCase().includes(filter);
    const shown = (lane) => {
      if (lane.kind === 'thread') {
        const p = procLanes.find((q) => q.tgid === lane.tgid);
        return !collapsed.has(lane.tgid) && (matches(lane) || (p !== undefined && matches(p)));
      }
      if (lane.process) return matches(lane) || lane.members.some(matches);
      return true;
    };
    let lanes = [];
    let H = 0;
    let concMax = Math.max(1, tl.conc_max || 0, usable);
    for (let i = 0; i < tl.conc.length; i += 3) concMax = Math.max(concMax, tl.conc[i + 1] + tl.conc[i + 2]);
    const bar = h('div', { class: 'toolbar' }, container);
    const bIn = h('button', { type: 'button', title: 'Zoom in' }, bar, '+');
    const bOut = h('button', { type: 'button', title: 'Zoom out' }, bar, '−');
    const bReset = h('button', { type: 'button', title: 'Show everything' }, bar, 'Reset');
    const viewInfo = h('span', {}, bar, '');
    h('span', {}, bar, ' · wheel to zoom, drag to pan, double-click to reset, hover for details');
    const search = h('input', { type: 'search', class: 'lane-filter', placeholder: 'filter lanes by thread or process name', 'aria-label': 'filter lanes' }, bar);
    const wrap = h('div', { class: 'tl-wrap' }, container);
    const svg = el('svg', { class: 'timeline', height: 100, 'data-run': ri }, wrap);
    const tip = h('div', { class: 'tooltip' }, wrap);
    const defs = el('defs', {}, svg);
    const clipId = 'clip' + ri;
    const clipRect = el('rect', { x: LABEL_W, y: 0, width: 100, height: 100 }, el('clipPath', { id: clipId }, defs));
    const arrowId = 'arrow' + ri;
    const marker = el('marker', { id: arrowId, viewBox: '0 0 6 6', refX: 5, refY: 3, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' }, defs);
    el('path', { d: 'M0,0 L6,3 L0,6 z', fill: '#333' }, marker);
    const unrec = el('pattern', { id: 'unrec', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' }, defs);
    el('rect', { width: 6, height: 6, fill: '#f2f4f7' }, unrec);
    el('line', { x1: 0, y1: 0, x2: 0, y2: 6, stroke: '#c8cdd5', 'stroke-width': 2 }, unrec);

    // Labels, one group per lane shown (tests count these).
    const labels = el('g', { class: 'labels' }, svg);
    function drawLabels() {
      labels.textContent = '';
      for (const lane of lanes) {
        if (lane.kind === 'section') {
          const t = el('text', { x: lane.process ? 10 : 4, y: lane.y + 13, class: lane.process ? 'section process' : 'section' }, labels);
          if (lane.process) {
            const closed = collapsed.has(lane.tgid);
            t.setAttribute('data-tgid', lane.tgid);
            t.setAttribute('data-collapsed', closed ? '1' : '0');
            el('tspan', { class: 'fold' }, t).textContent = closed ? '▸ ' : '▾ ';
            t.appendChild(document.createTextNode(lane.label + (closed ? ' · ' + lane.members.length + ' thread' + (lane.members.length === 1 ? '' : 's') : '')));
            el('title', {}, t).textContent = closed ? 'click to show its threads' : 'click to collapse';
            t.addEventListener('click', () => {
              if (collapsed.has(lane.tgid)) collapsed.delete(lane.tgid); else collapsed.add(lane.tgid);
              layout();
            });
          } else {
            t.textContent = lane.label;
          }
          continue;
        }
        const g = el('g', { class: 'lane', 'data-kind': lane.kind, 'data-id': lane.id === undefined ? '' : lane.id }, labels);
        if (lane.kind === 'thread') {
          el('rect', { x: 4, y: lane.y + 3, width: 10, height: 10, rx: 2, fill: colorOf(lane.idx) }, g);
        }
        if (lane.sub) el('text', { x: 4, y: lane.y + lane.h / 2 + 14, class: 'tick' }, g).textContent = lane.sub;
        const t = el('text', { x: lane.kind === 'thread' ? 18 : 4, y: lane.y + lane.h / 2 + (lane.sub ? -2 : 4) }, g);
        t.textContent = lane.label.length > 27 ? lane.label.slice(0, 26) + '…' : lane.label;
        el('title', {}, t).textContent = lane.label;
      }
    }
    function layout() {
      lanes = [];
      let y = AXIS_H;
      for (const lane of allLanes) {
        if (!shown(lane)) continue;
        lane.y = y + (lane.pad || 0);
        lanes.push(lane);
        y += lane.step;
      }
      H = y + 6;
      svg.setAttribute('height', H);
      clipRect.setAttribute('height', H);
      drawLabels();
      schedule();
    }
    search.addEventListener('input', () => {
      filter = search.value.trim().toLowerCase();
      layout();
    });
    const plot = el('g', { 'clip-path': 'url(#' + clipId + ')' }, svg);
    const overlay = el('g', {}, svg);

    let t0 = 0, t1 = Math.max(W0, 1);
    let width = 800;
    const xOf = (t) => LABEL_W + (t - t0) / (t1 - t0) * (width - LABEL_W);
    const tOf = (x) => t0 + (x - LABEL_W) / (width - LABEL_W) * (t1 - t0);

    // Rectangles of one lane, merging what is narrower than a pixel into
    // one-pixel cells that show each state's share of the pixel's time,
    // stacked from the bottom (the running share first): zoomed out, a
    // thread that ran half the time is drawn half high, never solid.
    function laneRects(flat, colorFor, g, lane, withCpu, tEnd) {
      const px = (width - LABEL_W) / (t1 - t0);
      let i = firstEndingAfter(flat, t0);
      let cell = -1, cellTimes = null;
      const flush = () => {
        if (cell < 0) return;
        let bottom = lane.y + lane.h;
        const order = Object.keys(cellTimes).sort((a, b) => rank(a) - rank(b));
        for (const k of order) {
          const hgt = Math.min(1, cellTimes[k]) * lane.h;
          if (hgt < 0.05) continue;
          bottom -= hgt;
          el('rect', { x: cell, y: bottom.toFixed(2), width: 1, height: hgt.toFixed(2), fill: k, class: 'share' }, g);
        }
        cell = -1;
      };
      for (; i < flat.length / 3; i++) {
        const s = flat[i * 3], e = flat[i * 3 + 1], code = flat[i * 3 + 2];
        if (s >= tEnd) break;
        if (e <= t0) continue;
        const x0 = xOf(Math.max(s, t0)), x1 = xOf(Math.min(e, tEnd));
        const color = colorFor(code);
        if (x1 - x0 >= 1) {
          flush();
          el('rect', { x: x0.toFixed(2), y: lane.y, width: (x1 - x0).toFixed(2), height: lane.h, fill: color }, g);
          if (withCpu && code >= 0 && x1 - x0 > 14) {
            el('text', { x: (x0 + 3).toFixed(1), y: lane.y + lane.h - 4, class: 'cpu-num' }, g).textContent = code;
          }
        } else {
          const c = Math.floor(x0);
          if (c !== cell) { flush(); cell = c; cellTimes = {}; }
          cellTimes[color] = (cellTimes[color] || 0) + (Math.min(e, tEnd) - Math.max(s, t0)) * px;
        }
      }
      flush();
    }

    // What else held a CPU: [start, end, kind, label] records.
    function otherRects(lane, g, tEnd) {
      const o = lane.others;
      let lastX = -1;
      for (let i = 0; i < o.length; i += 4) {
        const s0 = o[i], e0 = o[i + 1];
        if (e0 <= t0 || s0 >= tEnd) continue;
        const x0 = xOf(Math.max(s0, t0)), x1 = xOf(Math.min(e0, tEnd));
        if (x1 - x0 < 1 && Math.floor(x0) === lastX) continue;
        lastX = Math.floor(x0);
        el('rect', { x: x0.toFixed(2), y: lane.y + 1, width: Math.max(1, x1 - x0).toFixed(2), height: lane.h - 2, fill: OTHER_COLOR[o[i + 2]], stroke: o[i + 2] === 1 ? '#d0d5dd' : 'none', 'stroke-width': 0.5 }, g);
      }
    }
    function otherAt(lane, t) {
      const o = lane.others;
      for (let i = 0; i < o.length; i += 4) if (o[i] <= t && t < o[i + 1]) return i;
      return -1;
    }

    // Beyond the cut (`detail_ns`) the page has no records, only each
    // lane's time in every state per bucket at a few zoom levels
    // (run-length merged: [n, slot values...] for n equal buckets).
    const D = tl.detail_ns === undefined ? W0 : tl.detail_ns;
    const levels = tl.lod || [];
    /** The coarsest level whose buckets are no wider than a pixel, else the finest. */
    function levelFor(perPx) {
      for (const L of levels) if (L.bucket_ns <= perPx) return L;
      return levels[levels.length - 1];
    }
    const runStarts = new WeakMap();
    /** Per pixel column from `from` to `to`: ns spent in each slot. */
    function aggCols(rle, nslots, B, from, to) {
      const pxW = width - LABEL_W, perPx = (t1 - t0) / pxW;
      const cols = [];
      for (let k = 0; k < nslots; k++) cols.push(new Float64Array(pxW));
      if (!rle || to <= from) return cols;
      const w = nslots + 1, n = rle.length / w;
      let st = runStarts.get(rle);
      if (!st) {
        st = new Float64Array(n + 1);
        for (let r = 0; r < n; r++) st[r + 1] = st[r] + rle[r * w];
        runStarts.set(rle, st);
      }
      let lo = 0, hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (st[mid + 1] * B <= from) lo = mid + 1; else hi = mid;
      }
      const rate = new Float64Array(nslots);
      for (let r = lo; r < n; r++) {
        const rs = st[r] * B, re = Math.min(st[r + 1] * B, W0);
        if (rs >= to) break;
        const a = Math.max(rs, from), b = Math.min(re, to);
        if (b <= a || re <= rs) continue;
        let any = false;
        for (let k = 0; k < nslots; k++) {
          rate[k] = rle[r * w + 1 + k] * rle[r * w] / (re - rs);
          any = any || rate[k] > 0;
        }
        if (!any) continue;
        let x = Math.floor((a - t0) / perPx);
        for (let t = a; t < b && x < pxW; x++) {
          const e = Math.min(b, t0 + (x + 1) * perPx);
          for (let k = 0; k < nslots; k++) cols[k][x] += rate[k] * (e - t);
          t = e;
        }
      }
      return cols;
    }
    /**
     * Stacked shares from aggregate columns, heights in quarter pixels so
     * that equal neighbours merge into one rectangle (a thread asleep for
     * most of the window is a few rectangles, not one a pixel).
     */
    function aggRects(lane, g, cols, fills, slotOrder, x0) {
      const pxW = width - LABEL_W, perPx = (t1 - t0) / pxW;
      const open = [];
      const emit = (k) => {
        const o = open[k];
        if (o) el('rect', { x: o.x, y: o.y, width: o.w, height: o.h, fill: fills[k], class: 'share agg' }, g);
        open[k] = null;
      };
      for (let x = Math.max(0, x0); x < pxW; x++) {
        let bottom = lane.y + lane.h;
        for (const k of slotOrder) {
          const hgt = Math.round(Math.min(1, cols[k][x] / perPx) * lane.h * 4) / 4;
          if (hgt <= 0) { emit(k); continue; }
          bottom -= hgt;
          const y = bottom.toFixed(2), hh = hgt.toFixed(2), o = open[k];
          if (o && o.y === y && o.h === hh && o.x + o.w === LABEL_W + x) { o.w += 1; continue; }
          emit(k);
          open[k] = { x: LABEL_W + x, y: y, h: hh, w: 1 };
        }
      }
      for (const k of slotOrder) emit(k);
    }
    /** Where records end in this view: the cut, on a pixel column's edge. */
    function splitAt() {
      if (D >= t1 || !levels.length) return t1;
      if (D <= t0) return t0;
      const perPx = (t1 - t0) / (width - LABEL_W);
      return t0 + Math.floor((D - t0) / perPx) * perPx;
    }
    /** The aggregate runs of a lane at level L. */
    function aggOf(lane, L) {
      if (lane.kind === 'thread') return L.threads[lane.idx];
      if (lane.kind === 'cpu') return L.cpus[lane.id];
      return L.conc;
    }

    function render() {
      width = svg.clientWidth || 1000;
      clipRect.setAttribute('width', Math.max(0, width - LABEL_W));
      plot.textContent = '';
      overlay.textContent = '';
      // Axis.
      const axis = el('g', {}, plot);
      const step = niceStep((t1 - t0) / Math.max(2, (width - LABEL_W) / 90));
      for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
        const x = xOf(t);
        el('line', { x1: x, x2: x, y1: AXIS_H - 6, y2: H, stroke: '#eef0f3' }, axis);
        el('text', { x: x + 2, y: AXIS_H - 9, class: 'tick' }, axis).textContent = fmtTick(t);
      }
      const split = splitAt();
      const L = split < t1 ? levelFor((t1 - t0) / (width - LABEL_W)) : null;
      const splitX = Math.round((split - t0) / (t1 - t0) * (width - LABEL_W));
      for (const lane of lanes) {
        if (lane.kind === 'cpu') {
          el('rect', { x: LABEL_W, y: lane.y, width: width - LABEL_W, height: lane.h, fill: '#f7f8fa' }, plot);
          otherRects(lane, el('g', { class: 'others' }, plot), split);
          laneRects(lane.flat, (idx) => colorOf(idx), el('g', {}, plot), lane, false, split);
          if (L) aggRects(lane, el('g', { class: 'agg', 'data-kind': 'cpu' }, plot), aggCols(aggOf(lane, L), 4, L.bucket_ns, split, t1), CPU_SLOT_COLOR, CPU_SLOT_ORDER, splitX);
        } else if (lane.kind === 'thread') {
          laneRects(lane.flat, (code) => STATE_COLOR[stateOf(code)], el('g', {}, plot), lane, true, split);
          if (L) aggRects(lane, el('g', { class: 'agg', 'data-kind': 'thread' }, plot), aggCols(aggOf(lane, L), 4, L.bucket_ns, split, t1), THREAD_SLOT_COLOR, SLOT_ORDER, splitX);
        } else if (lane.kind === 'conc') {
          drawConcurrency(lane, el('g', {}, plot), split, L);
        }
      }
      if (D > t0 && D < t1 && levels.length) {
        const x = xOf(D);
        el('line', { x1: x, x2: x, y1: AXIS_H - 4, y2: H, stroke: '#1f6feb', 'stroke-dasharray': '6,3', class: 'detail-end' }, overlay);
        el('text', { x: x + 3, y: H - 4, fill: '#1f6feb' }, overlay).textContent = 'full detail ends · per-pixel aggregates beyond';
      }
      // Wakeup arrows between thread lanes, when few enough to read.
      const wk = tl.wakeups;
      const laneOfIdx = {};
      for (const lane of lanes) if (lane.kind === 'thread') laneOfIdx[lane.idx] = lane;
      let visible = 0;
      for (let i = 0; i < wk.length; i += 3) if (wk[i] >= t0 && wk[i] <= t1) visible++;
      if (visible > 0 && visible <= 150) {
        const g = el('g', { class: 'wakeups' }, plot);
        for (let i = 0; i < wk.length; i += 3) {
          const ts = wk[i];
          if (ts < t0 || ts > t1) continue;
          const to = laneOfIdx[wk[i + 2]];
          if (!to) continue;
          const from = laneOfIdx[wk[i + 1]];
          const x = xOf(ts);
          const yTo = to.y + to.h / 2;
          const yFrom = from ? from.y + from.h / 2 : to.y - 7;
          el('line', { x1: x, x2: x, y1: yFrom, y2: yFrom < yTo ? to.y : to.y + to.h, stroke: '#333', 'stroke-width': 1, 'marker-end': 'url(#' + arrowId + ')' }, g);
        }
      }
      // Lost events: marks closer than a label's width collapse into one,
      // which says how many losses it stands for.
      const LOST_GAP = 120;
      let mark = null;
      const drawMark = () => {
        if (!mark) return;
        el('line', { x1: mark.x, x2: mark.x, y1: AXIS_H - 4, y2: H, stroke: '#d92d20', 'stroke-dasharray': '3,3', class: 'lost-mark' }, overlay);
        const cpus = [...mark.cpus].sort((a, b) => a - b).join(', ');
        const what = mark.n === 1 ? '' : ' in ' + mark.n + ' places';
        el('text', { x: mark.x + 3, y: AXIS_H + 12, fill: '#d92d20' }, overlay).textContent =
          '⚠ ' + mark.count + ' lost' + what + ' (CPU ' + cpus + ')';
        mark = null;
      };
      const lost = tl.lost.filter(([ts]) => ts >= t0 && ts <= t1).sort((a, b) => a[0] - b[0]);
      for (const [ts, cpu, count] of lost) {
        const x = xOf(ts);
        if (mark && x - mark.x < LOST_GAP) {
          mark.count += count;
          mark.n += 1;
          mark.cpus.add(cpu);
          continue;
        }
        drawMark();
        mark = { x: x, count: count, n: 1, cpus: new Set([cpu]) };
      }
      drawMark();
      el('line', { x1: LABEL_W, x2: LABEL_W, y1: 0, y2: H, stroke: '#d9dde3' }, overlay);
      viewInfo.textContent = 'showing ' + fmtDur(t0) + ' – ' + fmtDur(t1) + ' (' + fmtDur(t1 - t0) + ')' +
        (L ? ', aggregates from ' + fmtDur(split) + ' (buckets of ' + fmtDur(L.bucket_ns) + ')' : '');
    }

    function drawConcurrency(lane, g, split, L) {
      // Stacked areas: mean threads running (green) and runnable (orange)
      // over each pixel column.
      const c = tl.conc;
      const yb = lane.y + lane.h;
      const sc = lane.h / concMax;
      el('rect', { x: LABEL_W, y: lane.y, width: width - LABEL_W, height: lane.h, fill: '#fbfbfc' }, g);
      const pxW = width - LABEL_W;
      const perPx = (t1 - t0) / pxW;
      const run = new Float64Array(pxW), q = new Float64Array(pxW);
      for (let i = 0; i < c.length; i += 3) {
        const s0 = Math.max(c[i], t0);
        const e0 = Math.min(i + 3 < c.length ? c[i + 3] : W0, split);
        if (e0 <= s0 || (c[i + 1] === 0 && c[i + 2] === 0)) continue;
        let x = Math.floor((s0 - t0) / perPx);
        for (let t = s0; t < e0 && x < pxW; x++) {
          const end = Math.min(e0, t0 + (x + 1) * perPx);
          const f = (end - t) / perPx;
          run[x] += c[i + 1] * f;
          q[x] += c[i + 2] * f;
          t = end;
        }
      }
      if (L) {
        const cols = aggCols(L.conc, 2, L.bucket_ns, split, t1);
        for (let x = 0; x < pxW; x++) { run[x] += cols[0][x] / perPx; q[x] += cols[1][x] / perPx; }
      }
      let dRun = 'M' + LABEL_W + ',' + yb, dAll = dRun;
      for (let x = 0; x < pxW; x++) {
        const X = LABEL_W + x;
        dRun += 'L' + X + ',' + (yb - run[x] * sc).toFixed(1) + 'L' + (X + 1) + ',' + (yb - run[x] * sc).toFixed(1);
        dAll += 'L' + X + ',' + (yb - (run[x] + q[x]) * sc).toFixed(1) + 'L' + (X + 1) + ',' + (yb - (run[x] + q[x]) * sc).toFixed(1);
      }
      dRun += 'L' + width + ',' + yb + 'Z';
      dAll += 'L' + width + ',' + yb + 'Z';
      el('path', { d: dAll, fill: STATE_COLOR.runnable, 'fill-opacity': 0.75 }, g);
      el('path', { d: dRun, fill: STATE_COLOR.running }, g);
      const yc = yb - usable * sc;
      el('line', { x1: LABEL_W, x2: width, y1: yc, y2: yc, stroke: '#475467', 'stroke-dasharray': '4,3' }, g);
    }

    let pending = false;
    function schedule() {
      if (pending) return;
      pending = true;
      // Next frame, or soon when frames are throttled (hidden or headless).
      const run = () => { if (pending) { pending = false; render(); } };
      requestAnimationFrame(run);
      setTimeout(run, 60);
    }
    function setView(a, b) {
      const minSpan = 1000;
      let span = Math.max(b - a, minSpan);
      span = Math.min(span, W0 || 1);
      a = Math.max(0, Math.min(a, (W0 || 1) - span));
      t0 = a; t1 = a + span;
      schedule();
    }
    function zoom(factor, atT) {
      setView(atT - (atT - t0) * factor, atT + (t1 - atT) * factor);
    }
    bIn.onclick = () => zoom(1 / 1.6, (t0 + t1) / 2);
    bOut.onclick = () => zoom(1.6, (t0 + t1) / 2);
    bReset.onclick = () => setView(0, W0);
    svg.addEventListener('wheel', (e) => {
      const r = svg.getBoundingClientRect();
      const x = e.clientX - r.left;
      if (x < LABEL_W) return;
      e.preventDefault();
      zoom(Math.pow(1.0015, e.deltaY), tOf(x));
    }, { passive: false });
    let drag = null;
    svg.addEventListener('mousedown', (e) => {
      drag = { x: e.clientX, t0: t0, t1: t1 };
      svg.classList.add('dragging');
    });
    window.addEventListener('mouseup', () => { drag = null; svg.classList.remove('dragging'); });
    window.addEventListener('mousemove', (e) => {
      if (!drag) return;
      const dt = (e.clientX - drag.x) / (width - LABEL_W) * (drag.t1 - drag.t0);
      setView(drag.t0 - dt, drag.t1 - dt);
    });
    svg.addEventListener('dblclick', () => setView(0, W0));
    window.addEventListener('resize', schedule);

    // Hover details.
    svg.addEventListener('mousemove', (e) => {
      const r = svg.getBoundingClientRect();
      const x = e.clientX - r.left, yy = e.clientY - r.top;
      const lane = lanes.find((l) => l.kind !== 'section' && yy >= l.y && yy < l.y + l.h);
      if (!lane || x < LABEL_W || drag) { tip.style.display = 'none'; return; }
      const t = tOf(x);
      let html = '';
      const L = levels.length && t >= splitAt() ? levelFor((t1 - t0) / (width - LABEL_W)) : null;
      if (L) {
        html = aggTip(lane, L, Math.floor(x - LABEL_W));
      } else if (lane.kind === 'conc') {
        let run = 0, q = 0;
        for (let i = 0; i < tl.conc.length && tl.conc[i] <= t; i += 3) { run = tl.conc[i + 1]; q = tl.conc[i + 2]; }
        html = '<b>' + fmtDur(t) + '</b><br>running: ' + run + '<br>runnable (waiting): ' + q;
      } else {
        const flat = lane.flat;
        const i = firstEndingAfter(flat, t);
        if (i >= flat.length / 3 || flat[i * 3] > t) {
          const oi = lane.kind === 'cpu' ? otherAt(lane, t) : -1;
          if (oi >= 0) {
            const o = lane.others;
            html = '<b>' + lane.label + ': ' + esc(labelOf(o[oi + 3]) || OTHER_NAME[o[oi + 2]]) + '</b><br>' + OTHER_NAME[o[oi + 2]] +
              '<br>from ' + fmtDur(o[oi]) + ' for ' + fmtDur(o[oi + 1] - o[oi]);
          } else {
            html = lane.kind === 'cpu' ? '<b>' + lane.label + '</b><br>no thread of the target (not recorded)' : '<b>' + lane.label + '</b><br>not alive';
          }
        } else {
          const s0 = flat[i * 3], e0 = flat[i * 3 + 1], code = flat[i * 3 + 2];
          if (lane.kind === 'cpu') {
            html = '<b>' + lane.label + ': ' + esc(nameOf(code)) + '</b>';
          } else {
            const st = stateOf(code);
            html = '<b>' + esc(lane.label) + '</b><br>' + st + (code >= 0 ? ' on CPU ' + code : '');
            const why = labelOf(((tl.why || [])[lane.idx] || [])[i]);
            if (why) html += ' in ' + esc(why);
            if (st === 'sleeping' || st === 'blocked' || st === 'runnable') html += '<br><i>click for the wakeup chain</i>';
            if (st === 'runnable' || st === 'running') {
              const w = wokenBy(threads.findIndex((th) => th.tid === lane.id), s0);
              if (w) html += '<br>woken by ' + esc(w);
            }
          }
          html += '<br>from ' + fmtDur(s0) + ' for ' + fmtDur(e0 - s0);
        }
      }
      tip.innerHTML = html;
      tip.style.display = 'block';
      const wr = wrap.getBoundingClientRect();
      const left = e.clientX - wr.left + 14;
      tip.style.left = Math.min(left, wr.width - tip.offsetWidth - 4) + 'px';
      tip.style.top = (e.clientY - wr.top + 14) + 'px';
    });
    svg.addEventListener('mouseleave', () => { tip.style.display = 'none'; });

    /** What the aggregates say about one pixel column beyond the cut. */
    function aggTip(lane, L, col) {
      const perPx = (t1 - t0) / (width - LABEL_W);
      const a = t0 + col * perPx, b = a + perPx;
      const n = lane.kind === 'conc' ? 2 : 4;
      const cols = aggCols(aggOf(lane, L), n, L.bucket_ns, a, b);
      const names = lane.kind === 'thread' ? ['running', 'runnable', 'sleeping', 'blocked']
        : lane.kind === 'cpu' ? ['a traced thread', 'another process', 'idle', 'not recorded'] : ['running', 'runnable'];
      let html = '<b>' + esc(lane.label) + '</b><br>' + fmtDur(a) + ' – ' + fmtDur(b) + ' (no records here: aggregates)';
      for (let k = 0; k < n; k++) {
        const v = cols[k][col] || 0;
        if (v <= 0) continue;
        html += '<br>' + names[k] + ': ' + (lane.kind === 'conc' ? (v / perPx).toFixed(2) + ' threads on average' : pct(v, perPx));
      }
      return html;
    }

    function wokenBy(idx, t) {
      // The latest wakeup of this thread at or before t (within the same wait).
      const wk = tl.wakeups;
      let found = null;
      for (let i = 0; i < wk.length; i += 3) {
        if (wk[i] > t + 1) break;
        if (wk[i + 2] === idx) found = i;
      }
      if (found === null) return null;
      const from = wk[found + 1];
      const label = labelOf((tl.wake_from || [])[found / 3]);
      if (label) return label;
      return from >= 0 ? nameOf(from) : 'TID ' + tl.waker_tids[found / 3] + ' (outside the process)';
    }

    // The wakeup chain of the wait of thread `idx` at `t`: who woke it,
    // what that waker had been waiting for, and so on (as `schedtrace
    // report --chain` walks it).
    function walkChain(idx, t) {
      const steps = [];
      const wk = tl.wakeups;
      const isOff = (code) => code === -2 || code === -3;
      let flat = tl.segs[idx];
      let i = firstEndingAfter(flat, t);
      if (i >= flat.length / 3) i = flat.length / 3 - 1;
      if (i < 0) return { steps, end: 'no wait' };
      if (flat[i * 3 + 2] >= 0) i -= 1;
      if (i >= 0 && flat[i * 3 + 2] === -1 && i > 0 && isOff(flat[(i - 1) * 3 + 2])) i -= 1;
      if (i < 0) return { steps, end: 'no wait before this' };
      for (let n = 0; n < 32; n++) {
        const s0 = flat[i * 3], e0 = flat[i * 3 + 1], code = flat[i * 3 + 2];
        if (!isOff(code)) {
          steps.push(nameOf(idx) + ' was preempted at ' + fmtDur(s0) + ' and waited ' + fmtDur(e0 - s0) + ' for a CPU');
          return { steps, end: 'a preemption (no sleep to follow)' };
        }
        let best = -1;
        for (let k = 0; k < wk.length; k += 3) {
          if (wk[k + 2] !== idx || wk[k] < s0 || wk[k] > e0) continue;
          if (best < 0 || Math.abs(wk[k] - e0) < Math.abs(wk[best] - e0)) best = k;
        }
        const why = labelOf(((tl.why || [])[idx] || [])[i]);
        let line = nameOf(idx) + (code === -3 ? ' was blocked ' : ' slept ') + fmtDur(e0 - s0) + (why ? ' in ' + why : '') + ' from ' + fmtDur(s0);
        if (best < 0) {
          steps.push(line + ', no wakeup recorded');
          return { steps, end: 'a wait with no recorded wakeup' };
        }
        const from = wk[best + 1];
        const label = labelOf((tl.wake_from || [])[best / 3]);
        line += ', woken at ' + fmtDur(wk[best]) + ' by ' + (label || (from >= 0 ? nameOf(from) : 'TID ' + tl.waker_tids[best / 3]));
        steps.push(line);
        if (from < 0 || label) return { steps, end: label || 'a task outside the process' };
        idx = from;
        flat = tl.segs[idx];
        let j = -1;
        for (let k = 0; k < flat.length / 3; k++) if (isOff(flat[k * 3 + 2]) && flat[k * 3 + 1] <= wk[best]) j = k;
        if (j < 0) return { steps, end: 'the waker\'s own wait began before the trace' };
        i = j;
      }
      return { steps, end: 'the step limit' };
    }
    const chainBox = h('div', { class: 'chain' }, container);
    svg.addEventListener('click', (e) => {
      const r = svg.getBoundingClientRect();
      const x = e.clientX - r.left, yy = e.clientY - r.top;
      const lane = lanes.find((l) => l.kind === 'thread' && yy >= l.y && yy < l.y + l.h);
      if (!lane || x < LABEL_W) return;
      const at = tOf(x);
      chainBox.textContent = '';
      if (at >= D && levels.length) {
        h('div', {}, chainBox, 'No records after ' + fmtDur(D) + ' in this page: open the Perfetto trace, or make a page of this range with schedtrace report --since.');
        return;
      }
      const c = walkChain(lane.idx, at);
      h('b', {}, chainBox, 'Wakeup chain');
      const ol = h('ol', {}, chainBox);
      for (const st of c.steps) h('li', {}, ol, st);
      h('div', {}, chainBox, 'The chain ends at ' + c.end + '.');
    });

    const legend = h('div', { class: 'legend' }, container);
    threads.forEach((t, i) => {
      const item = h('span', {}, legend);
      h('span', { class: 'swatch', style: 'background:' + colorOf(i) }, item);
      item.appendChild(document.createTextNode(t.comm + ' (' + t.tid + ')'));
    });
    for (const st of ['running', 'runnable', 'sleeping', 'blocked']) {
      const item = h('span', {}, legend);
      h('span', { class: 'swatch', style: 'background:' + STATE_COLOR[st] + ';outline:1px solid #ccc' }, item);
      item.appendChild(document.createTextNode(st));
    }
    // `#view=START-END` (ns from the start) opens zoomed in.
    layout();
    const m = /view=(\d+)-(\d+)/.exec(location.hash);
    if (m && +m[2] > +m[1]) setView(+m[1], +m[2]); else setView(0, W0);
    render();
    return { colorOf: (tid) => colorOf(threads.findIndex((t) => t.tid === tid)) };
  }

  function esc(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
  }

  function threadTable(run, container, colorOfTid) {
    const s = run.summary;
    const table = h('table', { class: 'threads' }, container);
    const head = h('tr', {}, h('thead', {}, table));
    // steal: time on a CPU the kernel did not charge the thread (hypervisor
    // steal; IRQ time too where the kernel accounts it), beside on-CPU.
    const cols = ['', 'TID', 'name', 'on-CPU', 'share', 'steal', 'runnable', 'sleeping', 'blocked', 'vol', 'invol', 'migr', 'longest', 'wait p50', 'wait p99', 'CPUs'];
    cols.forEach((c, i) => h('th', { class: i < 3 ? 'l' : '' }, head, c));
    const body = h('tbody', {}, table);
    for (const t of s.threads) {
      const tr = h('tr', {}, body);
      const sw = h('td', { class: 'l' }, tr);
      h('span', { class: 'swatch', style: 'background:' + (colorOfTid(t.tid) || '#ccc') }, sw);
      const cpus = Object.keys(t.cpus).map((c) => c + ':' + pct(t.cpus[c], Math.max(1, t.on_cpu_ns))).join(' ');
      const name = t.comm + (t.role ? ' (' + t.role.label + ')' : '') + (t.tgid !== s.target.pid ? ' [' + t.tgid + ']' : '') + (t.exited_ns !== null ? ' (exited)' : '');
      const cells = [t.tid, name, fmtDur(t.on_cpu_ns), pct(t.on_cpu_ns, s.window_ns), fmtDur(t.steal_ns), fmtDur(t.states.runnable_ns),
        fmtDur(t.states.sleeping_ns), fmtDur(t.states.blocked_ns), t.voluntary_switches, t.involuntary_switches,
        t.migrations, fmtDur(t.longest_slice_ns), t.wait.count ? fmtDur(t.wait.p50_ns) : '-',
        t.wait.count ? fmtDur(t.wait.p99_ns) : '-', cpus || '-'];
      cells.forEach((c, i) => h('td', { class: i < 2 ? 'l' : '' }, tr, String(c)));
    }
    const tot = s.totals;
    const tr = h('tr', { class: 'total' }, body);
    ['', '', 'total', fmtDur(tot.on_cpu_ns), pct(tot.on_cpu_ns, s.window_ns), fmtDur(tot.steal_ns), '', '', '', tot.voluntary_switches,
      tot.involuntary_switches, tot.migrations, '', '', '', ''].forEach((c, i) => h('td', { class: i < 3 ? 'l' : '' }, tr, String(c)));
  }

  // Per thread: off-CPU time by wait reason, who ran instead, chains, and
  // its off-CPU flame graph.
  function whySection(run, container) {
    const s = run.summary;
    const fgs = run.timeline.flamegraphs || {};
    const rows = s.threads.filter((t) => t.off_cpu.reasons.some((r) => r.class !== 'unknown' && r.ns > 0) ||
      t.preempted_by.length || t.waited_behind.length || t.chains.length || fgs[t.tid]);
    if (!rows.length) return;
    h('h3', {}, container, 'Why threads were off the CPU');
    const holder = (x) => x.kind === 'idle' ? 'idle' : x.kind === 'unrecorded' ? 'not recorded'
      : x.comm + ' ' + x.tid + (x.tgid && x.tgid !== x.tid ? ' (PID ' + x.tgid + ')' : '');
    for (const t of rows) {
      const box = h('div', { class: 'why', 'data-tid': t.tid }, container);
      h('h4', {}, box, t.comm + ' ' + t.tid + (t.role ? ' — ' + t.role.label + ' (from ' + t.role.evidence + ')' : ''));
      const total = t.off_cpu.total_ns;
      if (total > 0) {
        const bar = h('div', { class: 'bar' }, box);
        const legend = h('div', { class: 'legend' }, box);
        for (const r of t.off_cpu.reasons) {
          if (r.ns <= 0) continue;
          const name = (r.syscall_name ? r.syscall_name + ' ' : '') + '(' + r.class.replace('_', ' ') + ')';
          const seg = h('span', { style: 'width:' + (100 * r.ns / total).toFixed(2) + '%;background:' + (CLASS_COLOR[r.class] || '#ccc') }, bar);
          seg.title = name + ': ' + fmtDur(r.ns) + ', ' + r.count + ' waits';
          const item = h('span', {}, legend);
          h('span', { class: 'swatch', style: 'background:' + (CLASS_COLOR[r.class] || '#ccc') }, item);
          item.appendChild(document.createTextNode(fmtDur(r.ns) + ' ' + name));
        }
        h('div', { class: 'sub' }, box, 'off the CPU (sleeping and blocked) ' + fmtDur(total) + ' of ' + fmtDur(t.lifetime_ns));
      }
      const list = (label, xs, others, withCount) => {
        if (!xs.length) return;
        const p = h('div', {}, box);
        h('b', {}, p, label + ': ');
        const parts = xs.map((x) => holder(x) + (withCount ? ' ×' + x.count + ' (' + fmtDur(x.ns) + ')' : ' ' + fmtDur(x.ns)));
        if (others.ns > 0 || others.count > 0) parts.push('others ' + (withCount ? '×' + others.count + ' ' : '') + fmtDur(others.ns));
        p.appendChild(document.createTextNode(parts.join(', ')));
      };
      list('Preempted by', t.preempted_by, t.preempted_by_others, true);
      list('Waited behind', t.waited_behind, t.waited_behind_others, false);
      if (t.chains.length) {
        const p = h('div', {}, box);
        h('b', {}, p, 'Woken through: ');
        p.appendChild(document.createTextNode(t.chains.map((c) => c.label + ' ×' + c.count).join('; ')));
      }
      const svg = fgs[t.tid];
      if (svg) {
        const d = h('details', { class: 'flame' }, box);
        h('summary', {}, d, 'Off-CPU flame graph');
        const holderDiv = h('div', {}, d);
        d.addEventListener('toggle', () => { if (d.open && !holderDiv.firstChild) holderDiv.innerHTML = svg; });
      }
    }
  }

  function parallelismChart(run, container) {
    const s = run.summary;
    const p = s.parallelism;
    const cols = h('div', { class: 'cols' }, container);
    const n = p.running_ns.length;
    const bw = 46, ch = 150, pad = 30;
    const svg = el('svg', { class: 'profile', width: pad + n * bw + 10, height: ch + 44 }, cols);
    const max = Math.max(...p.running_ns, 1);
    el('line', { x1: pad - 4, x2: pad + n * bw, y1: ch + 8, y2: ch + 8, stroke: '#98a2b3' }, svg);
    p.running_ns.forEach((ns, k) => {
      const hgt = ns / max * (ch - 14);
      const x = pad + k * bw;
      const r = el('rect', { x: x + 6, y: ch + 8 - hgt, width: bw - 12, height: Math.max(hgt, ns > 0 ? 1 : 0), fill: k >= 2 ? '#2e9e5b' : k === 1 ? '#7fb8d8' : '#d0d5dd' }, svg);
      el('title', {}, r).textContent = k + ' running: ' + fmtDur(ns) + ' (' + pct(ns, s.window_ns) + ')';
      el('text', { x: x + bw / 2, y: ch + 8 - hgt - 4, 'text-anchor': 'middle', class: 'tick' }, svg).textContent = pct(ns, s.window_ns);
      el('text', { x: x + bw / 2, y: ch + 24, 'text-anchor': 'middle' }, svg).textContent = String(k);
    });
    el('text', { x: pad + n * bw / 2, y: ch + 40, 'text-anchor': 'middle', class: 'tick' }, svg).textContent = 'threads on a CPU at once';
    const ul = h('ul', { class: 'stats' }, cols);
    const li = (label, val) => { const e = h('li', {}, ul); h('b', {}, e, label + ': '); e.appendChild(document.createTextNode(val)); };
    li('Parallel (2+ threads running at once)', fmtDur(p.parallel_ns) + ' (' + pct(p.parallel_ns, s.window_ns) + ')');
    li('Time-sliced (2+ wanted a CPU, some waited)', fmtDur(p.time_sliced_ns) + ' (' + pct(p.time_sliced_ns, s.window_ns) + ')');
    li('Busy (1+ running)', fmtDur(p.busy_ns) + ' (' + pct(p.busy_ns, s.window_ns) + ')');
    li('Mean threads running', p.mean_running.toFixed(2));
    li('Mean threads waiting for a CPU', p.mean_runnable.toFixed(2));
    li('Lost events', String(s.lost_events));
  }

  function header(run, container) {
    const s = run.summary;
    const what = s.target.command ? s.target.command.join(' ') + ' (PID ' + s.target.pid + ')' : 'PID ' + s.target.pid + ' (' + s.target.comm + ')';
    const m = h('div', { class: 'meta' }, container);
    const add = (label, val) => { h('b', {}, m, label + ' '); m.appendChild(document.createTextNode(val + '   ')); };
    add('target', what);
    add('window', fmtDur(s.window_ns));
    add('CPUs', s.ncpus + (s.target.pinned_cpus ? ' (pinned to ' + s.target.pinned_cpus.join(',') + ')' : ''));
    add('threads', String(s.totals.threads_seen));
    add('events', String(s.events));
    add('kernel', s.kernel_release || '?');
    const lost = h('div', { class: s.lost_events > 0 ? 'warn meta' : 'meta' }, container);
    lost.textContent = s.lost_events > 0
      ? s.lost_events + ' events were lost (ring buffer full): lanes may be wrong near the red marks'
      : 'No events lost.';
    if (s.lost_processes > 0) {
      h('div', { class: 'warn meta' }, container, s.lost_processes + (s.lost_processes === 1 ? ' process' : ' processes') + ' to be traced could not be (the kernel\'s map of traced processes was full): their threads are in no figure.');
    }
    if (s.complete === false) {
      h('div', { class: 'warn meta' }, container, 'The trace is incomplete (' + s.stop_reason + '): whatever happened after its last record is missing.');
    }
    // What the kernel's counters show beyond the event stream.
    const acc = [];
    const inferred = (s.inferred_per_cpu || []).reduce((a, b) => a + b, 0);
    if (inferred > 0) acc.push(inferred + ' runs had no switch-in in the kernel\'s event stream: placed from their switch-out\'s counters (hover: "inferred run")');
    if (s.totals && s.totals.steal_ns > 0) acc.push('steal ' + fmtDur(s.totals.steal_ns) + ' on a CPU the kernel did not charge (hypervisor steal)');
    if (s.totals && s.totals.run_delay_asleep_ns > 0) acc.push('the kernel counted ' + fmtDur(s.totals.run_delay_asleep_ns) + ' of sleep as run-queue wait (sleeping threads moved to another CPU while their dequeue was delayed): not in the runnable times');
    if (s.recursion_misses > 0) acc.push('the kernel skipped ' + s.recursion_misses + ' program runs (recursion): their events are missing');
    const late = (s.late_per_cpu || []).reduce((a, b) => a + b, 0);
    if (late > 0) acc.push(late + ' events arrived after newer ones (out of order): each was taken where the analysis stood, an anomaly');
    for (const g of s.end_gaps || []) acc.push('CPU ' + g.cpu + '\'s events could not be shown complete for the last ' + fmtDur(g.to_ns - g.from_ns) + ' (events there may be missing)');
    if (s.unplaced_runs > 0) acc.push(s.unplaced_runs + ' runs had neither end in the kernel\'s event stream: their time is in the totals, not drawn in the lanes');
    const missingWakeups = (s.missing_wakeups_per_cpu || []).reduce((a, b) => a + b, 0);
    if (s.wakeups && missingWakeups > 0) acc.push(missingWakeups + ' wakeups were not in the kernel\'s event stream: who woke those threads is unknown');
    if (s.anomalies > 0) acc.push(s.anomalies + ' events contradicted the thread states (anomalies)');
    if (s.lost_stacks > 0) acc.push(s.lost_stacks + ' sleeps lost their stack (stack map full): their time is in the waits, not in the stacks');
    if (acc.length) h('div', { class: 'meta' }, container, acc.join('; ') + '.');
    const tl = run.timeline;
    if (tl.detail_ns < tl.window_ns && tl.records) {
      const finest = (tl.lod || []).reduce((m, L) => Math.min(m, L.bucket_ns), Infinity);
      h('div', { class: 'meta lod-note' }, container, 'Full detail for the first ' + fmtDur(tl.detail_ns) + ' of ' + fmtDur(tl.window_ns) +
        ' only (' + tl.records.kept + ' of ' + tl.records.total + ' records: thread states, CPU runs, wakeups), to keep this page small and quick;' +
        ' beyond, the timeline shows each lane\'s share of every state per pixel from aggregates (buckets down to ' + fmtDur(finest) + ').' +
        ' The tables count every event. For every event open a Perfetto trace (--perfetto FILE), or make a page of a later range' +
        ' with schedtrace report TRACE --since SECONDS --html FILE.');
    }
  }

  function compareTable(rows, container) {
    const table = h('table', { class: 'compare' }, container);
    const head = h('tr', {}, h('thead', {}, table));
    rows[0].forEach((c) => h('th', {}, head, c));
    const body = h('tbody', {}, table);
    for (const r of rows.slice(1)) {
      const tr = h('tr', {}, body);
      r.forEach((c) => h('td', {}, tr, c));
    }
  }

  const main = document.getElementById('main');
  h('h1', {}, main, DATA.title);
  if (DATA.intro) h('p', { class: 'intro' }, main, DATA.intro);
  if (DATA.comparison) {
    h('h2', {}, main, 'Side by side');
    compareTable(DATA.comparison, main);
  }
  DATA.runs.forEach((run, ri) => {
    const sec = h('section', { class: 'run', 'data-run': ri }, main);
    if (DATA.runs.length > 1 || run.label) h('h2', {}, sec, run.label || ('Run ' + (ri + 1)));
    header(run, sec);
    h('h3', {}, sec, 'Timeline');
    const drawn = drawRun(run, ri, sec);
    h('h3', {}, sec, 'Threads');
    threadTable(run, sec, drawn.colorOf);
    whySection(run, sec);
    h('h3', {}, sec, 'Parallelism profile');
    parallelismChart(run, sec);
  });
  h('footer', {}, main, 'Generated by ' + DATA.generator + '. Self-contained: no network access needed.');
  if (!errors.length) root.setAttribute('data-status', 'ok');
})();

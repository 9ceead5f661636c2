// The live view's charts, drawn on a canvas (see ui/live_view.py, which prepends this file to
// live_view.js). They read the same plain Plotly specs as the page's own charts (ui/charts.py),
// the few parts of them these charts use: scatter lines and markers, bars, a heatmap, linear and
// log axes side by side (domains), fixed ranges, tick formats, annotations as titles, a legend.
// Why not Plotly.react: a redraw of these charts cost Chromium 40-300 ms of CPU (axes and tick
// labels laid out and measured each time), on the cores the run shares; a canvas redraw costs
// about a millisecond, so the charts can follow the run twice a second. No hover while a run is
// live: the finished run's charts on the page are Plotly's, with hover and zoom.

const FONT = '11px "Source Sans", "Source Sans Pro", sans-serif';
const TITLE_FONT = '600 12px "Source Sans", "Source Sans Pro", sans-serif';
const GRID = "rgba(128, 128, 128, 0.3)";
const DASHES = { solid: [], dot: [2, 3], dash: [6, 4] };
const BLUES = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];  // white 0 to blue many

function finite(v) {
  return typeof v === "number" && Number.isFinite(v);
}

function axisKey(ref, letter) {
  // "x" -> "xaxis", "x2" -> "xaxis2" (a trace's axis reference to its layout entry)
  return `${letter}axis${(ref || letter).slice(1)}`;
}

function linearTicks(lo, hi, wanted) {
  const step0 = (hi - lo) / Math.max(1, wanted);
  const power = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= step0) || step0;
  const ticks = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

function logTicks(lo, hi) {
  // lo, hi: log10 of the range; ticks as log10 values. Powers of ten, thinned to at most ~5;
  // within less than a decade or two, 2 and 5 times them too.
  const first = Math.ceil(lo - 1e-9), last = Math.floor(hi + 1e-9);
  const every = Math.max(1, Math.ceil((last - first + 1) / 5));
  const ticks = [];
  for (let k = first; k <= last; k += every) ticks.push(k);
  if (ticks.length >= 2) return ticks;
  const finer = [];
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k += 1) {
    for (const m of [1, 2, 5]) {
      const t = k + Math.log10(m);
      if (t >= lo - 1e-9 && t <= hi + 1e-9) finer.push(t);
    }
  }
  return finer.length ? finer : [Math.round((lo + hi) / 2)];
}

function tickText(value, axis) {
  if (axis.type === "log") {  // value is log10 of the number
    const v = 10 ** value, k = Math.round(value);
    if (Math.abs(value - k) < 1e-9) return k === 0 ? "1" : k === 1 ? "10" : `1e${k}`;  // a power of ten
    if (v >= 1e-3 && v < 1e4) return `${+v.toPrecision(2)}`;
    const e = Math.floor(value + 1e-9);
    return `${Math.round(v / 10 ** e)}e${e}`;
  }
  if (axis.tickformat === ".0%") return `${Math.round(value * 100)}%`;
  if (axis.tickformat === "~s" && Math.abs(value) >= 1000) {
    const [div, unit] = Math.abs(value) >= 1e6 ? [1e6, "M"] : [1e3, "k"];
    return `${+(value / div).toPrecision(3)}${unit}`;
  }
  return `${+value.toPrecision(4)}`;
}

function colourOf(t) {
  // t in [0, 1] on the white-to-blue scale
  const x = Math.max(0, Math.min(1, t)) * (BLUES.length - 1);
  const i = Math.min(BLUES.length - 2, Math.floor(x)), f = x - i;
  const [a, b] = [BLUES[i], BLUES[i + 1]];
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(",")})`;
}

function legendEntries(traces) {
  const seen = new Set(), out = [];
  for (const t of traces) {
    const name = t.legendgroup || t.name;
    if (t.showlegend === false || t.type === "heatmap" || !name || seen.has(name)) continue;
    seen.add(name);
    out.push({ name: t.legendgroup ? name : t.name, colour: (t.line && t.line.color) || (t.marker && t.marker.color) || "#888",
               dash: (t.line && t.line.dash) || "solid" });
  }
  return out;
}

function layoutLegend(ctx, entries, width) {
  // Rows of [swatch name] entries that fit the width: [{x, y, entry}], rows
  ctx.font = FONT;
  const placed = [];
  let x = 0, row = 0;
  for (const entry of entries) {
    const w = 26 + ctx.measureText(entry.name).width + 14;
    if (x > 0 && x + w > width) { x = 0; row += 1; }
    placed.push({ x, row, entry });
    x += w;
  }
  return { placed, rows: entries.length ? row + 1 : 0 };
}

function range(axis, values, isLog, withZero, pad = 0.05) {
  // [lo, hi] in axis units (log10 for log axes), `pad` of it added on either side; the spec's
  // own `range` when it gives one
  if (Array.isArray(axis.range)) return axis.range.slice();
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (!finite(v) || (isLog && v <= 0)) continue;
    const u = isLog ? Math.log10(v) : v;
    if (u < lo) lo = u;
    if (u > hi) hi = u;
  }
  if (withZero && !isLog) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
  if (!Number.isFinite(lo)) return isLog ? [-1, 1] : [0, 1];
  if (hi - lo < 1e-12) { const pad = isLog ? 0.5 : Math.abs(lo) * 0.1 || 1; return [lo - pad, hi + pad]; }
  const margin = (hi - lo) * pad;
  return [withZero && lo === 0 ? 0 : lo - margin, hi + margin];
}

function subplotsOf(spec) {
  // One subplot per (x axis, y axis) pair its traces use, in the order they first appear
  const plots = new Map();
  for (const t of spec.data) {
    const key = `${t.xaxis || "x"}/${t.yaxis || "y"}`;
    if (!plots.has(key)) plots.set(key, { xKey: axisKey(t.xaxis, "x"), yKey: axisKey(t.yaxis, "y"), traces: [] });
    plots.get(key).traces.push(t);
  }
  return [...plots.values()];
}

function drawSubplot(ctx, plot, layout, box, colour) {
  const xAxis = layout[plot.xKey] || {}, yAxis = layout[plot.yKey] || {};
  const heatmap = plot.traces.find((t) => t.type === "heatmap");
  const [dx0, dx1] = xAxis.domain || [0, 1], [dy0, dy1] = yAxis.domain || [0, 1];
  const left = box.left + dx0 * box.width, right = box.left + dx1 * box.width;
  const top = box.top + (1 - dy1) * box.height, bottom = box.top + (1 - dy0) * box.height;
  ctx.font = FONT;
  ctx.fillStyle = colour;
  if (heatmap) { drawHeatmap(ctx, heatmap, xAxis, yAxis, { left, right, top, bottom }, colour); return; }

  const yLog = yAxis.type === "log", hasBars = plot.traces.some((t) => t.type === "bar");
  const [x0, x1] = range(xAxis, plot.traces.flatMap((t) => t.x), false, false, hasBars ? 0.05 : 0);  // lines end at the edges
  const [y0, y1] = range(yAxis, plot.traces.flatMap((t) => t.y), yLog, hasBars);
  const px = (v) => left + ((v - x0) / (x1 - x0 || 1)) * (right - left);
  const yOf = (u) => bottom - ((u - y0) / (y1 - y0 || 1)) * (bottom - top);  // u in axis units (log10 on a log axis)
  const py = (v) => yOf(yLog ? Math.log10(v) : v);

  // grid and tick labels
  ctx.strokeStyle = GRID;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of yLog ? logTicks(y0, y1) : linearTicks(y0, y1, 4)) {
    const y = Math.round(yOf(t)) + 0.5;
    if (y < top - 1 || y > bottom + 1) continue;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
    ctx.fillText(tickText(t, yAxis), left - 4, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const xTicks = linearTicks(x0, x1, Math.max(3, Math.floor((right - left) / 70)));
  for (const t of xTicks) {
    const x = Math.round(px(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
    ctx.fillText(tickText(t, xAxis), x, bottom + 4);
  }
  const xTitle = xAxis.title && xAxis.title.text;
  if (xTitle) ctx.fillText(xTitle, (left + right) / 2, bottom + 18);

  ctx.save();
  ctx.beginPath(); ctx.rect(left, top - 2, right - left, bottom - top + 4); ctx.clip();
  for (const t of plot.traces) {
    const colourOfTrace = (t.line && t.line.color) || (t.marker && t.marker.color) || colour;
    if (t.type === "bar") {
      const step = t.x.length > 1 ? Math.abs(px(t.x[1]) - px(t.x[0])) : (right - left) / 10;
      ctx.globalAlpha = t.opacity ?? 1;
      ctx.fillStyle = colourOfTrace;
      t.x.forEach((x, i) => {
        if (!finite(t.y[i])) return;
        const yTop = py(t.y[i]), yBase = py(Math.max(0, y0));
        ctx.fillRect(px(x) - step * 0.45, Math.min(yTop, yBase), step * 0.9, Math.abs(yBase - yTop));
      });
      ctx.globalAlpha = 1;
      continue;
    }
    ctx.strokeStyle = colourOfTrace;
    ctx.lineWidth = (t.line && t.line.width) || 1.5;
    ctx.setLineDash(DASHES[(t.line && t.line.dash) || "solid"] || []);
    ctx.beginPath();
    let pen = false;
    t.x.forEach((x, i) => {
      const y = t.y[i];
      if (!finite(x) || !finite(y) || (yLog && y <= 0)) { pen = pen && !!t.connectgaps; return; }
      if (pen) ctx.lineTo(px(x), py(y)); else ctx.moveTo(px(x), py(y));
      pen = true;
    });
    ctx.stroke();
    ctx.setLineDash([]);
    if ((t.mode || "").includes("markers")) {
      ctx.fillStyle = colourOfTrace;
      t.x.forEach((x, i) => {
        if (!finite(x) || !finite(t.y[i])) return;
        ctx.beginPath(); ctx.arc(px(x), py(t.y[i]), 2.5, 0, 2 * Math.PI); ctx.fill();
      });
    }
  }
  ctx.restore();
}

function drawHeatmap(ctx, trace, xAxis, yAxis, area, colour) {
  const z = trace.z, rows = z.length, cols = rows ? z[0].length : 0;
  if (!rows || !cols) return;
  const max = Math.max(1, ...z.flat().filter(finite));
  const cellW = (area.right - area.left) / cols, cellH = (area.bottom - area.top) / rows;
  const reversed = yAxis.autorange === "reversed";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  for (let r = 0; r < rows; r += 1) {
    const y = reversed ? area.top + r * cellH : area.bottom - (r + 1) * cellH;
    for (let c = 0; c < cols; c += 1) {
      const v = finite(z[r][c]) ? z[r][c] : 0;
      ctx.fillStyle = colourOf(v / max);
      ctx.fillRect(area.left + c * cellW, y, cellW + 0.5, cellH + 0.5);
      if (v && cellW >= 16 && cellH >= 12) {  // the count, when it fits
        ctx.fillStyle = v / max > 0.5 ? "#fff" : "#08306b";
        ctx.fillText(String(v), area.left + (c + 0.5) * cellW, y + cellH / 2);
      }
    }
    ctx.fillStyle = colour;
    ctx.textAlign = "right";
    ctx.fillText(String((trace.y || [])[r] ?? r), area.left - 4, y + cellH / 2);
    ctx.textAlign = "center";
  }
  ctx.textBaseline = "top";
  for (let c = 0; c < cols; c += 1) ctx.fillText(String((trace.x || [])[c] ?? c), area.left + (c + 0.5) * cellW, area.bottom + 4);
  const xTitle = xAxis.title && xAxis.title.text, yTitle = yAxis.title && yAxis.title.text;
  if (xTitle) ctx.fillText(xTitle, (area.left + area.right) / 2, area.bottom + 18);
  if (yTitle) {
    ctx.save();
    ctx.translate(area.left - 26, (area.top + area.bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "bottom";
    ctx.fillText(yTitle, 0, 0);
    ctx.restore();
  }
}

function describe(spec) {
  // The chart in words, for screen readers (and tests): titles, then each line's last value.
  const titles = [(spec.layout.title && spec.layout.title.text) || "",
                  ...(spec.layout.annotations || []).map((a) => a.text)].filter(Boolean);
  const last = spec.data.filter((t) => t.type === "scatter" && t.showlegend !== false).map((t) => {
    const ys = t.y.filter(finite);
    return ys.length ? `${t.name} ${+ys[ys.length - 1].toPrecision(3)}` : "";
  }).filter(Boolean);
  return [titles.join(", "), last.join("; ")].filter(Boolean).join(": ");
}

function drawPlotlySpec(element, spec, colour) {
  // Draw `spec` into `element` (a canvas is made the first time). Returns false when the element
  // is not laid out (no width yet): the caller draws it later.
  let canvas = element.querySelector("canvas.live-canvas");
  if (!canvas) {
    canvas = document.createElement("canvas");
    canvas.className = "live-canvas";
    canvas.setAttribute("role", "img");
    element.appendChild(canvas);
  }
  const width = element.clientWidth, height = spec.layout.height || 300;
  if (!width) return false;
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const margin = { l: 50, r: 10, t: 36, b: 40, ...(spec.layout.margin || {}) };
  const legend = layoutLegend(ctx, legendEntries(spec.data), width - margin.l - margin.r);
  const legendHeight = legend.rows * 16;
  const box = { left: margin.l, top: margin.t, width: width - margin.l - margin.r,
                height: height - margin.t - margin.b - legendHeight };
  if (box.width < 40 || box.height < 40) return true;
  for (const plot of subplotsOf(spec)) drawSubplot(ctx, plot, spec.layout, box, colour);
  // titles: the spec's annotations (in paper coordinates) and its title
  ctx.fillStyle = colour;
  ctx.font = TITLE_FONT;
  ctx.textBaseline = "bottom";
  for (const a of spec.layout.annotations || []) {
    ctx.textAlign = a.xanchor === "center" ? "center" : "left";
    ctx.fillText(a.text, box.left + a.x * box.width, box.top - 6);
  }
  const title = spec.layout.title && spec.layout.title.text;
  if (title) { ctx.textAlign = "left"; ctx.fillText(title, 4, 20); }
  // the legend, under the plots
  ctx.font = FONT;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  for (const { x, row, entry } of legend.placed) {
    const y = height - legendHeight + row * 16 + 8, x0 = box.left + x;
    ctx.strokeStyle = entry.colour;
    ctx.lineWidth = 2;
    ctx.setLineDash(DASHES[entry.dash] || []);
    ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x0 + 20, y); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = colour;
    ctx.fillText(entry.name, x0 + 26, y);
  }
  canvas.setAttribute("aria-label", describe(spec));
  element.__drawn = spec;  // what is shown now (tests read it)
  return true;
}

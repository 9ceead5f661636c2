// The Train page's live view (see ui/live_view.py): polls the run's JSON feed and updates
// its own elements in place; the charts are drawn on canvases (ui/live_charts.js, prepended).
const POLL_MS = 450;  // bars, table, pictures and charts: at least two updates a second
// A chart redraw costs about a millisecond; should one ever cost much more (a huge window, a
// slow machine), that chart is redrawn at most once every DUTY times its last redraw's duration,
// so the view never takes more than a few percent of the cores the run may share.
const DUTY = 20;
// A feed request that has not answered by then is given up and asked again (a stalled
// connection would otherwise freeze the view until the browser's own timeout, tens of seconds).
const FETCH_TIMEOUT_MS = 3000;
const AWAY_TICKS = 20;  // polls (~9 s) the view waits for its element to come back on the page
// A request for the page's redraw (the run's status changed) is asked again this often until the
// redraw comes: should one be lost, the page would show the old status (nothing else redraws it
// while the run goes on), and an ended run's view would stay.
const ASK_AGAIN_MS = 2000;

function skeleton(parent) {
  const root = document.createElement("div");
  root.className = "digitlab-live";
  root.innerHTML = `
    <div class="bar-label" data-bar="run"></div>
    <div class="bar-track" role="progressbar" aria-label="Run progress" aria-valuemin="0" aria-valuemax="100"
         aria-valuenow="0" data-bar="run"><div class="bar-fill"></div></div>
    <div class="bar-label" data-bar="epoch"></div>
    <div class="bar-track" role="progressbar" aria-label="Epoch progress" aria-valuemin="0" aria-valuemax="100"
         aria-valuenow="0" data-bar="epoch"><div class="bar-fill"></div></div>
    <div class="live-note" aria-live="polite"></div>
    <div class="live-chart"></div>
    <div class="live-panels" hidden>
      <div class="panel-row">
        <div><div class="panel-title">The first layer's weights (one 28×28 image per unit; blue +, red −)</div>
             <div class="grid weights"></div></div>
        <div><div class="panel-title">24 test digits: what the network reads now (red: wrong)</div>
             <div class="grid strip"></div></div>
      </div>
      <div class="panel-row">
        <div class="chart diagnostics"></div>
        <div class="chart confusion" style="flex: 0 1 20rem"></div>
      </div>
      <div class="step-report"></div>
    </div>
    <div class="live-table"></div>`;
  parent.appendChild(root);
  return root;
}

function setBar(root, name, bar) {
  const track = root.querySelector(`.bar-track[data-bar=${name}]`);
  const percent = Math.max(0, Math.min(100, Math.round(bar.fraction * 100)));
  track.setAttribute("aria-valuenow", String(percent));
  track.firstElementChild.style.width = `${percent}%`;
  root.querySelector(`.bar-label[data-bar=${name}]`).textContent = bar.text;
}

function number(value, digits) {
  return value === null || value === undefined ? "" : Number(value).toFixed(digits);
}

function setTable(root, columns, rows, epochsDone) {
  // Rebuilt only when an epoch has ended (the rows change once per epoch).
  const box = root.querySelector(".live-table");
  const drawn = `${epochsDone}:${columns.join()}`;
  if (box.dataset.drawn === drawn) return;
  box.dataset.drawn = drawn;
  if (!rows.length) { box.textContent = ""; return; }
  const head = columns.map((c) => `<th>${c}</th>`).join("");
  const body = rows.slice().reverse().map((row) => "<tr>" + columns.map((c) =>
    `<td>${c === "epoch" ? row[c] : number(row[c], c === "seconds" ? 2 : 4)}</td>`).join("") + "</tr>").join("");
  const note = epochsDone > rows.length ? `<caption>the last ${rows.length} of ${epochsDone} epochs</caption>` : "";
  box.innerHTML = `<table>${note}<thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function bytesOf(base64) {
  const raw = atob(base64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
  return out;
}

function paint(canvas, bytes, offset, diverging) {
  // One 28x28 image: grey ink on black, or (weights) blue for +, red for -, white for 0.
  const context = canvas.getContext("2d");
  const image = context.createImageData(28, 28);
  for (let i = 0; i < 784; i += 1) {
    const v = bytes[offset + i];
    let r = v, g = v, b = v;
    if (diverging) {
      const t = (v - 127.5) / 127.5;
      r = t > 0 ? 255 * (1 - t) : 255;
      g = 255 * (1 - Math.abs(t));
      b = t < 0 ? 255 * (1 + t) : 255;
    }
    image.data.set([r, g, b, 255], i * 4);
  }
  context.putImageData(image, 0, 0);
}

function cells(box, count, withLabel) {
  // Reuse the grid's canvases (no flicker, no garbage) and make more when needed.
  while (box.children.length < count) {
    const cell = document.createElement("div");
    cell.className = "cell";
    const canvas = document.createElement("canvas");
    canvas.width = 28;
    canvas.height = 28;
    cell.appendChild(canvas);
    if (withLabel) cell.appendChild(document.createElement("span"));
    box.appendChild(cell);
  }
  while (box.children.length > count) box.lastChild.remove();
  return Array.from(box.children);
}

function drawChart(root, element, name, spec, force) {
  // Redraw `element` with `spec` now if it is due (or `force`), else keep the spec for later.
  element.__pending = spec;
  if (!force && performance.now() < (element.__dueAt || 0)) return;
  const began = performance.now();
  if (!drawPlotlySpec(element, spec, getComputedStyle(root).color)) return;  // not laid out yet
  element.__pending = null;
  const cost = performance.now() - began;
  element.__dueAt = began + DUTY * cost;
  const stats = (window.__digitlabDraws = window.__digitlabDraws || {});  // read by benchmarks/bench_ui.py
  const mine = (stats[name] = stats[name] || { count: 0, ms: 0 });
  mine.count += 1;
  mine.ms += cost;
}

function drawPending(root, force) {
  // Charts whose newest spec was held back, drawn once they are due (or at the run's end).
  for (const [name, element] of Object.entries(charts(root))) {
    if (element.__pending) drawChart(root, element, name, element.__pending, force);
  }
}

function charts(root) {
  return { curves: root.querySelector(".live-chart"), diagnostics: root.querySelector(".diagnostics"),
           confusion: root.querySelector(".confusion") };
}

function setPanels(root, panels) {
  const box = root.querySelector(".live-panels");
  if (!panels) { box.hidden = true; return; }
  box.hidden = false;
  const drawn = `${panels.seq}:${panels.step ? panels.step.where : ""}`;
  if (box.dataset.drawn === drawn) return;  // redrawn only when the pictures changed (~twice a second)
  box.dataset.drawn = drawn;
  const weights = bytesOf(panels.weights.data);
  cells(box.querySelector(".weights"), panels.weights.units, false).forEach((cell, k) =>
    paint(cell.firstChild, weights, k * 784, true));
  const strip = panels.strip;
  const stripBox = box.querySelector(".strip");
  const stripCells = cells(stripBox, strip.true.length, true);
  if (stripBox.dataset.drawn !== strip.url && !stripBox.__loading) {  // fixed for a run: a file read once
    stripBox.__loading = fetchJson(strip.url)
      .then(({ status, body }) => {
        if (!body) throw new Error(`HTTP ${status}`);
        const digits = bytesOf(body.data);
        stripCells.forEach((cell, k) => paint(cell.firstChild, digits, k * 784, false));
        stripBox.dataset.drawn = strip.url;
      })
      .catch(() => {})  // tried again with the next pictures
      .finally(() => { stripBox.__loading = null; });
  }
  stripCells.forEach((cell, k) => {
    const right = strip.read[k] === strip.true[k];
    cell.className = right ? "cell" : "cell bad";
    cell.lastChild.textContent = `${strip.names[strip.read[k]]} ${Math.round(strip.prob[k] * 100)}%`;
  });
  const report = box.querySelector(".step-report");
  if (panels.step) {
    const s = panels.step;
    report.innerHTML = `<div class="panel-title">The last step: ${s.where}, loss of its batch ${s.loss_before.toFixed(4)}
      → ${s.loss_after.toFixed(4)}; gradient norm by layer ${s.grad_norms.map((g) => g.toPrecision(3)).join(", ")}</div>
      <div class="grid step-digits"></div>`;
    const digits = bytesOf(s.data);
    cells(report.querySelector(".step-digits"), s.count, true).forEach((cell, k) => {
      paint(cell.firstChild, digits, k * 784, false);
      cell.lastChild.textContent = strip.names[s.labels[k]];
    });
  } else {
    report.textContent = "";
  }
  const { diagnostics, confusion: confusionChart } = charts(root);
  drawChart(root, diagnostics, "diagnostics", panels.diagnostics, false);
  const confusion = panels.confusion ? JSON.stringify(panels.confusion.data[0].z) : "";
  if (panels.confusion && box.__confusion !== confusion) {  // it changes once an epoch
    box.__confusion = confusion;
    drawChart(root, confusionChart, "confusion", panels.confusion, false);
  }
}

async function fetchJson(url, stats) {
  // { status, body }: body is null unless the answer is OK; given up after FETCH_TIMEOUT_MS.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    const response = await fetch(url, { cache: "no-store", signal: controller.signal });
    return { status: response.status, body: response.ok ? await response.json() : null };  // the body, too, in time
  } catch (error) {
    if (error.name !== "AbortError") throw error;
    if (stats) stats.timeouts += 1;
    throw new Error(`the run's feed did not answer within ${FETCH_TIMEOUT_MS / 1000} s`);
  } finally {
    clearTimeout(timer);
  }
}

async function fetchFeed(url) {
  const stats = (window.__digitlabFeed = window.__digitlabFeed || { requests: 0, timeouts: 0 });  // for benchmarks
  stats.requests += 1;
  const { status, body } = await fetchJson(`${url}?v=${Date.now()}`, stats);
  return { status, feed: body };
}

function askUntilRedrawn(root, feed, times) {
  setTimeout(() => {
    if (!root.isConnected || root.dataset.feed !== feed) return;  // redrawn: gone, or another run's view
    root.__digitlab.setTriggerValue("status", `ended:again:${times}`);
    askUntilRedrawn(root, feed, times + 1);
  }, ASK_AGAIN_MS);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  if (!data.feed) return undefined;  // the page's preload (see preload() in ui/live_view.py)
  let root = parentElement.querySelector(".digitlab-live");
  if (!root) root = skeleton(parentElement);
  root.__digitlab = { data, setTriggerValue };  // the newest mount's data (status it was drawn with)
  if (root.dataset.feed === data.feed && root.__poller) return undefined;  // already polling this run
  root.dataset.feed = data.feed;
  const poller = (root.__poller = { away: 0 });  // this mount's poller; a newer one replaces it

  let stopped = false;  // the run has ended
  let lastVersion = -1;
  const asked = { status: null, at: -Infinity };  // this poller's last request for the page's redraw
  const chart = root.querySelector(".live-chart");
  async function tick() {
    if (stopped || root.__poller !== poller || root.dataset.feed !== data.feed) return;
    // Off the page: Streamlit may be moving the element during a redraw, so wait a little for it
    // to come back before giving up (a later mount then starts a new poller).
    poller.away = root.isConnected ? 0 : poller.away + 1;
    if (poller.away > AWAY_TICKS) { root.__poller = null; return; }
    if (poller.away) { setTimeout(tick, POLL_MS); return; }
    const began = performance.now();
    try {
      const { status, feed } = await fetchFeed(data.feed);
      if (!feed) {
        root.querySelector(".live-note").textContent = `Live view: the run's feed answered HTTP ${status} (retrying)`;
      } else {
        if (feed.version !== lastVersion) {
          lastVersion = feed.version;
          setBar(root, "run", feed.run);
          setBar(root, "epoch", feed.epoch);
          root.querySelector(".live-note").textContent = "";
          setTable(root, feed.columns, feed.table, feed.epochs_done);
          setPanels(root, feed.panels);
          if (feed.figure) drawChart(root, chart, "curves", feed.figure, false);
        }
        drawPending(root, !feed.active);  // the run's end is drawn in full
        // The page's own status line (and its buttons) is drawn by Streamlit: ask it to redraw
        // when the run's status differs from the one it was drawn with (queued -> running,
        // paused, finished). Each redraw mounts this view again with the status it drew.
        const current = root.__digitlab;
        const due = feed.status !== asked.status || performance.now() - asked.at > ASK_AGAIN_MS;
        if (feed.status !== current.data.status && due) {
          asked.status = feed.status;
          asked.at = performance.now();
          current.setTriggerValue("status", `${feed.status}:${feed.version}`);
        }
        if (!feed.active) { stopped = true; root.__poller = null; askUntilRedrawn(root, data.feed, 1); return; }
      }
    } catch (error) {
      root.querySelector(".live-note").textContent = `Live view: ${error.message} (retrying)`;
    }
    setTimeout(tick, Math.max(0, POLL_MS - (performance.now() - began)));  // a steady cadence
  }
  // No cleanup function: a re-mount with new data must not stop this poller; it stops by itself
  // once its element has left the page for good or the run has ended.
  tick();
  return undefined;
}

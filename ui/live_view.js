// The Train page's live view (see ui/live_view.py): polls the run's JSON feed and updates
// its own elements in place; Plotly.react redraws the curves without rebuilding the chart.
const POLL_MS = 450;  // a redraw costs ~50 ms of the browser's CPU; at least two a second are wanted

function loadPlotly(url) {
  // One copy of plotly.js per page, shared by every mount of the view.
  if (!window.__digitlabPlotly) {
    window.__digitlabPlotly = new Promise((resolve, reject) => {
      if (window.Plotly) return resolve(window.Plotly);
      const script = document.createElement("script");
      script.src = url;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { window.__digitlabPlotly = null; reject(new Error("plotly.js did not load")); };
      document.head.appendChild(script);
    });
  }
  return window.__digitlabPlotly;
}

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

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  if (!data.feed) {  // the page's preload (see preload() in ui/live_view.py)
    loadPlotly(data.plotly).catch(() => {});
    return undefined;
  }
  let root = parentElement.querySelector(".digitlab-live");
  if (!root) root = skeleton(parentElement);
  root.__digitlab = { data, setTriggerValue };  // the newest mount's data (status it was drawn with)
  if (root.dataset.feed === data.feed) return undefined;  // already polling this run
  root.dataset.feed = data.feed;

  let stopped = false;  // the run has ended
  let lastVersion = -1;
  const chart = root.querySelector(".live-chart");
  async function tick() {
    if (stopped || !root.isConnected || root.dataset.feed !== data.feed) return;
    const began = performance.now();
    try {
      const response = await fetch(`${data.feed}?v=${Date.now()}`, { cache: "no-store" });
      if (!response.ok) {
        root.querySelector(".live-note").textContent = `Live view: the run's feed answered HTTP ${response.status} (retrying)`;
      } else {
        const feed = await response.json();
        if (feed.version !== lastVersion) {
          lastVersion = feed.version;
          setBar(root, "run", feed.run);
          setBar(root, "epoch", feed.epoch);
          root.querySelector(".live-note").textContent = "";
          setTable(root, feed.columns, feed.table, feed.epochs_done);
          if (feed.figure) {
            const Plotly = await loadPlotly(data.plotly);
            // The page's own text colour on a transparent background: light and dark themes.
            const layout = { ...feed.figure.layout, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
                             font: { ...feed.figure.layout.font, color: getComputedStyle(root).color } };
            await Plotly.react(chart, feed.figure.data, layout, { displaylogo: false, responsive: true });
          }
        }
        // The page's own status line (and its buttons) is drawn by Streamlit: ask it to redraw
        // when the run's status differs from the one it was drawn with (queued -> running,
        // paused, finished).
        const current = root.__digitlab;
        if (feed.status !== current.data.status) {
          current.setTriggerValue("status", `${feed.status}:${feed.version}`);
          current.data = { ...current.data, status: feed.status };
        }
        if (!feed.active) { stopped = true; return; }
      }
    } catch (error) {
      root.querySelector(".live-note").textContent = `Live view: ${error.message} (retrying)`;
    }
    setTimeout(tick, Math.max(0, POLL_MS - (performance.now() - began)));  // a steady cadence
  }
  // No cleanup function: a re-mount with new data must not stop this poller; it stops by itself
  // once its element has left the page or the run has ended.
  tick();
  return undefined;
}

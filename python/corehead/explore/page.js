// The corehead explorer (docs/explore.md). Reads the JSON that `corehead explore` embeds
// (format corehead.Explorer/1, described in corehead/explore/report.py) and draws everything
// with the DOM and <canvas>; no library, no network.
"use strict";

const D = JSON.parse(document.getElementById("corehead-data").textContent);
// Heat layer opacity: a dark veil of VEIL over unattended pixels, up to VEIL + HEAT where a token
// holds all of the attention (drawHeat).
const VEIL = 0.3, HEAT = 0.5;
const INFERNO = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                 [250, 193, 39], [252, 255, 164]];
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

const key = (l, h) => l + "," + h;
const storedIndex = new Map(D.heads.map((h, k) => [key(h[0], h[1]), k]));
const topSet = new Set(D.grid.top.map((h) => key(h[0], h[1])));
const state = { head: D.heads[0] };

function colormap(stops, v) {
  const x = Math.min(1, Math.max(0, v)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const t = x - i;
  return stops[i].map((c, j) => Math.round(c + t * (stops[i + 1][j] - c)));
}

function bytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function fmt(v, digits = 3) { return Number(v).toFixed(digits); }

// Row r of stored head k of probe p, dequantized: q / 255 * scale, the scale of the key's group
// (text 0, visual 1; report.py).
function attentionRow(p, k, r) {
  const n = p.n_tokens;
  const off = (k * p.rows.length + r) * n;
  const [sText, sVis] = p.scale[k][r];
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) out[j] = p.qbytes[off + j] * (p.isVisual[j] ? sVis : sText) / 255;
  return out;
}

// The attention the probe's view shows: one hovered row, or the mean of the default rows.
function queryAttention(p, k) {
  const rows = p.query === null ? p.default_rows : [p.query];
  const acc = new Float32Array(p.n_tokens);
  for (const r of rows) {
    const a = attentionRow(p, k, r);
    for (let j = 0; j < a.length; j++) acc[j] += a[j] / rows.length;
  }
  return acc;
}

// Brightness is absolute, not normalized per image: v = sqrt(mass of the token), so a token that
// gets all of the attention is white-hot, one with 1% of it is at 0.1, and a head that ignores
// the image leaves it dark. Boxes of other sizes than the median (a global view over tiles) count
// per area, and overlapping views add up, as in corehead.plot.attention_overlay.
function drawHeat(p, canvas, att) {
  const w = p.width, h = p.height;
  const heat = new Float32Array(w * h);
  const areas = p.boxes.map(([x0, y0, x1, y1]) => Math.max((x1 - x0) * (y1 - y0), 1e-9));
  const ref = [...areas].sort((a, b) => a - b)[Math.floor(areas.length / 2)] || 1;
  p.visual_positions.forEach((pos, i) => {
    const [x0, y0, x1, y1] = p.boxes[i];
    const d = att[pos] * ref / areas[i];
    for (let y = Math.max(0, Math.floor(y0)); y < Math.min(h, Math.ceil(y1)); y++)
      for (let x = Math.max(0, Math.floor(x0)); x < Math.min(w, Math.ceil(x1)); x++) heat[y * w + x] += d;
  });
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < heat.length; i++) {
    const v = Math.sqrt(Math.min(1, heat[i]));
    const [r, g, b] = colormap(INFERNO, v);
    img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b;
    img.data[4 * i + 3] = Math.round(255 * (VEIL + HEAT * v));
  }
  ctx.putImageData(img, 0, 0);
}

function renderProbe(p) {
  const [l, h] = state.head;
  const k = storedIndex.get(key(l, h));
  const att = queryAttention(p, k);
  let onImage = 0, onTarget = 0;
  for (const pos of p.visual_positions) onImage += att[pos];
  for (let j = 0; j < p.n_tokens; j++) onTarget += p.relevance[j] * att[j];
  if (p.canvas) {
    drawHeat(p, p.canvas, att);
    p.canvas.dataset.head = key(l, h);
    p.canvas.dataset.query = p.query === null ? "answer" : String(p.rows[p.query]);
  }
  // Text tokens shaded by the attention they receive from the current query.
  let maxText = 0;
  p.tokenEls.forEach((el, pos) => { if (el.classList.contains("text")) maxText = Math.max(maxText, att[pos]); });
  p.tokenEls.forEach((el, pos) => {
    if (!el.classList.contains("text")) return;
    const v = maxText > 0 ? att[pos] / maxText : 0;
    const [r, g, b] = colormap(INFERNO, v);
    el.style.background = `rgba(${r},${g},${b},${(0.15 + 0.85 * v).toFixed(3)})`;
    el.style.color = v > 0.6 ? "#000" : "#fff";
    el.title = `receives ${fmt(att[pos], 4)}`;
    el.classList.toggle("query", p.query !== null && p.rows[p.query] === pos);
  });
  for (const chip of p.visualChips) {
    let m = 0;
    for (let j = chip.start; j < chip.end; j++) m += att[j];
    chip.el.textContent = `\u25a6 image \u00b7 ${chip.end - chip.start} tokens \u00b7 ${fmt(m, 2)}`;
    chip.el.title = `${chip.end - chip.start} visual tokens receive ${fmt(m, 4)} in all`;
  }
  const what = p.query === null ? "positions predicting the answer" : `query ${JSON.stringify(p.tokens[p.rows[p.query]])}`;
  const image = p.visual_positions.length ? `${fmt(onImage, 3)} on the image, ` : "";
  p.statsEl.textContent = `${what}: ${image}RAM (on the target) ${fmt(onTarget, 3)}`;
  p.statsEl.dataset.ram = String(onTarget);
}

function buildProbe(p, i) {
  p.qbytes = bytes(p.q);
  p.isVisual = new Uint8Array(p.n_tokens);
  for (const pos of p.visual_positions) p.isVisual[pos] = 1;
  p.query = null;
  const card = document.createElement("div");
  card.className = "probe";
  card.dataset.probe = String(i);
  if (p.image) {
    const view = document.createElement("div");
    view.className = "view";
    view.style.height = `${280 * p.height / p.width}px`;
    const img = document.createElement("img");
    img.src = p.image;
    img.alt = `probe ${i}`;
    const canvas = document.createElement("canvas");
    canvas.className = "heat";
    canvas.width = p.width;
    canvas.height = p.height;
    view.append(img, canvas);
    for (const [x0, y0, x1, y1] of p.targets) {
      const t = document.createElement("div");
      t.className = "target";
      Object.assign(t.style, { left: `${100 * x0 / p.width}%`, top: `${100 * y0 / p.height}%`,
                               width: `${100 * (x1 - x0) / p.width}%`, height: `${100 * (y1 - y0) / p.height}%` });
      view.append(t);
    }
    card.append(view);
    p.canvas = canvas;
  }
  const qa = document.createElement("div");
  qa.className = "qa";
  qa.textContent = p.question + " ";
  if (p.answer) {
    const a = document.createElement("span");
    a.className = "answer";
    a.textContent = `\u2192 ${p.answer.trim()}`;
    qa.append(a);
  }
  card.append(qa);
  const tokens = document.createElement("div");
  tokens.className = "tokens";
  const visual = new Set(p.visual_positions);
  const rowOf = new Map(p.rows.map((pos, r) => [pos, r]));
  p.tokenEls = new Map();
  p.visualChips = [];
  for (let pos = 0; pos < p.n_tokens; pos++) {
    if (visual.has(pos)) {  // a run of visual tokens is one chip
      let end = pos;
      while (end < p.n_tokens && visual.has(end)) end++;
      const chip = document.createElement("span");
      chip.className = "tok vis";
      chip.dataset.span = `${pos}-${end}`;
      tokens.append(chip);
      p.visualChips.push({ el: chip, start: pos, end });
      pos = end - 1;
      continue;
    }
    const el = document.createElement("span");
    el.className = p.relevance[pos] > 0 ? "tok text target" : "tok text";  // a text probe's span
    el.dataset.pos = String(pos);
    el.textContent = p.tokens[pos].replace(/\n/g, "\u23ce") || "\u2205";
    if (rowOf.has(pos)) {
      el.addEventListener("mouseenter", () => { p.query = rowOf.get(pos); renderProbe(p); });
      el.addEventListener("mouseleave", () => { p.query = null; renderProbe(p); });
    }
    tokens.append(el);
    p.tokenEls.set(pos, el);
  }
  card.append(tokens);
  p.statsEl = document.createElement("div");
  p.statsEl.className = "stats";
  card.append(p.statsEl);
  return card;
}

function headInfo() {
  const [l, h] = state.head;
  const g = D.grid;
  const rank = 1 + g.ram.flat().filter((v) => v > g.ram[l][h]).length;
  const core = topSet.has(key(l, h)) ? " \u00b7 <b>CoRe head</b> (top 5%)" : "";
  document.getElementById("head-info").innerHTML =
    `<b>layer ${l}, head ${h}</b>: RAM ${fmt(g.ram[l][h])} (rank ${rank} of ${g.n_layer * g.n_head})${core}<br>` +
    `visual mass ${fmt(g.visual_mass[l][h])}, focus ${fmt(g.focus[l][h])}, lift ${fmt(g.lift[l][h], 2)} ` +
    `(chance ${fmt(g.chance, 4)})`;
  const note = document.getElementById("curve-note");
  if (D.curve) {
    const sets = D.curve.top_sets.filter((s) => s.heads.some((x) => x[0] === l && x[1] === h));
    const fr = [...new Set(sets.map((s) => `${+(100 * s.fraction).toFixed(2)}%`))];
    note.textContent = fr.length ? `layer ${l} head ${h} is among the top heads ablated at ${fr.join(", ")}.`
                                 : `layer ${l} head ${h} is in none of the top-by-RAM sets ablated here.`;
  }
}

function select(l, h) {
  if (!storedIndex.has(key(l, h))) return;
  state.head = [l, h];
  document.querySelectorAll("#ram-grid td.cell").forEach((td) => {
    td.classList.toggle("selected", +td.dataset.layer === l && +td.dataset.head === h);
  });
  headInfo();
  D.probes.forEach(renderProbe);
  document.body.dataset.head = key(l, h);
}

function buildGrid() {
  const g = D.grid;
  const max = Math.max(...g.ram.flat(), 1e-12);
  const table = document.getElementById("ram-grid");
  const head = table.insertRow();
  head.append(Object.assign(document.createElement("th"), { textContent: "L\\H" }));
  for (let h = 0; h < g.n_head; h++) head.append(Object.assign(document.createElement("th"), { textContent: h }));
  for (let l = 0; l < g.n_layer; l++) {
    const tr = table.insertRow();
    tr.append(Object.assign(document.createElement("th"), { textContent: l }));
    for (let h = 0; h < g.n_head; h++) {
      const td = tr.insertCell();
      td.className = "cell";
      td.dataset.layer = String(l);
      td.dataset.head = String(h);
      const v = g.ram[l][h] / max;
      const [r, gg, b] = colormap(VIRIDIS, v);
      td.style.background = `rgb(${r},${gg},${b})`;
      if (topSet.has(key(l, h))) td.classList.add("core");
      const stored = storedIndex.has(key(l, h));
      if (!stored) td.classList.add("nodata");
      td.title = `layer ${l} head ${h}: RAM ${fmt(g.ram[l][h])}` + (stored ? "" : " (no attention stored)");
      td.addEventListener("click", () => select(l, h));
    }
  }
  const legend = document.getElementById("legend");
  const stops = VIRIDIS.map((c, i) => `rgb(${c}) ${100 * i / (VIRIDIS.length - 1)}%`).join(",");
  legend.innerHTML = `<span>0</span><span class="bar" style="background:linear-gradient(90deg,${stops})"></span>` +
                     `<span>${fmt(max)} RAM</span>`;
}

function main() {
  const m = D.model || {};
  document.getElementById("summary").textContent =
    `${m.name || m.arch || "model"} (${D.grid.n_layer} layers \u00d7 ${D.grid.n_head} heads): RAM over ` +
    `${D.grid.n_probes} probes (query=${(D.params || {}).query || "?"}); showing ${D.probes.length} of ` +
    `${D.n_probes_total} probes, attention stored for ${D.heads.length} heads.`;
  document.getElementById("definition").textContent = D.definition;
  buildGrid();
  const list = document.getElementById("probe-list");
  D.probes.forEach((p, i) => list.append(buildProbe(p, i)));
  if (!D.curve) document.getElementById("curve").style.display = "none";
  select(state.head[0], state.head[1]);
  document.body.dataset.ready = "1";
}

main();

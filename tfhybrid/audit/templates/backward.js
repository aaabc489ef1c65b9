// The backward-pass page's script: inflate the inline numbers, draw every picture on its
// canvases for the chosen sample and channel, and show values under the pointer.
// (Included by the Jinja template: no double braces or brace-percent pairs in this file.)
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("page-data").textContent);
  const PICS = DATA.pictures;
  const state = { sample: 0, channels: new Map() }; // card id -> {in, out}; -1: all
  const cache = new Map(); // array id -> Float32Array

  // --- the numbers --------------------------------------------------------------------
  async function inflate(text) {
    const bytes = Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return await new Response(stream).arrayBuffer();
  }

  const HALF = new Float32Array(65536); // float16 -> float32, once
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    HALF[h] = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity)
      : s * (1 + f / 1024) * 2 ** (e - 15);
  }

  let BUFFER = null;
  function values(id) {
    if (!id) return null;
    if (cache.has(id)) return cache.get(id);
    const m = DATA.manifest[id];
    let out;
    if (m.enc === "f4") {
      out = new Float32Array(BUFFER, m.o, m.n);
    } else {
      const raw = new Uint16Array(BUFFER, m.o, m.n);
      out = new Float32Array(m.n);
      for (let i = 0; i < m.n; i++) out[i] = HALF[raw[i]] * m.s;
    }
    cache.set(id, out);
    return out;
  }

  // --- colours: a diverging scale centred on 0 (ColorBrewer RdBu, blue below 0) --------
  const STOPS = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
    "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"].map((h) =>
    [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
  const LUT = [];
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (STOPS.length - 1), k = Math.min(Math.floor(t), STOPS.length - 2);
    const f = t - k;
    LUT.push(STOPS[k].map((c, j) => Math.round(c + f * (STOPS[k + 1][j] - c))));
  }
  function colour(v, lim) {
    if (!Number.isFinite(v)) return [255, 0, 255]; // NaN or inf: magenta, never a value
    const t = lim > 0 ? Math.max(-1, Math.min(1, v / lim)) : 0;
    return LUT[Math.round((t + 1) * 127.5)];
  }

  // --- what a picture shows now: a grid of cells, each an index into its arrays ---------
  function channelFor(card, side) {
    const c = state.channels.get(card) || { in: -1, out: -1 };
    return side === "in" ? c.in : c.out;
  }

  // Returns {w, h, cells: Int32Array (-1: gap), where(i): words for element i}.
  function layoutOf(pic, card) {
    const d = pic.dims;
    if (pic.layout === "maps") {
      const [n, H, W, C] = d, s = Math.min(state.sample, n - 1);
      const ch = channelFor(card, pic.side);
      const shown = ch >= 0 && ch < C ? [ch] : [...Array(C).keys()];
      const cols = Math.ceil(Math.sqrt(shown.length)), rows = Math.ceil(shown.length / cols);
      const w = cols * (W + 1) - 1, h = rows * (H + 1) - 1;
      const cells = new Int32Array(w * h).fill(-1);
      shown.forEach((c, k) => {
        const x0 = (k % cols) * (W + 1), y0 = Math.floor(k / cols) * (H + 1);
        for (let i = 0; i < H; i++) for (let j = 0; j < W; j++)
          cells[(y0 + i) * w + x0 + j] = ((s * H + i) * W + j) * C + c;
      });
      return { w, h, cells, where: (e) => {
        const c = e % C, j = Math.floor(e / C) % W, i = Math.floor(e / (C * W)) % H;
        return `sample ${s}, row ${i}, column ${j}, channel ${c}`;
      } };
    }
    if (pic.layout === "vector") {
      const [n, D] = d, s = Math.min(state.sample, n - 1);
      const cols = D <= 40 ? D : Math.ceil(Math.sqrt(4 * D)), rows = Math.ceil(D / cols);
      const cells = new Int32Array(cols * rows).fill(-1);
      for (let k = 0; k < D; k++) cells[k] = s * D + k;
      return { w: cols, h: rows, cells, where: (e) => `sample ${s}, element ${e % D}` };
    }
    if (pic.layout === "filters") {
      const [kh, kw, Cin, Cout] = d;
      const ci = Math.max(0, Math.min(channelFor(card, "in"), Cin - 1));
      const co = channelFor(card, "out");
      const shown = co >= 0 && co < Cout ? [co] : [...Array(Cout).keys()];
      const cols = Math.ceil(Math.sqrt(shown.length)), rows = Math.ceil(shown.length / cols);
      const w = cols * (kw + 1) - 1, h = rows * (kh + 1) - 1;
      const cells = new Int32Array(w * h).fill(-1);
      shown.forEach((f, k) => {
        const x0 = (k % cols) * (kw + 1), y0 = Math.floor(k / cols) * (kh + 1);
        for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++)
          cells[(y0 + i) * w + x0 + j] = ((i * kw + j) * Cin + ci) * Cout + f;
      });
      return { w, h, cells, where: (e) => {
        const f = e % Cout, c = Math.floor(e / Cout) % Cin, j = Math.floor(e / (Cout * Cin)) % kw;
        const i = Math.floor(e / (Cout * Cin * kw));
        return `filter ${f}, input channel ${c}, row ${i}, column ${j}`;
      } };
    }
    if (pic.layout === "matrix") {
      const [R, K] = d, turn = R > K; // drawn wide: the longer axis across
      const w = turn ? R : K, h = turn ? K : R;
      const cells = new Int32Array(w * h);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++)
        cells[y * w + x] = turn ? x * K + y : y * K + x;
      return { w, h, cells, where: (e) => `row ${Math.floor(e / K)}, column ${e % K}` };
    }
    const K = d.reduce((a, b) => a * b, 1); // bars
    const cells = new Int32Array(K);
    for (let k = 0; k < K; k++) cells[k] = k;
    return { w: K, h: 1, cells, bars: true, where: (e) => `element ${e}` };
  }

  function versionValues(pic) {
    const m = values(pic.m), d = values(pic.d);
    if (!d) return { m };
    const t = new Float32Array(m.length);
    for (let i = 0; i < m.length; i++) t[i] = m[i] - d[i]; // tape = manual - difference
    return { m, t, d };
  }

  function limit(arrays, cells) {
    let lim = 0;
    for (const a of arrays) if (a) for (const e of cells) {
      if (e >= 0 && Number.isFinite(a[e])) lim = Math.max(lim, Math.abs(a[e]));
    }
    return lim;
  }

  // --- drawing ------------------------------------------------------------------------
  const TARGET = 220; // about this many pixels across a picture
  function paintGrid(canvas, grid, a, lim) {
    canvas.width = grid.w;
    canvas.height = grid.h;
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(grid.w, grid.h);
    for (let p = 0; p < grid.cells.length; p++) {
      const e = grid.cells[p];
      if (e < 0) continue; // a gap between tiles: transparent
      const [r, g, b] = colour(a[e], lim);
      img.data.set([r, g, b, 255], p * 4);
    }
    ctx.putImageData(img, 0, 0);
    let zoom = Math.max(1, Math.floor(TARGET / Math.max(grid.w, grid.h)));
    let cssW = grid.w * zoom, cssH = grid.h * zoom;
    const most = canvas.closest(".chain") ? 300 : 640; // a chain term shares its row
    if (cssW > most) { cssH = Math.max(Math.round((cssH * most) / cssW), grid.h > 1 ? 40 : 12); cssW = most; }
    canvas.style.width = cssW + "px";
    canvas.style.height = Math.max(cssH, 8) + "px";
  }

  function paintBars(canvas, grid, a, lim, outline) {
    const K = grid.w, bw = Math.max(6, Math.min(28, Math.floor(420 / K))), H = 90;
    canvas.width = K * bw;
    canvas.height = H;
    canvas.style.width = canvas.width + "px";
    canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d"), mid = H / 2, scale = lim > 0 ? (H / 2 - 4) / lim : 0;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, H);
    ctx.strokeStyle = "#999";
    ctx.beginPath(); ctx.moveTo(0, mid); ctx.lineTo(canvas.width, mid); ctx.stroke();
    for (let k = 0; k < K; k++) {
      const v = a[grid.cells[k]];
      const [r, g, b] = colour(Number.isFinite(v) ? Math.sign(v) * lim * 0.8 : v, lim);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      const y = Number.isFinite(v) ? v * scale : 0;
      ctx.fillRect(k * bw + 1, Math.min(mid, mid - y), bw - 2, Math.max(Math.abs(y), 1));
      if (outline) { // the tape's bar, outlined, on the same axis
        const t = outline[grid.cells[k]] * scale;
        ctx.strokeStyle = "#1d1d1f";
        ctx.strokeRect(k * bw + 1.5, Math.min(mid, mid - t), bw - 3, Math.max(Math.abs(t), 1));
      }
    }
  }

  function legend(el, lim) {
    if (!el) return;
    el.textContent = "";
    const bar = document.createElement("canvas");
    bar.className = "bar";
    bar.width = 90; bar.height = 8;
    const ctx = bar.getContext("2d");
    for (let x = 0; x < 90; x++) {
      const [r, g, b] = colour(((x / 89) * 2 - 1) * lim, lim);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(x, 0, 1, 8);
    }
    const lo = document.createElement("span"), hi = document.createElement("span");
    lo.textContent = fmt(-lim); hi.textContent = fmt(lim);
    el.append(lo, bar, hi);
  }

  function fmt(v) {
    if (!Number.isFinite(v)) return String(v);
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a >= 1e-3 && a < 1e4 ? v.toPrecision(4) : v.toExponential(3);
  }

  function draw(fig) {
    const pic = PICS[fig.dataset.pic];
    const card = fig.closest("article.card").dataset.card;
    const grid = layoutOf(pic, card);
    const v = versionValues(pic);
    const shared = limit([v.m, v.t], grid.cells); // manual and tape on one scale
    const own = limit([v.d], grid.cells);
    for (const canvas of fig.querySelectorAll("canvas.view")) {
      const which = canvas.dataset.version, a = v[which], lim = which === "d" ? own : shared;
      if (grid.bars) paintBars(canvas, grid, a, lim, which === "m" ? v.t : null);
      else paintGrid(canvas, grid, a, lim);
      canvas._grid = grid;
      legend(fig.querySelector(`[data-legend="${which}"]`), lim);
    }
    fig._values = v;
    fig.dataset.drawn = String(state.sample);
  }

  function drawAll(root) {
    for (const fig of (root || document).querySelectorAll("figure.pic")) {
      try { draw(fig); } catch (err) { console.error("picture", fig.id, err); }
    }
  }

  // --- hovering: the element under the pointer, in all three versions ---------------------
  const tip = document.getElementById("tip");
  function hover(ev) {
    const canvas = ev.target, grid = canvas._grid, fig = canvas.closest("figure.pic");
    if (!grid || !fig || !fig._values) return;
    const r = canvas.getBoundingClientRect();
    const x = Math.floor(((ev.clientX - r.left) / r.width) * (grid.bars ? grid.w : canvas.width));
    const y = grid.bars ? 0 : Math.floor(((ev.clientY - r.top) / r.height) * canvas.height);
    const e = x >= 0 && y >= 0 && x < grid.w && y < grid.h ? grid.cells[y * grid.w + x] : -1;
    if (e === undefined || e < 0) { tip.hidden = true; return; }
    const v = fig._values, pic = PICS[fig.dataset.pic];
    const lines = [grid.where(e)];
    if (pic.single) lines.push(`value       ${fmt(v.m[e])}`);
    else if (pic.tape_only) lines.push(`tape        ${fmt(v.m[e])}`);
    else {
      lines.push(`manual      ${fmt(v.m[e])}`);
      if (v.t) lines.push(`tape        ${fmt(v.t[e])}`, `difference  ${fmt(v.d[e])}`);
    }
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    tip.style.left = ev.clientX + 14 + "px";
    tip.style.top = ev.clientY + 14 + "px";
  }

  // --- controls -----------------------------------------------------------------------
  function pickers(card) {
    const box = card.querySelector(":scope > .pickers");
    const cin = +card.dataset.cin, cout = +card.dataset.cout, linked = card.dataset.linked === "1";
    const id = card.dataset.card;
    state.channels.set(id, { in: -1, out: -1 });
    const make = (label, count, sides) => {
      if (!count) return;
      const wrap = document.createElement("label");
      wrap.textContent = label + " ";
      const sel = document.createElement("select");
      sel.className = "channel";
      sel.dataset.sides = sides.join(",");
      sel.add(new Option(`all ${count}`, "-1"));
      for (let c = 0; c < count; c++) sel.add(new Option(String(c), String(c)));
      sel.addEventListener("change", () => {
        const now = state.channels.get(id);
        for (const side of sides) now[side] = +sel.value;
        for (const fig of card.querySelectorAll("figure.pic"))
          if (fig.closest("article.card") === card) draw(fig);
      });
      wrap.append(sel);
      box.append(wrap);
    };
    if (linked && cin === cout) make("channel", cout, ["in", "out"]);
    else { make("output channel", cout, ["out"]); make("input channel", cin, ["in"]); }
  }

  async function main() {
    BUFFER = await inflate(document.getElementById("page-blob").textContent);
    for (const card of document.querySelectorAll("article.card")) pickers(card);
    document.getElementById("sample").addEventListener("change", (ev) => {
      state.sample = +ev.target.value;
      drawAll();
    });
    document.getElementById("show-all").addEventListener("change", (ev) => {
      document.body.classList.toggle("show-all", ev.target.checked);
    });
    document.addEventListener("mousemove", (ev) => {
      if (ev.target instanceof HTMLCanvasElement && ev.target.classList.contains("view")) hover(ev);
      else tip.hidden = true;
    });
    drawAll();
    document.body.dataset.ready = "1";
  }
  main().catch((err) => { console.error("the page could not draw:", err); });
})();

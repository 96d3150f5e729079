// chart.js — a small line chart on a canvas, written to be read: axes with round ticks, several
// series, an optional logarithmic y axis, zoom by dragging across the x range (double-click: all).
//
//   const chart = new LineChart(canvas, { xLabel: "step" });
//   chart.setSeries([{ name: "loss", color: "#888", points: [[0, 1.4], [1, 1.2]] }]);
//   chart.setLogY(true);
"use strict";

class LineChart {
  constructor(canvas, { xLabel = "", yLabel = "" } = {}) {
    this.canvas = canvas;
    this.xLabel = xLabel;
    this.yLabel = yLabel;
    this.series = [];
    this.logY = false;
    this.zoom = null; // [x0, x1] while zoomed in
    this.drag = null; // [x0, x1] in pixels while the user drags
    this.margin = { left: 56, right: 12, top: 10, bottom: 30 };
    this.listen();
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  setSeries(series) {
    this.series = series;
    this.canvas.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
    this.draw();
  }

  setLogY(on) {
    this.logY = on;
    this.draw();
  }

  // Zoom: drag across the plot, release to zoom to that x range; double-click shows everything.
  listen() {
    const x = (event) => event.clientX - this.canvas.getBoundingClientRect().left;
    this.canvas.addEventListener("pointerdown", (e) => { this.drag = [x(e), x(e)]; });
    this.canvas.addEventListener("pointermove", (e) => { if (this.drag) { this.drag[1] = x(e); this.draw(); } });
    this.canvas.addEventListener("pointerup", () => {
      const [a, b] = this.drag || [0, 0];
      this.drag = null;
      if (Math.abs(a - b) > 8) this.zoom = [this.fromPixelX(Math.min(a, b)), this.fromPixelX(Math.max(a, b))];
      this.draw();
    });
    this.canvas.addEventListener("dblclick", () => { this.zoom = null; this.draw(); });
  }

  // The data's range, over what is shown: the zoomed x range, positive values only on a log axis.
  ranges() {
    let [x0, x1] = this.zoom || [Infinity, -Infinity];
    let y0 = Infinity, y1 = -Infinity;
    for (const s of this.series)
      for (const [x, y] of s.points) {
        if (!this.zoom) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); }
        if (this.zoom && (x < x0 || x > x1)) continue;
        if (!Number.isFinite(y) || (this.logY && y <= 0)) continue;
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    if (!Number.isFinite(x0)) return null;
    if (x0 === x1) x1 = x0 + 1;
    if (!Number.isFinite(y0)) return null;
    if (this.logY) { y0 = Math.log10(y0); y1 = Math.log10(y1); }
    if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.05;
    return { x0, x1, y0: y0 - pad, y1: y1 + pad };
  }

  plotWidth() { return this.canvas.clientWidth - this.margin.left - this.margin.right; }
  plotHeight() { return this.canvas.clientHeight - this.margin.top - this.margin.bottom; }
  toPixelX(x) { return this.margin.left + ((x - this.r.x0) / (this.r.x1 - this.r.x0)) * this.plotWidth(); }
  fromPixelX(px) { return this.r.x0 + ((px - this.margin.left) / this.plotWidth()) * (this.r.x1 - this.r.x0); }
  toPixelY(y) {
    const v = this.logY ? Math.log10(y) : y;
    return this.margin.top + (1 - (v - this.r.y0) / (this.r.y1 - this.r.y0)) * this.plotHeight();
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    this.canvas.width = w * ratio;
    this.canvas.height = h * ratio;
    const g = this.canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    this.r = this.ranges();
    if (!this.r) {
      g.fillStyle = "#888";
      g.fillText("no data yet", w / 2 - 30, h / 2);
      return;
    }
    this.drawAxes(g);
    g.save();
    g.beginPath();
    g.rect(this.margin.left, this.margin.top, this.plotWidth(), this.plotHeight());
    g.clip();
    for (const s of this.series) this.drawSeries(g, s);
    g.restore();
    if (this.drag) {
      g.fillStyle = "rgba(80, 120, 200, 0.15)";
      g.fillRect(Math.min(...this.drag), this.margin.top, Math.abs(this.drag[1] - this.drag[0]), this.plotHeight());
    }
    this.drawLegend(g);
  }

  drawSeries(g, s) {
    g.strokeStyle = s.color;
    g.lineWidth = s.width || 1.5;
    g.beginPath();
    let started = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y) || (this.logY && y <= 0)) continue;
      const px = this.toPixelX(x), py = this.toPixelY(y);
      if (started) g.lineTo(px, py);
      else g.moveTo(px, py);
      started = true;
      if (s.dots) g.fillRect(px - 2, py - 2, 4, 4);
    }
    g.stroke();
  }

  drawAxes(g) {
    const { left, top } = this.margin;
    g.strokeStyle = "#ccc";
    g.fillStyle = "#555";
    g.font = "11px sans-serif";
    g.lineWidth = 1;
    for (const x of niceTicks(this.r.x0, this.r.x1, Math.max(2, this.plotWidth() / 80))) {
      const px = this.toPixelX(x);
      g.beginPath(); g.moveTo(px, top); g.lineTo(px, top + this.plotHeight()); g.stroke();
      g.fillText(formatNumber(x), px - 12, top + this.plotHeight() + 14);
    }
    const yTicks = this.logY ? logTicks(this.r.y0, this.r.y1) : niceTicks(this.r.y0, this.r.y1, Math.max(2, this.plotHeight() / 40));
    for (const y of yTicks) {
      const py = this.toPixelY(y);
      g.beginPath(); g.moveTo(left, py); g.lineTo(left + this.plotWidth(), py); g.stroke();
      g.fillText(formatNumber(y), 4, py + 4);
    }
    g.fillText(this.xLabel, left + this.plotWidth() - 30, top + this.plotHeight() + 26);
  }

  drawLegend(g) {
    let x = this.margin.left + 8;
    for (const s of this.series) {
      if (!s.name) continue;
      g.fillStyle = s.color;
      g.fillRect(x, this.margin.top + 6, 10, 3);
      g.fillStyle = "#333";
      g.fillText(s.name, x + 14, this.margin.top + 11);
      x += 24 + g.measureText(s.name).width;
    }
  }
}

// About `count` round numbers (1, 2 or 5 times a power of ten apart) between a and b.
function niceTicks(a, b, count) {
  const raw = (b - a) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(a / step) * step; t <= b; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

// Ticks of a log axis from 10^e0 to 10^e1: the powers of ten, or round numbers when it spans less than a decade or so.
function logTicks(e0, e1) {
  if (e1 - e0 < 1.5) return niceTicks(10 ** e0, 10 ** e1, 5).filter((t) => t > 0);
  const ticks = [];
  for (let e = Math.ceil(e0); e <= e1; e++) ticks.push(10 ** e);
  return ticks;
}

function formatNumber(v) {
  if (v === 0) return "0";
  const magnitude = Math.abs(v);
  if (magnitude >= 1e5 || magnitude < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(3)));
}

// TensorBoard's smoothing: an exponential moving average, debiased at the start.
function smooth(points, weight) {
  if (weight <= 0) return points;
  let last = 0, count = 0;
  return points.map(([x, y]) => {
    last = last * weight + (1 - weight) * y;
    count++;
    return [x, last / (1 - weight ** count)];
  });
}

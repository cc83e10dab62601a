/* Figures that answer a slider (scpo.companion.sliders): each <figure class="scpo-slider"> carries its
 * precomputed values as JSON; this draws their curves and a slider over the positions, and
 * shows, at each position, the values computed in Python for it. Nothing is computed here.
 * One script for every figure of the book (Jupyter Book loads it on every page). Hidden when
 * printed: the chapter's static figure and table hold the same numbers.
 */
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"];
  const W = 640, H = 300, L = 56, R = 16, T = 16, B = 40;

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function html(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* A few round numbers between lo and hi, for the axis. */
  function ticks(lo, hi, n) {
    const span = hi - lo || 1;
    const step0 = span / n;
    const mag = 10 ** Math.floor(Math.log10(step0));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) {
      out.push(Math.round(v / step) * step);
    }
    return out;
  }

  function draw(fig) {
    const data = JSON.parse(fig.querySelector('script[type="application/json"]').textContent);
    const xs = data.x;
    const all = data.series.flatMap((s) => s.values).filter((v) => v !== null);
    let lo = Math.min(...all), hi = Math.max(...all);
    const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.08 || 1;
    lo -= pad; hi += pad;
    const px = (x) => L + ((x - xs[0]) / ((xs[xs.length - 1] - xs[0]) || 1)) * (W - L - R);
    const py = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
    const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": data.title, class: "scpo-slider-plot" });
    for (const t of ticks(lo, hi, 5)) {
      plot.append(svg("line", { x1: L, x2: W - R, y1: py(t), y2: py(t), class: "grid" }));
      const label = svg("text", { x: L - 6, y: py(t) + 4, "text-anchor": "end" });
      label.textContent = String(+t.toFixed(6));
      plot.append(label);
    }
    for (const x of xs) {
      const label = svg("text", { x: px(x), y: H - B + 16, "text-anchor": "middle" });
      label.textContent = String(x);
      plot.append(label);
    }
    const xl = svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" });
    xl.textContent = data.x_label;
    const yl = svg("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle",
      transform: `rotate(-90 14 ${(T + H - B) / 2})` });
    yl.textContent = data.y_label;
    plot.append(xl, yl);
    data.series.forEach((s, k) => {
      let path = "";
      s.values.forEach((v, i) => {
        if (v === null) return;
        path += `${path && s.values[i - 1] !== null ? "L" : "M"}${px(xs[i])},${py(v)}`;
      });
      plot.append(svg("path", { d: path, fill: "none", stroke: COLOURS[k % COLOURS.length],
        "stroke-width": 2 }));
    });
    const cursor = svg("line", { y1: T, y2: H - B, class: "cursor" });
    plot.append(cursor);
    const dots = data.series.map((s, k) => {
      const c = svg("circle", { r: 5, fill: COLOURS[k % COLOURS.length] });
      plot.append(c);
      return c;
    });
    const slider = html("input", { type: "range", min: "0", max: String(xs.length - 1),
      step: "1", value: String(data.start), "aria-label": data.x_label });
    const at = html("output", { class: "scpo-slider-x" });
    const readout = html("div", { class: "scpo-slider-values", "aria-live": "polite" });
    const shown = data.series.map((s, k) => {
      const span = html("span", { "data-series": String(k) });
      span.style.borderColor = COLOURS[k % COLOURS.length];
      readout.append(span);
      return span;
    });
    function show(i) {
      const x = xs[i];
      at.dataset.x = String(x);
      at.textContent = `${data.x_label} = ${x}`;
      slider.setAttribute("aria-valuetext", `${data.x_label} = ${x}`);
      cursor.setAttribute("x1", px(x));
      cursor.setAttribute("x2", px(x));
      data.series.forEach((s, k) => {
        const v = s.values[i];
        shown[k].dataset.value = String(v);
        const text = v === null ? "\u2013" : v.toFixed(data.digits) + data.unit;
        shown[k].textContent = `${s.label}: ${text}`;
        dots[k].setAttribute("visibility", v === null ? "hidden" : "visible");
        if (v !== null) {
          dots[k].setAttribute("cx", px(x));
          dots[k].setAttribute("cy", py(v));
        }
      });
    }
    slider.addEventListener("input", () => show(Number(slider.value)));
    const caption = html("figcaption", {}, data.title);
    const controls = html("div", { class: "scpo-slider-controls" });
    controls.append(slider, at);
    fig.append(caption, plot, controls, readout);
    show(data.start);
    fig.hidden = false;
    fig.dataset.ready = "1";
  }

  function start() {
    document.querySelectorAll("figure.scpo-slider").forEach((fig) => {
      try {
        draw(fig);
      } catch (err) {
        console.error("scpo-slider:", err);
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}());

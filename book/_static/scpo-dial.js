/* The page "Turn the dial yourself": a reader's prompt and answers, scored in the browser by
 * the book's reward models, with the steering dial r_a = r_glo + a (r_country - r_glo).
 *
 * scpo.companion.browser wrote the files this loads into _static/dial/ (manifest.json lists them): the
 * encoder as ONNX, its tokenizer.json, the heads (heads.json + heads.bin) and the pinned
 * runtime (onnxruntime-web's WebAssembly build, @huggingface/tokenizers; scpo.companion.jsruntime).
 * It computes what scpo computes: the text pair [CLS] prompt [SEP] answer [SEP], cut at the
 * encoder's max_length as the Python tokenizer cuts it (longest first), the pooled and
 * normalised embedding (inside the ONNX graph), then each head in float64. Every page of the
 * book loads this file; it does nothing where there is no #scpo-dial.
 * book/interactive.py drives it in headless Chromium and compares with scpo's own rewards.
 */
(function () {
  "use strict";
  const script = document.currentScript;

  // ------------------------------------------------------------------ arithmetic
  /* erfc by its Chebyshev fit (fractional error below 1.2e-7), for the MLP head's GELU. */
  function erf(x) {
    const z = Math.abs(x);
    const t = 1 / (1 + z / 2);
    const c = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 +
      t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 +
      t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
    return x >= 0 ? 1 - c : c - 1;
  }
  const ACTIVATIONS = { gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)) };

  /* scpo.companion.steer.steered_reward: from the nearer end, so a = 0 and 1 are the two models exactly. */
  function steered(g, c, a) {
    const d = c - g;
    return a < 0.5 ? g + a * d : c - (1 - a) * d;
  }

  function arrays(spec, bin) {
    if (Array.isArray(spec)) return spec.map((s) => arrays(s, bin));
    if (spec && typeof spec === "object") {
      if ("offset" in spec && "shape" in spec && Object.keys(spec).length === 2) {
        const n = spec.shape.reduce((a, b) => a * b, 1);
        return { data: new Float32Array(bin, spec.offset, n), shape: spec.shape };
      }
      const out = {};
      for (const [k, v] of Object.entries(spec)) out[k] = arrays(v, bin);
      return out;
    }
    return spec;
  }

  /* A head (scpo.models.embedding.Head.arrays): z = (e - mean) / std, then its layers. */
  function headOf(h, emb) {
    const d = emb.length;
    const z = new Float64Array(d);
    for (let i = 0; i < d; i++) z[i] = (emb[i] - h.mean.data[i]) / h.std.data[i];
    let x = z;
    for (const layer of h.layers) {
      const [rows, cols] = layer.weight.shape;
      const w = layer.weight.data;
      const y = new Float64Array(rows);
      for (let i = 0; i < rows; i++) {
        let s = layer.bias ? layer.bias.data[i] : 0;
        for (let j = 0; j < cols; j++) s += w[i * cols + j] * x[j];
        y[i] = layer.activation ? ACTIVATIONS[layer.activation](s) : s;
      }
      x = y;
    }
    return { r: x[0], z };
  }

  function reward(model, emb, country) {
    if (!model.delta) return headOf(model, emb).r;
    const { r, z } = headOf(model.shared, emb);
    const i = model.countries.indexOf(country);
    const [, d] = model.delta.shape;
    let s = r;
    for (let j = 0; j < d; j++) s += model.delta.data[i * d + j] * z[j];
    return s;
  }

  /* The Python tokenizer's pair truncation ("longest_first") on token counts: what is left of
   * each side when both together may hold `budget` tokens. */
  function truncatePair(n1, n2, budget) {
    if (n1 + n2 <= budget) return [n1, n2];
    let [short, long] = n1 <= n2 ? [n1, n2] : [n2, n1];
    long = short > budget ? short : Math.max(short, budget - short);
    if (short + long > budget) {
      short = Math.floor(budget / 2);
      long = short + (budget % 2);
    }
    return n1 <= n2 ? [short, long] : [long, short];
  }

  // ------------------------------------------------------------------ page helpers
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "dataset") Object.assign(e.dataset, v);
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }
  const mb = (bytes) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  const letter = (i) => String.fromCharCode(65 + i);
  const fmt = (x) => (Object.is(x, -0) ? 0 : x).toFixed(3);

  function argmax(xs) {
    let best = 0;
    xs.forEach((x, i) => { if (x > xs[best]) best = i; });
    return best;
  }

  // ------------------------------------------------------------------ the dial
  class Dial {
    constructor(root, base) {
      this.root = root;
      this.base = base;
      this.sessions = {};
      this.cache = new Map(); // encoder|prompt|answer -> {emb, ids, typeIds}
      this.rounds = 0;
      this.t0 = performance.now();
    }

    url(name) { return new URL(name, this.base).href; }

    async json(name) {
      const r = await fetch(this.url(name));
      if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
      return r.json();
    }

    status(text) { this.statusLine.textContent = text; }

    async init() {
      this.root.dataset.state = "loading";
      this.manifest = await this.json("manifest.json");
      const m = this.manifest;
      const [index, tokJson, tokConfig, examples] = await Promise.all([
        this.json(m.heads), this.json(m.tokenizer.json), this.json(m.tokenizer.config),
        this.json(m.examples)]);
      const blob = await fetch(this.url(index.bin));
      if (!blob.ok) throw new Error(`${index.bin}: HTTP ${blob.status}`);
      this.models = arrays(index.models, await blob.arrayBuffer());
      this.examples = examples;
      const [{ Tokenizer }, ort] = await Promise.all([
        import(this.url(m.runtime.tokenizers)), import(this.url(m.runtime.ort))]);
      this.tokenizer = new Tokenizer(tokJson, tokConfig);
      this.cls = this.tokenizer.token_to_id(tokConfig.cls_token || "[CLS]");
      this.sep = this.tokenizer.token_to_id(tokConfig.sep_token || "[SEP]");
      this.ort = ort;
      ort.env.wasm.numThreads = 1; // no cross-origin isolation needed
      // the bundle carries its loader; only the .wasm is fetched, from beside it
      ort.env.wasm.wasmPaths = { wasm: this.url(m.runtime.wasm) };
      ort.env.logLevel = "error";
      this.build();
      this.encoder = m.default_encoder;
      this.fill(0);
      await this.score();
    }

    build() {
      const m = this.manifest;
      this.root.replaceChildren();
      const example = el("select", { id: "dial-example" });
      this.examples.forEach((e, i) => example.append(el("option", {
        value: String(i), text: `Example ${i + 1}: ${e.prompt.slice(0, 70)}` })));
      example.append(el("option", { value: "own", text: "Your own text" }));
      example.addEventListener("change", () => {
        if (example.value !== "own") { this.fill(Number(example.value)); this.score(); }
      });
      const encoder = el("select", { id: "dial-encoder" });
      for (const [name, e] of Object.entries(m.encoders)) {
        encoder.append(el("option", { value: name,
          text: `${name}: ${e.label} (download ${mb(m.download_bytes[name])})` }));
      }
      encoder.value = m.default_encoder;
      encoder.addEventListener("change", () => { this.encoder = encoder.value; this.score(); });
      this.prompt = el("textarea", { id: "dial-prompt", rows: "2", "aria-label": "Prompt" });
      this.answerBox = el("div", { id: "dial-answers" });
      const add = el("button", { type: "button", id: "dial-add", text: "Add an answer" });
      add.addEventListener("click", () => this.addAnswer(""));
      const score = el("button", { type: "button", id: "dial-score", class: "scpo-dial-go",
        text: "Score" });
      score.addEventListener("click", () => this.score());
      this.alpha = el("input", { id: "dial-alpha", type: "range", min: "0", max: "2",
        step: "0.05", value: "1", "aria-label": "alpha" });
      this.alphaShown = el("output", { id: "dial-alpha-value", for: "dial-alpha", text: "1.00" });
      this.alpha.addEventListener("input", () => this.show());
      this.statusLine = el("p", { id: "dial-status", role: "status" });
      this.results = el("div", { id: "dial-results" });
      this.tokens = el("div", { id: "dial-tokens" });
      const edited = () => { example.value = "own"; };
      this.root.addEventListener("input", (ev) => {
        if (ev.target.tagName === "TEXTAREA") edited();
      });
      this.root.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) this.score();
      });
      this.root.append(
        el("div", { class: "scpo-dial-row" },
          el("label", {}, "Start from ", example), el("label", {}, "Encoder ", encoder)),
        el("label", { for: "dial-prompt", text: "Prompt" }), this.prompt,
        this.answerBox,
        el("div", { class: "scpo-dial-row" }, add, score,
          el("span", { class: "scpo-dial-hint", text: "(or Ctrl+Enter)" })),
        el("div", { class: "scpo-dial-row scpo-dial-slider" },
          el("label", { for: "dial-alpha" }, "Dial \u03b1 "), this.alpha, this.alphaShown,
          el("span", { class: "scpo-dial-hint",
            text: "0: the global RM \u00b7 1: the country's model \u00b7 2: twice as far" })),
        this.statusLine, this.results,
        el("details", {}, el("summary", { text: "Tokens (what the encoder reads)" }),
          this.tokens));
    }

    addAnswer(text) {
      const i = this.answerBox.children.length;
      if (i >= 6) return;
      const area = el("textarea", { class: "dial-answer", rows: "2",
        "aria-label": `Answer ${letter(i)}` });
      area.value = text;
      const remove = el("button", { type: "button", class: "dial-remove",
        text: "remove", title: "Remove this answer" });
      remove.addEventListener("click", () => {
        if (this.answerBox.children.length > 2) { row.remove(); this.relabel(); }
      });
      const row = el("div", { class: "scpo-dial-answer" },
        el("span", { class: "dial-letter", text: letter(i) }), area, remove);
      this.answerBox.append(row);
    }

    relabel() {
      [...this.answerBox.children].forEach((row, i) => {
        row.querySelector(".dial-letter").textContent = letter(i);
      });
    }

    setAnswers(texts) {
      this.answerBox.replaceChildren();
      for (const t of texts) this.addAnswer(t);
    }

    fill(i) {
      const e = this.examples[i];
      if (!e) { this.setAnswers(["", ""]); return; }
      this.prompt.value = e.prompt;
      this.setAnswers(e.answers);
    }

    texts() {
      return { prompt: this.prompt.value,
        answers: [...this.answerBox.querySelectorAll("textarea")].map((a) => a.value) };
    }

    encode(prompt, answer) {
      const a = this.tokenizer.encode(prompt, { add_special_tokens: false }).ids;
      const b = this.tokenizer.encode(answer, { add_special_tokens: false }).ids;
      const [n1, n2] = truncatePair(a.length, b.length, this.manifest.max_length - 3);
      const ids = [this.cls, ...a.slice(0, n1), this.sep, ...b.slice(0, n2), this.sep];
      const typeIds = ids.map((_, i) => (i < n1 + 2 ? 0 : 1));
      return { ids, typeIds, cut: n1 < a.length || n2 < b.length };
    }

    async session(name) {
      if (!this.sessions[name]) {
        this.sessions[name] = (async () => {
          const file = this.manifest.encoders[name];
          const r = await fetch(this.url(file.file));
          if (!r.ok) throw new Error(`${file.file}: HTTP ${r.status}`);
          const reader = r.body.getReader();
          const parts = [];
          let got = 0;
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            parts.push(value);
            got += value.length;
            this.status(`Downloading the ${name} encoder: ${mb(got)} of ${mb(file.bytes)} ...`);
          }
          const bytes = new Uint8Array(got);
          let at = 0;
          for (const p of parts) { bytes.set(p, at); at += p.length; }
          this.status(`Preparing the ${name} encoder ...`);
          return this.ort.InferenceSession.create(bytes, {
            executionProviders: ["wasm"], graphOptimizationLevel: "all" });
        })();
        this.sessions[name].catch(() => { delete this.sessions[name]; });
      }
      return this.sessions[name];
    }

    async embed(name, prompt, answer) {
      const key = `${name}\u0000${prompt}\u0000${answer}`;
      if (!this.cache.has(key)) {
        const session = await this.session(name);
        const t = this.encode(prompt, answer);
        const shape = [1, t.ids.length];
        const tensor = (xs) => new this.ort.Tensor("int64", BigInt64Array.from(xs, BigInt), shape);
        const out = await session.run({
          input_ids: tensor(t.ids), attention_mask: tensor(t.ids.map(() => 1)),
          token_type_ids: tensor(t.typeIds) });
        this.cache.set(key, { ...t, emb: Float32Array.from(out.embedding.data) });
      }
      return this.cache.get(key);
    }

    async score() {
      const job = (this.job || Promise.resolve()).then(() => this.scoreNow());
      this.job = job.catch(() => {});
      return job;
    }

    async scoreNow() {
      const { prompt, answers } = this.texts();
      if (!prompt.trim() || answers.length < 2 || answers.some((a) => !a.trim())) {
        this.status("Write a prompt and at least two answers, then press Score.");
        return;
      }
      this.root.dataset.state = "scoring";
      const t = performance.now();
      try {
        const done = [];
        for (const a of answers) done.push(await this.embed(this.encoder, prompt, a));
        this.scored = { prompt, answers, encoded: done, encoder: this.encoder };
        this.rounds += 1;
        this.show();
        const took = performance.now() - t;
        if (!this.root.dataset.firstScoreMs) {
          this.root.dataset.firstScoreMs = String(Math.round(performance.now()));
        }
        this.status(`Scored ${answers.length} answers with the ${this.encoder} encoder in ` +
          `${took.toFixed(0)} ms, in this browser.`);
        this.root.dataset.round = String(this.rounds);
        this.root.dataset.state = "scored";
      } catch (err) {
        this.root.dataset.state = "failed";
        this.status(`Could not score: ${err.message || err}`);
        console.error("scpo-dial:", err);
      }
    }

    /* The example whose texts are on the page unchanged, if any (its truth is then shown). */
    example() {
      const s = this.scored;
      return this.examples.find((e) => e.prompt === s.prompt &&
        e.answers.length === s.answers.length && e.answers.every((a, i) => a === s.answers[i]));
    }

    show() {
      const a = Number(this.alpha.value);
      this.alphaShown.textContent = a.toFixed(2);
      this.alpha.setAttribute("aria-valuetext", a.toFixed(2));
      if (!this.scored) return;
      const m = this.manifest;
      const embs = this.scored.encoded.map((x) => x.emb);
      const n = embs.length;
      const table = el("table", { class: "scpo-dial-table" });
      const head = el("tr", {}, el("th", { text: "Country" }), el("th", { text: "Model" }));
      for (let i = 0; i < n; i++) head.append(el("th", { text: letter(i) }));
      head.append(el("th", { text: "Prefers" }));
      table.append(el("thead", {}, head));
      const body = el("tbody");
      const row = (country, label, key, values, cls, marks) => {
        const best = argmax(values);
        const tr = el("tr", { class: cls || "" }, el("td", { text: country }),
          el("td", { text: label }));
        values.forEach((v, i) => {
          const td = el("td", { dataset: { model: key, answer: String(i), value: String(v) },
            text: marks ? marks[i] : fmt(v) });
          if (i === best) td.classList.add("scpo-dial-best");
          tr.append(td);
        });
        tr.append(el("td", { dataset: { prefers: key }, text: letter(best) }));
        body.append(tr);
        return best;
      };
      const glo = embs.map((e) => reward(this.models.global, e));
      const gloBest = row("all", "Global RM", "global", glo, "scpo-dial-global");
      const truth = this.example();
      let flips = 0;
      for (const c of m.countries) {
        const mine = embs.map((e) => reward(this.models[`country:${c}`], e));
        row(c, `${m.variant_label}, ${c}`, `country:${c}`, mine, "scpo-dial-first");
        const dial = glo.map((g, i) => steered(g, mine[i], a));
        const best = argmax(dial);
        if (best !== gloBest) flips += 1;
        row(c, `dial at \u03b1 = ${a.toFixed(2)}`, `steered:${c}`, dial,
          best !== gloBest ? "scpo-dial-flip" : "");
        if (this.models.conditioned && this.models.conditioned.countries.includes(c)) {
          row(c, "one conditioned model", `conditioned:${c}`,
            embs.map((e) => reward(this.models.conditioned, e, c)));
        }
        const t = truth && truth.truth[c];
        if (t) {
          row(c, truth.truth_kind === "utility" ? "truth (the simulator's utility)" :
            "the raters' choice", `truth:${c}`, t, "scpo-dial-truth",
          truth.truth_kind === "utility" ? null : t.map((v) => (v > 0 ? "preferred" : "")));
        }
      }
      table.append(body);
      const said = el("p", { id: "dial-summary", dataset: { flips: String(flips) }, text:
        `At \u03b1 = ${a.toFixed(2)} the dial prefers another answer than the global RM for ` +
        `${flips} of ${m.countries.length} countries.` });
      this.results.replaceChildren(said, table);
      this.tokens.replaceChildren(...this.scored.encoded.map((t, i) => el("p", {
        class: "dial-token-list",
        dataset: { answer: String(i), ids: t.ids.join(","), typeIds: t.typeIds.join(",") },
        text: `${letter(i)} (${t.ids.length} tokens${t.cut ? `, cut at ${m.max_length}` : ""}): ` +
          t.ids.map((id) => this.tokenizer.id_to_token(id)).join(" ") })));
    }
  }

  function start() {
    const root = document.getElementById("scpo-dial");
    if (!root || !script) return;
    const base = new URL(root.dataset.bundle || "dial/", script.src);
    if (location.protocol === "file:") {
      root.dataset.state = "needs-http";
      root.replaceChildren(el("p", { class: "scpo-dial-fallback", text:
        "This page scores in your browser from files it downloads, which a browser allows " +
        "only over http. From the repository, run `python -m http.server --directory " +
        "book/_build/html 8000` and open http://localhost:8000/try.html" }));
      return;
    }
    new Dial(root, base).init().catch((err) => {
      root.dataset.state = "failed";
      root.append(el("p", { class: "scpo-dial-fallback",
        text: `The scorer could not start: ${err.message || err}` }));
      console.error("scpo-dial:", err);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}());

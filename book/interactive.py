"""The book's interactive parts, used as a reader uses them, in headless Chromium with the network
blocked (``book/check.py`` runs this after its page checks).

The page "Turn the dial yourself" (``try.html``) is served over http from 127.0.0.1 (a browser
runs WebAssembly and modules only over http) and must load from the book's own files alone.
The test texts that ``scpo.companion.browser`` recorded with scpo's rewards and token ids
(``_static/dial/reference.json``) are typed into it and scored, and the rewards and token ids
it shows must be scpo's: within ``TOLERANCE`` with the fp32 encoder, and with the same
preferred answer on every pair (and within ``TOLERANCE_FP16``) with the fp16 one. The dial's
slider, moved with the keyboard, must show r_glo + alpha (r_country - r_glo). Each starting
example, chosen from the page's list, must show the answer each model prefers as scpo's rewards
prefer it (exercise 9 of the exercises page asks where Chile's model and the global RM disagree).

Every figure with a slider (``scpo.companion.sliders``, on the steering and behaviour
chapters) must show, at each position of its slider, the values precomputed for it.

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``), so
nothing beyond Python's standard library and Debian's chromium is needed.

    .venv/bin/python book/interactive.py [--html book/_build/html]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRY_PAGE = "try.html"
TOLERANCE = 1e-3  # |browser - scpo| of a reward, fp32 encoder
TOLERANCE_FP16 = 2e-2  # the same with the weights stored at half precision
EXERCISE_COUNTRY = "Chile"  # exercise 9 of book/teaching.md
SLIDER = "scpo-slider"  # the class of a figure with a slider (scpo.companion.sliders)


class Browser:
    """Headless Chromium, one tab, spoken to in the DevTools protocol over a pipe."""

    def __init__(self, chromium: str, timeout: float = 120.0):
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, dict[str, Any]] = {}
        self._lock = threading.Condition()
        self._id = 0
        self._profile = tempfile.mkdtemp(prefix="scpo-chromium-")
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def fds() -> None:  # the protocol's pipe: the browser reads fd 3, writes fd 4
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
             "--window-size=1280,1600", "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        threading.Thread(target=self._listen, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _listen(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._lock:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._lock.notify_all()

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        with self._lock:
            self._id += 1
            n = self._id
        msg: dict[str, Any] = {"id": n, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        with self._lock:
            if not self._lock.wait_for(lambda: n in self._replies, self.timeout):
                raise TimeoutError(f"Chromium did not answer {method} in {self.timeout} s")
            reply = self._replies.pop(n)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        out = self.call("Runtime.evaluate", session=True, expression=expression,
                        awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression[:80]}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait(self, expression: str, timeout: float | None = None) -> Any:
        """Poll until the expression is truthy; its value."""
        end = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"waited {timeout or self.timeout} s for {expression}")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the field, select what it holds, and type ``text`` over it, as keystrokes
        insert text (the page sees the same input events)."""
        self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                "e.focus(); e.select(); })()")
        if text:
            self.call("Input.insertText", session=True, text=text)
        else:
            for kind in ("keyDown", "keyUp"):
                self.call("Input.dispatchKeyEvent", session=True, type=kind, key="Delete",
                          code="Delete", windowsVirtualKeyCode=46)

    def press(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", session=True, type=kind, key=key, code=key,
                      windowsVirtualKeyCode=code)

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait("document.readyState === 'complete'")

    def problems(self, allowed_prefix: str) -> list[str]:
        """Uncaught JavaScript errors, errors our scripts report (console.error "scpo-..."; the
        theme's own console notes are not ours), resources that failed to load, and requests
        to anything but ``allowed_prefix`` (or data:)."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                what = d.get("exception", {}).get("description", d.get("text"))
                out.append(f"uncaught: {what}"[:300])
            elif (e.get("method") == "Runtime.consoleAPICalled" and p.get("type") == "error"
                  and str(p.get("args", [{}])[0].get("value", "")).startswith("scpo-")):
                out.append("console error: " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", []))[:300])
            elif (e.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error"
                  and not p["entry"].get("url", "").endswith("/favicon.ico")):  # the browser's
                out.append(f"browser error: {p['entry'].get('text', '')}"[:300])
            elif e.get("method") == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not url.startswith((allowed_prefix, "data:", "blob:", "about:")):
                    out.append(f"fetched {url} from outside the book")
        return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)


class Server:
    """The built book over http on 127.0.0.1 (a free port), counting the bytes it sends."""

    def __init__(self, html: Path):
        self.sent: dict[str, int] = {}
        sent = self.sent

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def copyfile(self, source: Any, outputfile: Any) -> None:
                data = source.read()
                sent[self.path] = sent.get(self.path, 0) + len(data)
                outputfile.write(data)

        handler = functools.partial(Handler, directory=str(html))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------- the dial page
def read_table(b: Browser) -> dict[str, list[float]]:
    """The rewards the page shows: model key -> one per answer (the full value it shows)."""
    cells = b.js("[...document.querySelectorAll('#dial-results td[data-model]')].map("
                 "e => [e.dataset.model, +e.dataset.answer, +e.dataset.value])")
    found: dict[str, dict[int, float]] = {}
    for key, i, v in cells:
        found.setdefault(key, {})[int(i)] = v
    return {k: [v[i] for i in sorted(v)] for k, v in found.items()}


def score_round(b: Browser, prompt: str, answers: list[str]) -> tuple[dict[str, list[float]],
                                                                     list[dict[str, Any]]]:
    """Type the prompt and answers into the page, press Score, read rewards and token ids."""
    n = b.js("document.querySelectorAll('#dial-answers textarea').length")
    while n < len(answers):
        b.js("document.getElementById('dial-add').click()")
        n += 1
    while n > len(answers):
        b.js("[...document.querySelectorAll('#dial-answers .dial-remove')].pop().click()")
        n -= 1
    b.type_into("#dial-prompt", prompt)
    for i, a in enumerate(answers):
        b.type_into(f"#dial-answers .scpo-dial-answer:nth-child({i + 1}) textarea", a)
    before = int(b.js("document.getElementById('scpo-dial').dataset.round || 0"))
    b.js("document.getElementById('dial-score').click()")
    b.wait(f"(d => d.dataset.state === 'failed' || +d.dataset.round > {before})("
           "document.getElementById('scpo-dial'))")
    state = b.js("document.getElementById('scpo-dial').dataset.state")
    if state != "scored":
        raise RuntimeError("the page failed: " + str(b.js(
            "document.getElementById('dial-status').textContent")))
    tokens = b.js("[...document.querySelectorAll('#dial-tokens [data-ids]')].map(e => ({"
                  "ids: e.dataset.ids.split(',').map(Number), "
                  "type_ids: e.dataset.typeIds.split(',').map(Number)}))")
    return read_table(b), tokens


def compare(name: str, refs: list[dict[str, Any]], b: Browser, tol: float,
            check_ids: bool) -> tuple[list[str], dict[str, Any]]:
    """Type each reference round; problems, and the largest difference and preference count."""
    problems, worst, same, pairs, texts = [], 0.0, 0, 0, 0
    for k, ref in enumerate(refs):
        shown, tokens = score_round(b, ref["prompt"], ref["answers"])
        texts += len(ref["answers"])
        if len(tokens) != len(ref["answers"]):
            problems.append(f"{TRY_PAGE}: {name} #{k}: the page shows {len(tokens)} answers' "
                            f"tokens, not {len(ref['answers'])}")
        elif check_ids:
            for i, t in enumerate(tokens):
                if t["ids"] != ref["ids"][i] or t["type_ids"] != ref["type_ids"][i]:
                    problems.append(f"{TRY_PAGE}: {name} #{k} answer {i}: the page's token ids "
                                    f"differ from the Python tokenizer's ({len(t['ids'])} vs "
                                    f"{len(ref['ids'][i])} tokens)")
        for key, want in ref["rewards"].items():
            got = shown.get(key)
            if got is None or len(got) != len(want):
                problems.append(f"{TRY_PAGE}: {name} #{k}: the page shows no rewards of {key}")
                continue
            diff = max(abs(g - w) for g, w in zip(got, want))
            worst = max(worst, diff)
            if not diff <= tol:
                problems.append(f"{TRY_PAGE}: {name} #{k}: {key}'s rewards {got} differ from "
                                f"scpo's {want} by {diff:.2e} (> {tol:g})")
            if len(want) == 2:
                pairs += 1
                same += (got[0] > got[1]) == (want[0] > want[1])
    return problems, {"max_abs_diff": worst, "same_preference": same, "pairs": pairs,
                      "texts": texts}


def check_slider_of_dial(b: Browser) -> list[str]:
    """Move the dial with the keyboard; each country's steered rewards must follow."""
    problems = []
    b.js("document.getElementById('dial-alpha').focus()")
    b.press("Home", 36)
    for steps in range(0, 41, 8):
        alpha = round(steps * 0.05, 2)
        shown = float(b.js("document.getElementById('dial-alpha-value').textContent"))
        table = read_table(b)
        if abs(shown - alpha) > 1e-9:
            problems.append(f"{TRY_PAGE}: the dial shows α = {shown} after {steps} steps, not "
                            f"{alpha}")
        for key, values in table.items():
            if not key.startswith("steered:"):
                continue
            c = key.split(":", 1)[1]
            g, r = table["global"], table[f"country:{c}"]
            want = [gi + alpha * (ri - gi) for gi, ri in zip(g, r)]
            if max(abs(x - y) for x, y in zip(values, want)) > 1e-9:
                problems.append(f"{TRY_PAGE}: at α = {alpha} the dial shows {values} for {c}, "
                                f"not r_glo + α (r_c - r_glo) = {want}")
        for _ in range(8):
            b.press("ArrowRight", 39)
    return problems


def check_examples(b: Browser, examples: list[dict[str, Any]], country: str,
                   log=print) -> list[str]:
    """Each starting example, chosen from the page's list: the answer each model is shown to
    prefer must be the one scpo's rewards prefer (exercise 9 of the exercises page asks where
    ``country``'s model and the global RM disagree)."""
    problems, disagree = [], []
    for i, ref in enumerate(examples):
        before = int(b.js("document.getElementById('scpo-dial').dataset.round || 0"))
        b.js(f"(s => {{ s.value = '{i}'; s.dispatchEvent(new Event('change')); }})("
             "document.getElementById('dial-example'))")
        b.wait(f"(d => d.dataset.state === 'failed' || +d.dataset.round > {before})("
               "document.getElementById('scpo-dial'))")
        shown = b.js("Object.fromEntries([...document.querySelectorAll('#dial-results "
                     "td[data-prefers]')].map(e => [e.dataset.prefers, e.textContent]))")
        for key, rewards in ref["rewards"].items():
            want = chr(65 + int(max(range(len(rewards)), key=lambda k: (rewards[k], -k))))
            if shown.get(key) != want:
                problems.append(f"{TRY_PAGE}: example {i + 1}: the page shows {key} preferring "
                                f"{shown.get(key)}, scpo's rewards prefer {want}")
        if f"country:{country}" in ref["rewards"] and shown.get(f"country:{country}") != \
                shown.get("global"):
            disagree.append(i + 1)
    log(f"{TRY_PAGE}: starting examples: each model's preferred answer as scpo's; {country}'s "
        f"model and the global RM disagree on example(s) {disagree or 'none'}")
    return problems


def check_dial(html: Path, chromium: str, log=print) -> list[str]:
    """The page "Turn the dial yourself", as a reader uses it; its measurements are logged."""
    page = html / TRY_PAGE
    if not page.is_file():
        return []
    bundle = html / "_static" / "dial"
    if not (bundle / "manifest.json").is_file():
        return [f"{TRY_PAGE}: no _static/dial/manifest.json: the build wrote no model files for "
                "the page"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    reference = json.loads((bundle / "reference.json").read_text())
    server, b = Server(html), Browser(chromium)
    problems: list[str] = []
    try:
        t0 = time.monotonic()
        b.open(server.url + TRY_PAGE)
        b.wait("(d => d && ['scored', 'failed'].includes(d.dataset.state))("
               "document.getElementById('scpo-dial'))")
        waited = time.monotonic() - t0
        # the page's own clock: from the start of its navigation to its first rewards shown
        first = float(b.js("document.getElementById('scpo-dial').dataset.firstScoreMs")) / 1000
        if b.js("document.getElementById('scpo-dial').dataset.state") != "scored":
            return [f"{TRY_PAGE}: the page did not score its first example: " + str(b.js(
                "document.getElementById('scpo-dial').textContent"))[:300]]
        download = sum(server.sent.values())
        measured = {}
        for encoder in ("fp32", "fp16"):
            b.js(f"(s => {{ s.value = '{encoder}'; s.dispatchEvent(new Event('change')); }})("
                 "document.getElementById('dial-encoder'))")
            tol = TOLERANCE if encoder == "fp32" else TOLERANCE_FP16
            found, measured[encoder] = compare(encoder, reference["rounds"], b, tol, True)
            problems += found
            m = measured[encoder]
            if m["same_preference"] < m["pairs"]:
                problems.append(f"{TRY_PAGE}: with the {encoder} encoder the preferred answer "
                                f"differs from scpo's on {m['pairs'] - m['same_preference']} "
                                "(model, pair)s")
        problems += compare("probe", reference["probes"], b, TOLERANCE_FP16, True)[0]
        problems += check_examples(b, reference.get("examples", []), EXERCISE_COUNTRY, log)
        problems += check_slider_of_dial(b)
        problems += [f"{TRY_PAGE}: {p}" for p in b.problems(server.url)]
        log(f"{TRY_PAGE}: first score {first:.1f} s after opening the page ({waited:.1f} s "
            "as this check waited; headless Chromium, "
            f"{manifest['default_encoder']} encoder, served from 127.0.0.1); downloaded "
            f"{download / 2**20:.1f} MiB")
        for encoder, m in measured.items():
            log(f"{TRY_PAGE}: {encoder} encoder on {m['texts']} test texts: max |browser - scpo| "
                f"= {m['max_abs_diff']:.2e}, same preferred answer on {m['same_preference']}/"
                f"{m['pairs']} (model, pair)s")
        log(f"{TRY_PAGE}: tokenizer probes (accents, CJK, emoji, pairs cut at "
            f"{reference['max_length']}): token ids as in Python")
    finally:
        b.close()
        server.close()
    return problems


# ---------------------------------------------------------------------------- slider figures
def fixed(x: float, digits: int) -> str:
    """JavaScript's ``x.toFixed(digits)``: the exact binary value, halves away from zero."""
    from decimal import ROUND_HALF_UP, Decimal

    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def check_sliders(html: Path, chromium: str, log=print) -> list[str]:
    """Every figure with a slider: each position shows the values precomputed for it."""
    pages = [p for p in sorted(html.rglob("*.html"))
             if f'<figure class="{SLIDER}"' in p.read_text(errors="replace")
             and not p.relative_to(html).parts[0].startswith("_")]
    if not pages:
        return []
    server, b = Server(html), Browser(chromium)
    problems, n = [], 0
    try:
        for page in pages:
            name = str(page.relative_to(html))
            b.open(server.url + name)
            figures = b.wait(f"(f => f.length && f.every(x => x.dataset.ready) && f.length)("
                             f"[...document.querySelectorAll('.{SLIDER}')])", 20)
            for k in range(figures):
                data = b.js(f"JSON.parse(document.querySelectorAll('.{SLIDER}')[{k}]"
                            ".querySelector('script[type=\"application/json\"]').textContent)")
                b.js(f"document.querySelectorAll('.{SLIDER}')[{k}]"
                     ".querySelector('input[type=range]').focus()")
                b.press("Home", 36)
                for i, x in enumerate(data["x"]):
                    shown = b.js(f"(f => ({{x: +f.querySelector('[data-x]').dataset.x, values: "
                                 "[...f.querySelectorAll('[data-series]')].map(e => "
                                 "({i: +e.dataset.series, v: e.dataset.value === 'null' ? null "
                                 ": +e.dataset.value, text: e.textContent}))}))"
                                 f"(document.querySelectorAll('.{SLIDER}')[{k}])")
                    if shown["x"] != x:
                        problems.append(f"{name}: slider figure {k + 1} shows x = {shown['x']} "
                                        f"at position {i}, not {x}")
                    for s in shown["values"]:
                        want = data["series"][s["i"]]["values"][i]
                        ok = (s["v"] is None and want is None) or (
                            s["v"] is not None and want is not None and math.isclose(
                                s["v"], want, rel_tol=1e-12, abs_tol=1e-12))
                        label = data["series"][s["i"]]["label"]
                        if not ok:
                            problems.append(f"{name}: slider figure {k + 1} at x = {x} shows "
                                            f"{s['v']} for {label}, precomputed {want}")
                        text = f"{label}: " + ("–" if want is None else fixed(
                            want, data["digits"]) + data["unit"])
                        if s["text"] != text:
                            problems.append(f"{name}: slider figure {k + 1} at x = {x} reads "
                                            f"{s['text']!r}, not {text!r}")
                    n += 1
                    b.press("ArrowRight", 39)
            problems += [f"{name}: {p}" for p in b.problems(server.url)]
            b.events.clear()
    finally:
        b.close()
        server.close()
    log(f"slider figures: {n} positions on {len(pages)} page(s) show their precomputed values"
        if not problems else f"slider figures: {len(problems)} problem(s)")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", default=str(ROOT / "book" / "_build" / "html"))
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    html = Path(args.html).resolve()
    problems = check_dial(html, chromium) + check_sliders(html, chromium)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

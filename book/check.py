"""Open every page of the built book in headless Chromium, as a reader would, with the network
blocked, and fail on what a reader would see broken.

    .venv/bin/python book/check.py                      # book/_build/html
    .venv/bin/python book/check.py --html DIR --screenshots DIR

Per page: a JavaScript error in the console; an asset (script, style sheet, image) fetched from
the network, or a local one that is missing; equations left as raw TeX (MathJax did not run); a
display equation wider than its column at 1280 px (a reader sees it clipped); a table wider
than the text column at 1280 px (its last columns run past the text); a link to a page of the
book that does not exist; an absolute path of the build machine in the text; an executed page
(a notebook) that shows no figure and no table. Then the interactive parts are used as a reader
uses them (``book/interactive.py``): test texts typed into "Turn the dial yourself" must come
back with scpo's token ids and rewards, and each figure with a slider must show its
precomputed values. Screenshots of the intro, the method, the first country page, the main
table and the scorecard are saved for a person to look at.
Chromium comes from Debian's package (``apt-get install chromium``); run as root where it is
missing, the check says so and installs it, unless told not to (``--no-apt``, ``SCPO_NO_APT=1``).
"""

from __future__ import annotations

import argparse
import html
import html.parser
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ("intro.html", "method.html", "countries/*.html", "results/main.html", "scorecard.html")
WIDTH = 1280  # the reader's window, in CSS pixels
# Measured in the page, once MathJax has typeset it: each display equation wider than the box
# it sits in, and each table wider than the text column, written into the DOM for --dump-dom
LAYOUT = """<script>
window.addEventListener("load", function () {
  function measure() {
    var found = [], column = document.querySelector("article") || document.body;
    var style = getComputedStyle(column);  // the text column: the article's content box
    var room = column.getBoundingClientRect().width - parseFloat(style.paddingLeft)
      - parseFloat(style.paddingRight);
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (m) {
      var math = m.querySelector("mjx-math") || m, box = m.parentElement.getBoundingClientRect();
      var w = math.getBoundingClientRect().width;
      if (w > box.width + 1) found.push("math " + Math.round(w) + " px in " + Math.round(box.width)
        + " px: " + (m.textContent || "").slice(0, 60));
    });
    document.querySelectorAll("table").forEach(function (t) {
      var w = t.getBoundingClientRect().width;
      if (w > room + 1) found.push("table " + Math.round(w) + " px in " + Math.round(room)
        + " px: " + (t.textContent || "").trim().slice(0, 60));
    });
    var out = document.createElement("pre");
    out.id = "scpo-layout";
    out.textContent = JSON.stringify(found);
    document.body.appendChild(out);
  }
  var mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
  if (mj) { mj.then(measure); } else { measure(); }
});
</script>"""
LAYOUT_FOUND = re.compile(r'<pre id="scpo-layout"[^>]*>(.*?)</pre>', re.S)
# Sphinx's own pages, which are not the book's reading
SKIP = {"genindex.html", "search.html", "py-modindex.html"}
TEX = re.compile(r"\\\(|\\\[|\\begin\{|\$\$")
LOCAL_PATH = re.compile(r"(?<![\w.~-])/(?:home|root|tmp|work|Users|private/var)/[\w.-]+")


NO_APT = "SCPO_NO_APT"  # set (to 1): never install chromium, as --no-apt


def chromium(install: bool = True) -> str:
    """Debian's chromium: found, or (as root with apt-get, unless ``install`` is off or
    ``SCPO_NO_APT`` is set) installed after saying so; else an exit naming the command."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    install = install and os.environ.get(NO_APT, "") in ("", "0")
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("book-check: chromium is missing; installing Debian's package now (apt-get "
              f"install chromium, as root). To skip this, pass --no-apt or set {NO_APT}=1 "
              "and install a chromium yourself.", file=sys.stderr, flush=True)
        cmd = ["apt-get", "install", "-y", "-q", "chromium"]
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            # a fresh machine has no package lists yet: fetch them, then install
            subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return shutil.which("chromium") or "chromium"
    raise SystemExit("book-check: no chromium; install Debian's package (sudo apt-get install "
                     "chromium) and run again" + ("" if install else
                                                  f" (not installed here: --no-apt or {NO_APT})"))


def browse(page: Path, *extra: str) -> subprocess.CompletedProcess:
    """The page in headless Chromium with every host name unresolvable (no network), the
    console logged to stderr, scripts given 8 s of virtual time to settle."""
    cmd = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=8000", *extra,
           page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


class Assets(html.parser.HTMLParser):
    """The static page's assets, links, and whether it is an executed notebook with output."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.links: list[str] = []
        self.cells = 0  # code cells (an executed notebook page has some)
        self.results = 0  # figures and tables inside cell outputs
        self._output_depth = 0
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self._depth += 1
        classes = (a.get("class") or "").split()
        if "cell" in classes:
            self.cells += 1
        if "cell_output" in classes and not self._output_depth:
            self._output_depth = self._depth
        if self._output_depth and tag in ("img", "table"):
            self.results += 1
        if tag in ("script", "img") and a.get("src"):
            self.assets.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel") in ("stylesheet", "icon", "preload"):
            self.assets.append(a["href"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if self._output_depth == self._depth:
            self._output_depth = 0
        self._depth -= 1


def local_target(page: Path, ref: str) -> Path | None:
    """The file a relative reference points at (None: external, anchor-only or special)."""
    url = urlparse(ref)
    if url.scheme or url.netloc or not url.path or ref.startswith(("mailto:", "javascript:")):
        return None
    return (page.parent / unquote(url.path)).resolve()


def text_of(dom: str) -> str:
    """Visible text of a dumped DOM: scripts, styles and tags dropped."""
    dom = re.sub(r"<(script|style|mjx-container|noscript)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"<[^>]+>", " ", dom)


def check_page(html_dir: Path, page: Path) -> list[str]:
    """What is broken on one page, as messages naming the page."""
    name = str(page.relative_to(html_dir))
    static = page.read_text(encoding="utf-8", errors="replace")
    parsed = Assets()
    parsed.feed(static)
    problems = []
    for ref in parsed.assets:
        if urlparse(ref).scheme in ("http", "https") or ref.startswith("//"):
            problems.append(f"{name}: fetches {ref} from the network (the book must work "
                            "offline; serve it from _static)")
        else:
            target = local_target(page, ref)
            if target is not None and not target.exists():
                problems.append(f"{name}: missing asset {ref}")
    for ref in parsed.links:
        target = local_target(page, ref)
        if target is not None and target.suffix in (".html", "") and not target.exists():
            problems.append(f"{name}: broken link {ref}")
    if parsed.cells and not parsed.results:
        problems.append(f"{name}: an executed page without a figure or table in its output")
    proc = measured(page)
    for line in proc.stderr.splitlines():
        if ":CONSOLE" in line and ('"Uncaught' in line or "Failed to load" in line):
            problems.append(f"{name}: console error {line.split('] ', 1)[-1][:200]}")
    measures = layout(proc.stdout)
    problems += [f"{name}: display math wider than its column at {WIDTH} px ({found})"
                 for found in measures if found.startswith("math ")]
    problems += [f"{name}: a table wider than the text column at {WIDTH} px ({found}): fewer "
                 "or shorter columns, or split it" for found in measures
                 if found.startswith("table ")]
    text = text_of(re.sub(LAYOUT_FOUND, "", proc.stdout))
    for hit in sorted(set(TEX.findall(text)))[:3]:
        at = text.find(hit)
        problems.append(f"{name}: unrendered math near {text[max(0, at - 30):at + 40]!r}")
    paths = sorted(set(LOCAL_PATH.findall(text)) | ({str(ROOT)} if str(ROOT) in text else set()))
    for p in paths[:3]:
        problems.append(f"{name}: an absolute path of the build machine in the text: {p}")
    return problems


def interactive(html_dir: Path) -> list[str]:
    """The dial page and the figures with a slider, used as a reader uses them: typed into,
    scored, slid (``book/interactive.py``, beside this file)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "book_interactive", Path(__file__).with_name("interactive.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    browser = chromium()
    return module.check_dial(html_dir, browser) + module.check_sliders(html_dir, browser)


def measured(page: Path) -> subprocess.CompletedProcess:
    """The page's DOM at ``WIDTH`` px, with what ``LAYOUT`` measured in it: a copy of the page
    beside it (so its assets resolve), the measuring script added, removed afterwards."""
    static = page.read_text(encoding="utf-8", errors="replace")
    copy = page.with_name(f".scpo-check-{page.name}")
    copy.write_text(static.replace("</body>", LAYOUT + "</body>", 1), encoding="utf-8")
    try:
        return browse(copy, "--dump-dom", f"--window-size={WIDTH},1600")
    finally:
        copy.unlink(missing_ok=True)


def layout(dom: str) -> list[str]:
    """What ``LAYOUT`` found too wide in a dumped DOM ([] when the script did not run)."""
    import json

    m = LAYOUT_FOUND.search(dom)
    if not m:
        return []
    try:
        return [str(x) for x in json.loads(html.unescape(m.group(1)))]
    except ValueError:
        return []


def screenshots(html_dir: Path, out: Path) -> list[Path]:
    """A screenshot of the first page of each of ``SHOTS`` into ``out``, each listed first in
    the marker (``scpo.outdir``) of the book it sits in (``<book>/screenshots``: the next build
    replaces them with the book) or of ``out`` itself; a file of the user's is never replaced."""
    from scpo.outdir import claim, read_marker

    out = out.resolve()
    book = read_marker(out.parent)
    if out.parent == html_dir.resolve().parent and book is not None and book.what == "book" \
            and book.files is not None:
        target, prefix = claim(out.parent, what="book", told=""), f"{out.name}/"
    else:
        target, prefix = claim(out, what="book screenshots", told=""), ""
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for pattern in SHOTS:
        pages = sorted(html_dir.glob(pattern))
        if not pages:
            continue
        shot = out / (pages[0].stem + ".png")
        target.add([prefix + shot.name])
        browse(pages[0], f"--screenshot={shot}", f"--window-size={WIDTH},1600",
               "--hide-scrollbars")
        if shot.exists():
            saved.append(shot)
    return saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", default=str(ROOT / "book" / "_build" / "html"),
                    help="the built book (default: %(default)s)")
    ap.add_argument("--screenshots", default=None,
                    help="where the screenshots go (default: <html>/../screenshots)")
    ap.add_argument("--jobs", type=int, default=2, help="pages opened at once")
    ap.add_argument("--no-apt", action="store_true", help="never install chromium with apt-get "
                    f"(as root it is installed when missing, after saying so; or set {NO_APT}=1)")
    args = ap.parse_args(argv)
    chromium(install=not args.no_apt)  # found or installed (saying so) before any page
    html_dir = Path(args.html).resolve()
    if not (html_dir / "index.html").is_file():
        raise SystemExit(f"book-check: no built book in {html_dir} (index.html missing); run "
                         "`make book` first")
    pages = [p for p in sorted(html_dir.rglob("*.html"))
             if not p.relative_to(html_dir).parts[0].startswith("_") and p.name not in SKIP]
    with ThreadPoolExecutor(args.jobs) as pool:
        problems = [m for found in pool.map(lambda p: check_page(html_dir, p), pages)
                    for m in found]
    problems += interactive(html_dir)
    try:
        shots = screenshots(html_dir, Path(args.screenshots) if args.screenshots
                            else html_dir.parent / "screenshots")
    except (FileExistsError, FileNotFoundError) as e:  # a folder of the user's: refused
        raise SystemExit(f"book-check: --screenshots {e}") from None
    for m in problems:
        print(m)
    names = [str(s.relative_to(ROOT)) if s.is_relative_to(ROOT) else str(s) for s in shots]
    print(f"book-check: {len(pages)} pages, {len(problems)} problem(s); screenshots: "
          f"{', '.join(names)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

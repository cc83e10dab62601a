"""book/check.py's judgement of a page, on hand-written pages (the browser is stubbed here;
`make book-check` runs the real one on the built book in CI)."""

import subprocess

from conftest import load_script

check = load_script("book/check.py", "book_check")

GOOD = """<html><head><script src="_static/a.js"></script>
<link rel="stylesheet" href="_static/s.css"></head><body>
<a href="other.html#x">other</a><a href="https://example.org">out</a>
<div class="cell docutils container"><div class="cell_output"><img src="_images/f.png"></div></div>
</body></html>"""


def write(tmp_path, name, text):
    page = tmp_path / name
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    return page


def fake_browser(monkeypatch, dom, stderr=""):
    monkeypatch.setattr(check, "browse", lambda page, *a: subprocess.CompletedProcess(
        [], 0, stdout=dom, stderr=stderr))


def site(tmp_path):
    for f in ("_static/a.js", "_static/s.css", "_images/f.png", "other.html"):
        write(tmp_path, f, "x")


def test_a_good_page_passes(tmp_path, monkeypatch):
    site(tmp_path)
    page = write(tmp_path, "page.html", GOOD)
    fake_browser(monkeypatch, "<p>The margin <mjx-container>\\(x\\)</mjx-container> is 2.</p>")
    assert check.check_page(tmp_path, page) == []


def test_each_kind_of_breakage_is_named(tmp_path, monkeypatch):
    site(tmp_path)
    bad = (GOOD.replace("_static/a.js", "https://cdn.example.org/mathjax.js")
           .replace("_images/f.png", "_images/gone.png").replace("other.html", "nowhere.html"))
    page = write(tmp_path, "results/page.html", bad.replace("../", ""))
    builder_path = tmp_path / "cache" / "results"  # an absolute path of this machine
    fake_browser(monkeypatch, f"<p>Notation: \\(p_\\text{{glo}}\\) read from {builder_path}</p>",
                 stderr='[1:1:INFO:CONSOLE:62] "Uncaught SyntaxError: Identifier '
                        "'THEBE_JS_URL' has already been declared\", source: page.html (62)")
    found = "\n".join(check.check_page(tmp_path, page))
    for expected in ("fetches https://cdn.example.org/mathjax.js from the network",
                     "missing asset _images/gone.png", "broken link nowhere.html#x",
                     "console error \"Uncaught SyntaxError", "unrendered math near",
                     f"absolute path of the build machine in the text: /{builder_path.parts[1]}/"):
        assert expected in found, expected


def test_an_executed_page_without_a_result_is_reported(tmp_path, monkeypatch):
    site(tmp_path)
    page = write(tmp_path, "page.html", GOOD.replace('<img src="_images/f.png">', "<p>x</p>"))
    fake_browser(monkeypatch, "<p>text</p>")
    assert check.check_page(tmp_path, page) == [
        "page.html: an executed page without a figure or table in its output"]


def test_the_check_says_so_before_it_installs_chromium_and_can_be_told_not_to(
        tmp_path, monkeypatch, capsys):
    """Issue 35: `make book-check` as root ran `apt-get install chromium` without a word; it
    now says so first, and --no-apt (or SCPO_NO_APT=1) skips it."""
    import pytest

    calls = []
    monkeypatch.setattr(check.shutil, "which",
                        lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    monkeypatch.setattr(check.os, "geteuid", lambda: 0)

    def run(cmd, **kw):  # what was said on stderr by the time apt-get runs
        calls.append((cmd, capsys.readouterr().err))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(check.subprocess, "run", run)
    monkeypatch.delenv(check.NO_APT, raising=False)
    check.chromium()
    assert calls[0][0][:2] == ["apt-get", "install"]
    assert "chromium is missing; installing Debian's package now" in calls[0][1]
    assert "--no-apt" in calls[0][1]
    calls.clear()
    with pytest.raises(SystemExit, match=r"no chromium.*not installed here: --no-apt"):
        check.main(["--no-apt", "--html", str(tmp_path)])
    monkeypatch.setenv(check.NO_APT, "1")
    with pytest.raises(SystemExit, match="no chromium"):
        check.chromium()
    assert calls == []


def test_screenshots_join_the_books_marker_and_never_replace_a_users_file(tmp_path,
                                                                         monkeypatch):
    """The screenshots of a book go into its marker (the next build replaces them with the
    book); in a folder of the user's, a picture of theirs is never overwritten."""
    from pathlib import Path

    import pytest

    from scpo.outdir import mark, read_marker

    book = tmp_path / "_build"
    html = book / "html"
    html.mkdir(parents=True)
    (html / "intro.html").write_text("<html></html>")
    mark(book, "book", ["html/intro.html"])

    def shoot(page, *args):
        shot = next(a for a in args if a.startswith("--screenshot=")).split("=", 1)[1]
        Path(shot).write_bytes(b"png")
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(check, "browse", shoot)
    assert check.screenshots(html, book / "screenshots") == [book / "screenshots" / "intro.png"]
    assert read_marker(book).files == {"html/intro.html", "screenshots/intro.png"}
    mine = tmp_path / "pictures"
    mine.mkdir()
    (mine / "intro.png").write_bytes(b"my picture")
    with pytest.raises(FileExistsError, match="scpo did not make it"):
        check.screenshots(html, mine)
    assert (mine / "intro.png").read_bytes() == b"my picture"


def test_display_math_or_a_table_wider_than_its_column_fails(tmp_path, monkeypatch):
    """Issue 36: the behaviour chapter's display equation was clipped mid-formula at 1280 px,
    and tables ran past the text column. The page is measured in the browser (a script added
    to a copy of it); what it finds too wide comes back in the dumped DOM, and fails."""
    site(tmp_path)
    page = write(tmp_path, "page.html", GOOD)
    seen = {}

    def browser(copy, *args):
        seen["copy"], seen["args"] = copy.read_text(), args
        found = ('["math 912 px in 704 px: gain_i = v_{i,pick}", '
                 '"table 1100 px in 800 px: statement reported"]')
        return subprocess.CompletedProcess([], 0, stderr="", stdout=(
            f'<p>ok</p><pre id="scpo-layout">{found}</pre>'))

    monkeypatch.setattr(check, "browse", browser)
    assert check.check_page(tmp_path, page) == [
        "page.html: display math wider than its column at 1280 px (math 912 px in 704 px: "
        "gain_i = v_{i,pick})",
        "page.html: a table wider than the text column at 1280 px (table 1100 px in 800 px: "
        "statement reported): fewer or shorter columns, or split it"]
    assert 'mjx-container[display="true"]' in seen["copy"]  # the measuring script ran in it
    assert "--window-size=1280,1600" in seen["args"]
    assert not list(tmp_path.glob(".scpo-check-*"))  # the copy is removed
    fake_browser(monkeypatch, '<p>ok</p><pre id="scpo-layout">[]</pre>')
    assert check.check_page(tmp_path, page) == []

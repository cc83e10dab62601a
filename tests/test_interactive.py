"""book/interactive.py, the browser test of the book's interactive parts, on small pages of its
own in headless Chromium: it passes on the book's scripts and fails, naming the problem, when a
script computes something else (a tokenizer that cuts a pair differently, a dial that is not
r_glo + alpha (r_c - r_glo), a slider that shows another position's values) or when the page's
rewards are not scpo's. `make book-check` runs it on the built book."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, load_script

from scpo.companion import browser, sliders
from scpo.models.embedding import EmbeddingRM, Encoder

interactive = load_script("book/interactive.py", "book_interactive")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install "
                                 "chromium); make book-check installs it"), pytest.mark.slow]
PROMPTS = ["How should I greet my neighbours?", "Is tipping expected?"]
ANSWERS = [["Say hello and smile.", "Wave from afar."], ["Yes, about ten percent.", "No."]]


def quiet(*a):
    pass


@pytest.fixture(scope="module")
def site(tiny_bert, tmp_path_factory):
    """A page with the dial, its bundle (tiny models, the real pinned runtime), and the book's
    script."""
    root = tmp_path_factory.mktemp("site")
    enc = Encoder(str(tiny_bert), max_length=64, progress=False,
                  cache_root=tmp_path_factory.mktemp("interactive-cache"))
    emb = enc.encode([p for p, a in zip(PROMPTS, ANSWERS) for _ in a],
                     [x for a in ANSWERS for x in a])
    glo, chile = (EmbeddingRM.new(enc, "linear", standardize_from=emb, seed=s) for s in (0, 1))
    browser.write_bundle(
        root / "_static" / "dial", glo, {"Chile": chile},
        examples=[{"prompt": PROMPTS[0], "answers": ANSWERS[0],
                   "truth": {"Chile": [1.0, -1.0]}, "truth_kind": "utility"},
                  {"prompt": PROMPTS[1], "answers": [*ANSWERS[1], "Only in cafes."],
                   "truth": {"Chile": [0.0, 1.0, 2.0]}, "truth_kind": "utility"}],
        rounds=[{"prompt": p, "answers": a} for p, a in zip(PROMPTS, ANSWERS)])
    (root / "try.html").write_text(
        '<html><head><meta charset="utf-8"><script src="_static/scpo-dial.js"></script></head>'
        '<body><div id="scpo-dial" data-bundle="dial/"></div></body></html>')
    return root


def with_script(site, name: str, change: tuple[str, str] | None = None):
    text = (ROOT / "book" / "_static" / name).read_text()
    if change:
        assert change[0] in text, change[0]
        text = text.replace(*change)
    (site / "_static" / name).write_text(text)


def test_the_dial_page_passes_with_the_books_script(site):
    with_script(site, "scpo-dial.js")
    lines = []
    assert interactive.check_dial(site, CHROMIUM, log=lines.append) == []
    said = "\n".join(lines)
    assert "fp32 encoder on 4 test texts" in said and "same preferred answer on 4/4" in said
    assert "downloaded" in said and "first score" in said
    assert "starting examples: each model's preferred answer as scpo's" in said


def test_a_page_that_marks_another_preferred_answer_fails(site):
    with_script(site, "scpo-dial.js", ("if (x > xs[best]) best = i;",
                                       "if (x < xs[best]) best = i;"))
    found = "\n".join(interactive.check_dial(site, CHROMIUM, log=quiet))
    assert "example 1: the page shows global preferring" in found
    assert "example 2: the page shows country:Chile preferring" in found


def test_a_script_that_cuts_long_pairs_otherwise_fails(site):
    with_script(site, "scpo-dial.js", ("Math.max(short, budget - short)",
                                       "Math.max(short, budget - short - 1)"))
    found = "\n".join(interactive.check_dial(site, CHROMIUM, log=quiet))
    assert "token ids differ from the Python tokenizer's" in found


def test_rewards_that_are_not_scpos_and_a_wrong_dial_fail(site):
    with_script(site, "scpo-dial.js", ("return a < 0.5 ? g + a * d : c - (1 - a) * d;",
                                       "return g + a * a * d;"))
    ref_file = site / "_static" / "dial" / "reference.json"
    saved = ref_file.read_text()
    ref = json.loads(saved)
    ref["rounds"][0]["rewards"]["country:Chile"][1] += 0.01  # as if scpo had said otherwise
    ref_file.write_text(json.dumps(ref))
    try:
        found = "\n".join(interactive.check_dial(site, CHROMIUM, log=quiet))
    finally:
        ref_file.write_text(saved)
    assert "fp32 #0: country:Chile's rewards" in found and "(> 0.001)" in found
    assert "fp32 #1" not in found  # the other round's rewards are scpo's
    assert "not r_glo + α (r_c - r_glo)" in found


@pytest.fixture(scope="module")
def slider_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("sliders")
    (root / "_static").mkdir()
    table = pd.DataFrame({"overall": [70.0, 71.25, np.nan, 73.0], "pure": [0.0, 5.5, 9.0, 20.0]},
                         index=[0.0, 0.5, 1.0, 2.0])
    figs = [sliders.slider_figure(table, {"overall": "overall", "pure": "pure"}, title="a",
                                  x_label="α", y_label="%", start=1.0),
            sliders.slider_figure(table[["pure"]], {"pure": "pure"}, title="b", x_label="α",
                                  y_label="%")]
    (root / "page.html").write_text(
        '<html><head><meta charset="utf-8"><script src="_static/scpo-slider.js"></script>'
        '</head><body>' + "".join(f._repr_html_() for f in figs) + "</body></html>")
    return root


def test_each_slider_position_shows_its_precomputed_values(slider_site):
    with_script(slider_site, "scpo-slider.js")
    lines = []
    assert interactive.check_sliders(slider_site, CHROMIUM, log=lines.append) == []
    assert lines == ["slider figures: 8 positions on 1 page(s) show their precomputed values"]


@pytest.mark.parametrize("change,expected", [
    (("const v = s.values[i];", "const v = s.values[Math.max(0, i - 1)];"),
     "slider figure 1 at x = 0.5 shows 70 for overall, precomputed 71.25"),
    (("v.toFixed(data.digits)", "v.toFixed(data.digits + 1)"),
     "slider figure 1 at x = 0.5 reads 'overall: 71.25', not 'overall: 71.3'")])  # JS: half up
def test_a_slider_that_shows_other_values_fails(slider_site, change, expected):
    with_script(slider_site, "scpo-slider.js", change)
    found = "\n".join(interactive.check_sliders(slider_site, CHROMIUM, log=quiet))
    assert expected in found

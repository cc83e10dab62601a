"""Figures that answer a slider (scpo.companion.sliders): the page gets exactly the table's
numbers."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from scpo.companion import sliders


def payload(fig) -> dict:
    html = fig._repr_html_()
    assert html.startswith(f'<figure class="{sliders.CLASS}" hidden')  # shown by the script
    text = re.search(r'<script type="application/json">(.*)</script>', html, re.S).group(1)
    return json.loads(text)


def test_the_figure_carries_the_tables_values_position_by_position():
    table = pd.DataFrame({"overall": [70.25, 71.5, np.nan], "pure": [0.0, 14.3, 25.0],
                          "unused": [1, 2, 3]}, index=pd.Index([0.0, 0.5, 2.0], name="alpha"))
    data = payload(sliders.slider_figure(table, {"overall": "overall", "pure": "pure minority"},
                                         title="t", x_label="α", y_label="%", start=0.5))
    assert data["x"] == [0.0, 0.5, 2.0] and data["start"] == 1
    assert data["series"] == [{"label": "overall", "values": [70.25, 71.5, None]},
                              {"label": "pure minority", "values": [0.0, 14.3, 25.0]}]
    assert data["digits"] == 1 and data["x_label"] == "α"


def test_a_title_cannot_end_the_script_element():
    table = pd.DataFrame({"a": [1.0, 2.0]}, index=[0, 1])
    html = sliders.slider_figure(table, {"a": "</script><b>x"}, title="t", x_label="x",
                                 y_label="y")._repr_html_()
    assert html.count("</script>") == 1
    assert payload(sliders.slider_figure(table, {"a": "</script>"}, title="t", x_label="x",
                                         y_label="y"))["series"][0]["label"] == "</script>"


def test_bad_tables_are_refused_naming_the_problem():
    ok = pd.DataFrame({"a": [1.0, 2.0]}, index=[0.0, 1.0])
    with pytest.raises(KeyError, match=r"no column\(s\) \['b'\]"):
        sliders.slider_figure(ok, {"b": "b"}, title="t", x_label="x", y_label="y")
    with pytest.raises(ValueError, match="increasing"):
        sliders.slider_figure(ok.iloc[::-1], {"a": "a"}, title="t", x_label="x", y_label="y")
    with pytest.raises(ValueError, match="infinity"):
        sliders.slider_figure(ok.assign(a=[1.0, math.inf]), {"a": "a"}, title="t",
                              x_label="x", y_label="y")
    with pytest.raises(ValueError, match="start 3"):
        sliders.slider_figure(ok, {"a": "a"}, title="t", x_label="x", y_label="y", start=3)
    with pytest.raises(ValueError, match=r"\['a'\] hold no value"):
        sliders.slider_figure(ok.assign(a=np.nan), {"a": "a"}, title="t", x_label="x",
                              y_label="y")
    with pytest.raises(ValueError, match="no rows"):
        sliders.slider_figure(ok.iloc[:0], {"a": "a"}, title="t", x_label="x", y_label="y")

"""Figures that answer a slider: values precomputed along a dial, shown as the reader moves it.

A notebook cell returns ``slider_figure(table, ...)``; the book shows its HTML, and one script
for the whole book, ``book/_static/scpo-slider.js``, draws the curves and a slider over the
table's rows. Nothing is computed in the browser: each position of the slider shows the numbers
this function was given, computed in Python by the chapter. The chapter's static figure and
table of the same numbers stay on the page for print and for readers without JavaScript (the
interactive figure is hidden then).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

CLASS = "scpo-slider"  # what the script looks for (book/interactive.py checks every one)


class SliderFigure:
    """The figure's data, shown as HTML by a notebook (``_repr_html_``)."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def _repr_html_(self) -> str:
        # inside <script>, "</" would end the element: JSON allows "<\/" for it
        payload = json.dumps(self.data, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")
        return (f'<figure class="{CLASS}" hidden aria-label="{html.escape(self.data["title"])}">'
                f'<script type="application/json">{payload}</script></figure>')

    def __repr__(self) -> str:
        rows = ", ".join(f"{s['label']}: {len(s['values'])} values" for s in self.data["series"])
        return f"<slider figure {self.data['title']!r} over {self.data['x_label']}: {rows}>"


def _number(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def slider_figure(table: pd.DataFrame, series: Mapping[str, str], *, title: str, x_label: str,
                  y_label: str, digits: int = 1, unit: str = "",
                  start: float | None = None) -> SliderFigure:
    """A figure of ``table``'s columns ``series`` (column -> label) against its index, with a
    slider over the index (one position per row, in order; ``start``: the index value it
    starts at, default the first). NaN is shown as missing ("–"); infinities, and columns
    with no value at all, are refused."""
    if table.empty:
        raise ValueError(f"slider figure {title!r}: the table has no rows to slide over")
    missing = [c for c in series if c not in table.columns]
    if missing:
        raise KeyError(f"slider figure {title!r}: no column(s) {missing} in the table; it has "
                       f"{list(table.columns)}")
    x = [float(v) for v in table.index]
    if any(b <= a for a, b in zip(x, x[1:])) or not all(math.isfinite(v) for v in x):
        raise ValueError(f"slider figure {title!r}: the index must be finite and increasing, "
                         f"got {x}")
    values = {c: [_number(v) for v in table[c]] for c in series}
    bad = [c for c, vs in values.items() if any(v is not None and not math.isfinite(v)
                                                 for v in vs)]
    if bad:
        raise ValueError(f"slider figure {title!r}: column(s) {bad} hold an infinity")
    if all(v is None for vs in values.values() for v in vs):
        raise ValueError(f"slider figure {title!r}: column(s) {list(series)} hold no value "
                         "(all NaN): nothing to show")
    if start is not None and float(start) not in x:
        raise ValueError(f"slider figure {title!r}: start {start} is not one of {x}")
    return SliderFigure({
        "title": title, "x_label": x_label, "y_label": y_label, "digits": int(digits),
        "unit": unit, "x": x, "start": 0 if start is None else x.index(float(start)),
        "series": [{"label": label, "values": values[c]} for c, label in series.items()]})

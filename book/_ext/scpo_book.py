"""The book's one Sphinx extension: each script once per page.

sphinx-thebe (which Jupyter Book always loads) adds its inline configuration script each time
Sphinx reads the sources; a build that reads them twice gets it twice, and the second
``const THEBE_JS_URL`` is a JavaScript error on every page. Duplicates are dropped here.
"""

from __future__ import annotations

from typing import Any


def dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                   doctree: Any) -> None:
    seen, kept = set(), []
    for js in context.get("script_files", []):
        # the same inline script is registered once with filename None, once with ""
        key = (getattr(js, "filename", None) or "", getattr(js, "priority", 0),
               tuple(sorted(getattr(js, "attributes", {}).items()))) if not isinstance(
            js, str) else js
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def setup(app: Any) -> dict[str, Any]:
    # last: after sphinx.ext.mathjax and the others have added their page's scripts (the
    # context gets a new list; anything added after this handler would not reach the page)
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""The book's one Sphinx extension: each script once per page, and launch buttons that open a
page's notebook where it exists.

sphinx-thebe (which Jupyter Book always loads) adds its inline configuration script each time
Sphinx reads the sources; a build that reads them twice gets it twice, and the second
``const THEBE_JS_URL`` is a JavaScript error on every page. Duplicates are dropped here.

The theme's own launch buttons would open ``book/<page>.ipynb`` in the repository, a file that
never exists there: the pages are executed copies of the notebooks in ``notebooks/``. Each page
that runs on its own gets Colab and Binder buttons for its notebook on the branch that
``book/build.py launch-branch`` writes (``scpo_launch_pages``, set by the build).
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


def launch_urls(repo_url: str, branch: str, notebook: str) -> dict[str, str]:
    """Colab and Binder addresses of ``notebook`` (a path in the repository) on ``branch``."""
    owner_repo = repo_url.removeprefix("https://github.com/").strip("/")
    return {
        "Colab": f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{notebook}",
        "Binder": f"https://mybinder.org/v2/gh/{owner_repo}/{branch}?urlpath=lab/tree/{notebook}",
    }


def add_launch_buttons(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                       doctree: Any) -> None:
    notebook = app.config.scpo_launch_pages.get(pagename)
    if not notebook or "header_buttons" not in context:
        return
    urls = launch_urls(app.config.scpo_repository_url, app.config.scpo_launch_branch, notebook)
    context["header_buttons"].append({
        "type": "group", "tooltip": "Run this notebook", "icon": "fas fa-rocket",
        "label": "launch-buttons",
        "buttons": [{"type": "link", "text": name, "tooltip": f"Open {notebook} in {name}",
                     "icon": "fas fa-external-link-alt", "url": url}
                    for name, url in urls.items()],
    })


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("scpo_repository_url", "", "html")
    app.add_config_value("scpo_launch_branch", "notebooks", "html")
    app.add_config_value("scpo_launch_pages", {}, "html")
    app.connect("html-page-context", add_launch_buttons, priority=800)
    # last: after sphinx.ext.mathjax and the others have added their page's scripts (the
    # context gets a new list; anything added after this handler would not reach the page)
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

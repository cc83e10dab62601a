"""The package's shape: two layers, the method's core and the companion (``scpo.companion``,
the book's studies and tools), where the core never imports the companion; and no module
imports one that imports it back (at any depth).

The front door, ``scpo/cli.py`` and ``scpo/__init__.py``, belongs to neither layer: the
``scpo`` command runs the companion's commands too (importing them inside the command that
needs them), so it may import both.
"""

import ast
import re
from pathlib import Path

import pytest

import scpo
import scpo.companion
import scpo.models

ROOT = Path(scpo.__file__).parent
COMPANION = "scpo.companion"
FRONT_DOOR = {"scpo", "scpo.cli"}  # may import both layers


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """scpo modules imported anywhere in the file (functions too), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports, a type's import under TYPE_CHECKING too
    (it still ties the two modules: an import map draws it)."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {m: {i for _, i in imported_modules(p, m) if i in files and i != m and i != "scpo"}
            for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the path that closes it (depth-first search)."""
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                found.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module ``path`` (the module ``module``) imports, with its line: at module level
    and inside functions, under TYPE_CHECKING too; ``from a import b`` gives both ``a`` and
    ``a.b`` (b may be a module); relative imports resolved; ``importlib.import_module`` of a
    constant name counted as an import."""
    parts = module.split(".")
    package = parts if path.name == "__init__.py" else parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[:len(package) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif (isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1]
              in ("import_module", "__import__") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def core_modules() -> dict[str, Path]:
    """The method's core: every module of the package outside ``scpo.companion`` and the
    front door."""
    return {m: p for p in sorted(ROOT.rglob("*.py"))
            if not (m := module_name(p)).startswith(COMPANION) and m not in FRONT_DOOR}


def companion_imports(files: dict[str, Path]) -> list[str]:
    """``file:line imported`` for each import of the companion in ``files``."""
    return [f"{p.relative_to(ROOT.parent) if p.is_relative_to(ROOT.parent) else p}:{line} "
            f"imports {name}"
            for m, p in files.items() for line, name in imported_modules(p, m)
            if name == COMPANION or name.startswith(COMPANION + ".")]


def test_the_import_reader_sees_every_form_of_import(tmp_path):
    pkg = tmp_path / "scpo" / "models"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text(
        "import scpo.companion.bon as b\n"
        "from scpo import companion\n"
        "from ..companion import plots\n"
        "from .. import companion as c\n"
        "from . import base\n"
        "def f():\n"
        "    from scpo.companion.report import main_table\n"
        "    import importlib\n"
        "    return importlib.import_module('scpo.companion.steer')\n")
    names = {n for _, n in imported_modules(pkg / "x.py", "scpo.models.x")}
    assert {"scpo.companion.bon", "scpo.companion", "scpo.companion.plots",
            "scpo.models.base", "scpo.companion.report", "scpo.companion.steer"} <= names
    found = companion_imports({"scpo.models.x": pkg / "x.py"})
    assert len(found) == 8 and found[0].endswith("x.py:1 imports scpo.companion.bon")


def test_the_core_never_imports_the_companion():
    core = core_modules()
    assert {"scpo.method", "scpo.experiment", "scpo.models.hf"} <= set(core)
    assert not {"scpo.cli", "scpo.companion.bon"} & set(core)
    assert companion_imports(core) == []


def test_the_companion_is_a_folder_of_its_own():
    """What moved to the companion is there, and only there: no module of the same name is
    left in the core (no re-exporting shim)."""
    companion = {p.stem for p in (ROOT / "companion").glob("*.py") if p.stem != "__init__"}
    assert {"bon", "report", "plots", "fetch", "reward_fn"} <= companion
    core = {m.split(".")[-1] for m in core_modules()}
    assert companion & core == {"conditioned"}  # scpo.models.conditioned: a tier's model


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "scpo.models.hf_train" in graph["scpo.models.hf"]  # the graph sees function imports
    assert "scpo.models.hf" in graph["scpo.models.partial"]
    assert cycles(graph) == []


def listed_modules(package) -> list[str]:
    """The names a package's docstring lists as its module map: lines "- ``name``  its job"."""
    return re.findall(r"^- ``(\w+)``", package.__doc__, flags=re.M)


def package_modules(root: Path) -> set[str]:
    return ({p.stem for p in root.glob("*.py") if p.stem != "__init__"}
            | {p.parent.name for p in root.glob("*/__init__.py")})


@pytest.mark.parametrize("package", [scpo, scpo.models, scpo.companion],
                         ids=["scpo", "scpo.models", "scpo.companion"])
def test_the_module_map_lists_every_module_once(package):
    listed = listed_modules(package)
    assert len(listed) == len(set(listed)), listed
    assert set(listed) == package_modules(Path(package.__file__).parent)


def concrete_model_classes() -> dict[str, set[str]]:
    """module -> the reward model classes it defines that can be built (every subclass of
    RewardModel or ConditionedRM that is not abstract)."""
    import importlib
    import inspect

    from scpo.models import ConditionedRM, RewardModel

    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "models").glob("*.py")):
        module = importlib.import_module(module_name(path))
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and obj.__module__ == module.__name__
                    and issubclass(obj, RewardModel | ConditionedRM)
                    and not inspect.isabstract(obj)):
                found.setdefault(module.__name__, set()).add(name)
    return found


def notebook_code(path: Path) -> ast.Module:
    """A notebook's code cells as one module (cell options and magics left out)."""
    cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", path.read_text(), flags=re.S)
    return ast.parse("\n".join(ln for c in cells for ln in c.splitlines()
                               if not ln.startswith((":", "%", "!"))))


def notebook_imports(path: Path) -> set[str]:
    """scpo modules and names a notebook's code cells import (as ``runtime_imports``)."""
    found = set()
    for node in ast.walk(notebook_code(path)):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_no_module_outside_the_models_package_names_a_tiers_class():
    """Reward models are made, loaded and asked through scpo.models: a module (or notebook)
    that imported a tier's class, or its module, would switch on the tier again."""
    concrete = concrete_model_classes()
    assert {"scpo.models.embedding", "scpo.models.hf", "scpo.models.partial",
            "scpo.models.conditioned"} <= set(concrete)  # the finder finds them
    forbidden = set(concrete) | {f"{m}.{c}" for m, cs in concrete.items() for c in cs} | {
        f"scpo.models.{c}" for cs in concrete.values() for c in cs}
    outside = {module_name(p): runtime_imports(p) for p in ROOT.rglob("*.py")
               if "models" not in p.relative_to(ROOT).parts}
    outside |= {f"notebooks/{p.name}": notebook_imports(p)
                for p in sorted((ROOT.parent / "notebooks").glob("*.md"))}
    assert "scpo.scoring" in outside and "notebooks/country.md" in outside
    named = {m: sorted(found & forbidden) for m, found in outside.items() if found & forbidden}
    assert named == {}
    import scpo.models

    assert not set(scpo.models.__all__) & {c for cs in concrete.values() for c in cs}


def resolves(dotted: str) -> bool:
    """``scpo.a.b.c`` names a module or an attribute of one."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


DOCS = [*sorted((ROOT.parent / "book").glob("*.md")),
        *sorted((ROOT.parent / "notebooks").glob("*.md")),
        ROOT.parent / "README.md", ROOT.parent / "DEVELOPERS.md"]


def named_in(text: str) -> set[str]:
    """The ``scpo.x.f`` a page sends readers to: in backticks (``{py:func}`` roles too), in
    autodoc directives (``.. autofunction:: scpo.x.f``), and in its code's imports
    (``from scpo.x import f`` gives ``scpo.x.f``)."""
    found = set(re.findall(r"`(scpo(?:\.[A-Za-z_]\w*)+)(?:\(\))?`", text))
    found |= set(re.findall(r"^\.\. auto\w+:: (scpo(?:\.\w+)+)", text, flags=re.M))
    for module, names in re.findall(r"^\s*from (scpo(?:\.\w+)*) import ([\w ,]+)", text,
                                    flags=re.M):
        found |= {f"{module}.{n.split(' as ')[0].strip()}" for n in names.split(",")}
    found |= set(re.findall(r"^\s*import (scpo(?:\.\w+)+)", text, flags=re.M))
    return found


def test_the_name_reader_finds_every_form():
    text = ("see `scpo.method.p_glo` and {py:func}`scpo.evaluate.accuracy()`\n"
            ".. autofunction:: scpo.companion.bon.pick\n"
            "from scpo.companion import plots, report as r\n"
            "    from scpo.config import load_preset\n"
            "import scpo.companion.steer\n")
    assert named_in(text) == {
        "scpo.method.p_glo", "scpo.evaluate.accuracy", "scpo.companion.bon.pick",
        "scpo.companion.plots", "scpo.companion.report", "scpo.config.load_preset",
        "scpo.companion.steer"}


def test_every_name_the_book_and_readme_give_is_in_the_package():
    """A rename (issue 30 renamed a dozen) must reach the prose: the book and the README send
    readers to `scpo.x.f`, and Sphinx renders a stale name as plain code, without a warning."""
    named = {(n, p.name) for p in DOCS for n in named_in(p.read_text())}
    assert len(named) > 40  # the pattern finds them
    assert resolves("scpo.method.p_glo") and not resolves("scpo.method.p_global")
    assert sorted(n for n in named if not resolves(n[0])) == []


def test_the_book_links_the_companion_where_it_is():
    """The book's pages, its notebooks' imports and the README name each companion module
    under ``scpo.companion``, where it is (an old ``scpo.bon`` would not resolve), and the
    book does link them."""
    moved = {p.stem for p in (ROOT / "companion").glob("*.py") if p.stem != "__init__"}
    named = {(n, p.name) for p in DOCS for n in named_in(p.read_text())}
    stale = sorted((n, f) for n, f in named if n.split(".")[1] in moved
                   or n.startswith("scpo.models.reward_fn"))
    assert stale == []
    linked = {n.split(".")[2] for n, _ in named if n.startswith("scpo.companion.")}
    assert {"bon", "curves", "plots", "report", "reward_fn"} <= linked
    assert all(resolves(n) for n, _ in named if n.startswith("scpo.companion."))


def config_building(tree: ast.Module) -> list[str]:
    """The calls in ``tree`` that build a Config by hand: ``Config(...)``, or an ``update``
    whose table names a config section."""
    import dataclasses

    from scpo.config import Config

    sections = {f.name for f in dataclasses.fields(Config)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        table = node.args[0] if node.args else None
        if name.split(".")[-1] == "Config" or (
                name.endswith(".update") and isinstance(table, ast.Dict)
                and {k.value for k in table.keys if isinstance(k, ast.Constant)} & sections):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:60]}")
    return found


def test_every_notebook_gets_its_config_from_the_package():
    """A notebook's parameters become a Config through ``scpo.config.from_params``, the
    function the ``scpo`` command uses, not through a copy of it in the notebook."""
    assert len(config_building(ast.parse(
        'cfg = load_preset(p)\ncfg.update({"run": {"seeds": [0]}})\nc = Config()'))) == 2
    found = {p.name: config_building(notebook_code(p))
             for p in sorted((ROOT.parent / "notebooks").glob("*.md"))}
    assert {n: f for n, f in found.items() if f} == {}
    uses = {p.name for p in (ROOT.parent / "notebooks").glob("*.md")
            if "scpo.config.from_params" in notebook_imports(p)}
    assert {"country.md", "curves.md", "goqa.md", "data.md"} <= uses

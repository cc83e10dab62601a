"""The package's shape: no module imports one that imports it back (at any depth)."""

import ast
import re
from pathlib import Path

import pytest

import scpo
import scpo.models

ROOT = Path(scpo.__file__).parent


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
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {m: {i for i in runtime_imports(p) if i in files and i != m and i != "scpo"}
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


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "scpo.models.hf_train" in graph["scpo.models.hf"]  # the graph sees function imports
    assert cycles(graph) == []


def listed_modules(package) -> list[str]:
    """The names a package's docstring lists as its module map: lines "- ``name``  its job"."""
    return re.findall(r"^- ``(\w+)``", package.__doc__, flags=re.M)


def package_modules(root: Path) -> set[str]:
    return ({p.stem for p in root.glob("*.py") if p.stem != "__init__"}
            | {p.parent.name for p in root.glob("*/__init__.py")})


@pytest.mark.parametrize("package", [scpo, scpo.models], ids=["scpo", "scpo.models"])
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


def notebook_imports(path: Path) -> set[str]:
    """scpo modules and names a notebook's code cells import (as ``runtime_imports``)."""
    cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", path.read_text(), flags=re.S)
    tree = ast.parse("\n".join(ln for c in cells for ln in c.splitlines()
                               if not ln.startswith((":", "%", "!"))))
    found = set()
    for node in ast.walk(tree):
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


def test_every_name_the_book_and_readme_give_is_in_the_package():
    """A rename (issue 30 renamed a dozen) must reach the prose: the book and the README send
    readers to `scpo.x.f`, and Sphinx renders a stale name as plain code, without a warning."""
    docs = [*sorted((ROOT.parent / "book").glob("*.md")),
            *sorted((ROOT.parent / "notebooks").glob("*.md")),
            ROOT.parent / "README.md", ROOT.parent / "DEVELOPERS.md"]
    named = {(m.group(1), p.name) for p in docs
             for m in re.finditer(r"`(scpo(?:\.[A-Za-z_]\w*)+)(?:\(\))?`", p.read_text())}
    assert len(named) > 40  # the pattern finds them
    assert resolves("scpo.method.p_glo") and not resolves("scpo.method.p_global")
    assert sorted(n for n in named if not resolves(n[0])) == []

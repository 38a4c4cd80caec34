"""The package layout keeps ARCHITECTURE.md's import direction, curate has no import cycles, and the dashboard's
copy of the run-folder layout equals curate.layout's."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from curate.layout import plain_layout

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("curate", "audit", "pipelines", "dashboards", "reports")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules a file imports, at any depth (imports inside functions count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules(package: str) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in (ROOT / package).rglob("*.py")}


def test_dashboard_layout_copy_matches_curate_layout():
    copy = json.loads((ROOT / "dashboards" / "run_layout.json").read_text(encoding="utf-8"))
    assert copy == json.loads(json.dumps(plain_layout())), "regenerate: python -m curate.layout > dashboards/run_layout.json"


@pytest.mark.parametrize("package,forbidden", [
    ("curate", ("audit", "pipelines", "dashboards", "reports")),
    ("audit", ("pipelines", "dashboards", "reports")),
    ("dashboards", ("curate", "audit", "pipelines", "reports")),
    ("reports", ("pipelines", "dashboards")),
])
def test_import_direction(package, forbidden):
    offenders = sorted(f"{mod} imports {imp}" for mod, imports in _modules(package).items() for imp in imports
                       if imp.split(".")[0] in forbidden)
    assert not offenders


def test_only_the_cli_imports_pipelines_from_outside():
    for package in ("curate", "audit", "dashboards", "reports"):
        assert not [m for m, imps in _modules(package).items() if any(i.startswith("pipelines") for i in imps)]


def test_audit_uses_only_curates_public_pieces():
    """audit -> curate only through the table schemas/IO, the layout and CLIP loading: never a stage's internals."""
    allowed = ("curate.schemas", "curate.tables", "curate.layout", "curate.versions", "curate.score.clip_model",
               "curate.selection", "curate.parts",
               "curate.score.stage.default_pretrained")
    offenders = sorted(f"{mod} imports {imp}" for mod, imports in _modules("audit").items() for imp in imports
                       if imp.startswith("curate.") and not imp.startswith(allowed) and imp not in
                       {"curate.score", "curate"})
    assert not offenders


def test_curate_has_no_import_cycles():
    modules = _modules("curate")
    graph = {mod: {i for i in imps if i in modules} for mod, imps in modules.items()}
    # an import of a package's attribute ("curate.filter.stage.FilterConfig") counts as its module
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if seen.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 2

    for mod in sorted(graph):
        if mod not in seen:
            visit(mod)


def test_curate_is_grouped_by_stage():
    top = sorted(p.name for p in (ROOT / "curate").iterdir() if not p.name.startswith(("_", ".")))
    stages = {"sources", "net", "download", "dedup", "score", "filter", "export"}
    assert stages <= set(top)
    loose = [name for name in top if name.endswith(".py")]
    assert len(loose) <= 8, f"curate/ top level should hold only the shared pieces, has {loose}"

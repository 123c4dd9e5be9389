"""The package layout's import rules, read from the source (ast), so a new import that breaks them fails."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "egocache"


def imports_of(path: Path) -> set[str]:
    """Every egocache module a source file imports (absolute imports; the project uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("egocache")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("egocache"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def modules() -> dict[str, set[str]]:
    """{path relative to the package: imported egocache modules} for every module of the package."""
    return {str(p.relative_to(PACKAGE)): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def importers(prefix: str) -> set[str]:
    """Modules outside `prefix`'s own package that import it."""
    own = prefix.removeprefix("egocache.").replace(".", "/")
    return {m for m, imp in modules().items()
            if not m.startswith(own + "/") and any(i == prefix or i.startswith(prefix + ".") for i in imp)}


def test_only_the_cli_and_the_demo_import_the_synthetic_world():
    assert importers("egocache.synth") <= {"cli.py", "demo.py"}


def test_students_never_import_teachers_or_extraction():
    bad = {m for m in importers("egocache.pipeline") if m.startswith("student/")}
    assert not bad, f"student/ must read the cache only, not the pipeline: {bad}"


def test_core_imports_no_part():
    parts = ("egocache.pipeline", "egocache.cache", "egocache.student", "egocache.report", "egocache.synth",
             "egocache.cli", "egocache.demo")
    bad = {m: sorted(i for i in imp if i.startswith(parts)) for m, imp in modules().items()
           if m.startswith("core/") and any(i.startswith(parts) for i in imp)}
    assert not bad, bad


def test_library_never_imports_the_cli():
    assert importers("egocache.cli") <= {"__main__.py"}


def test_only_the_cli_imports_deploy():
    assert importers("egocache.deploy") <= {"cli.py"}, "deploy/ reads the pipeline and the student; no part reads it"


def test_no_test_imports_another_test_file():
    tests = Path(__file__).resolve().parent
    names = {p.stem for p in tests.glob("test_*.py")}
    bad = {p.name: sorted(imports & names) for p in tests.glob("*.py")
           if (imports := {n.module for n in ast.walk(ast.parse(p.read_text()))
                           if isinstance(n, ast.ImportFrom) and n.module} |
                          {a.name for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Import)
                           for a in n.names}) & names}
    assert not bad, f"shared helpers belong in helper modules (cache_factory, extract_data, files): {bad}"

"""The layers stay as README draws them: imports run one way, verbs -> stages -> formats/io ->
srgan/, with no import cycle between any two files; srgan/ is pure PyTorch; a verb never
imports another verb (the quickstart runs them all, through their library functions).

    python tests/test_layering.py      prints the structure's figures (README's Layout section)
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERBS = ("train", "tune", "promote", "upscale", "evaluate", "rate", "prepare", "export", "register", "quickstart")
# The floors, lowest first: a module may import its own floor's package and the floors below.
# Packages on one floor are peers and stay apart (data never imports tracking, nor back).
FLOORS: tuple[tuple[str, ...], ...] = (
    ("srgan",),
    ("pipeline.formats",),
    ("pipeline.errors",),
    ("pipeline.io",),
    ("pipeline.cli", "pipeline.config", "pipeline.cluster"),
    ("pipeline.data", "pipeline.tracking"),
    ("pipeline.models",),
    ("pipeline.scoring",),
    ("pipeline.training", "pipeline.upscaling"),
    tuple(f"pipeline.{v}" for v in VERBS if v != "quickstart") + ("pipeline.samples", "pipeline.serving"),
    ("pipeline.quickstart", "pipeline"),
)
PLUMBING = {"pipeline.errors", "pipeline.cli", "pipeline.config", "pipeline.cluster"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [*sorted((ROOT / "srgan").rglob("*.py")), *sorted((ROOT / "pipeline").rglob("*.py"))]
    return {module_name(p): p for p in files}


def imported_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, at any depth of the file (function-level and
    TYPE_CHECKING imports too): `from a.b import c` names a.b.c when that is a module, else a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        else:
            continue
        found.update(n for n in names if n in known)
    return found


def import_graph() -> dict[str, set[str]]:
    known = project_modules()
    return {name: imported_modules(path, known) - {name} for name, path in known.items()}


def floor_of(module: str) -> tuple[int, str]:
    """(floor, package) of a module: the longest FLOORS entry it falls under."""
    best = (-1, "")
    for level, packages in enumerate(FLOORS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and len(package) > len(best[1]):
                best = (level, package)
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def against_the_floors(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs up a floor, or across to a peer package on the same floor."""
    bad = []
    for a, targets in sorted(graph.items()):
        fa, pa = floor_of(a)
        for b in sorted(targets):
            fb, pb = floor_of(b)
            if b.startswith(a + "."):  # a package's __init__ handing on its own modules' names
                continue
            if fb > fa or (fb == fa and pa != pb and pa != "pipeline"):
                bad.append(f"{a} -> {b} (floor {fa} {pa} imports floor {fb} {pb})")
    return bad


def figures() -> dict:
    graph = import_graph()
    top = sorted(
        m
        for m in graph
        if m.startswith("pipeline.") and m.count(".") == 1 and not (ROOT / m.replace(".", "/")).is_dir()
    )
    packages = sorted(m for m in graph if m.startswith("pipeline.") and (ROOT / m.replace(".", "/")).is_dir())
    return {
        "modules": len(graph),
        "pipeline_top_level_modules": len(top),
        "pipeline_stage_packages": len(packages),
        "floors": len(FLOORS),
        "imports": sum(len(t) for t in graph.values()),
        "cycles": len(cycles(graph)),
        "imports_against_the_floors": len(against_the_floors(graph)),
    }


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_run_down_the_floors():
    bad = against_the_floors(import_graph())
    assert not bad, "imports against the floors:\n" + "\n".join(bad)


def test_every_module_has_a_floor():
    lost = sorted(m for m in import_graph() if floor_of(m)[0] < 0)
    assert not lost, f"modules on no floor of tests/test_layering.py FLOORS: {lost}"


def test_the_codecs_import_nothing_of_pipeline_but_themselves():
    graph = import_graph()
    for module in sorted(m for m in graph if m.startswith("pipeline.formats")):
        outside = sorted(t for t in graph[module] if t.startswith("pipeline") and not t.startswith("pipeline.formats"))
        assert not outside, f"{module} imports {outside}"


def test_srgan_imports_without_orchestration_packages():
    code = (
        "import sys, srgan, srgan.generator, srgan.discriminator, srgan.losses, srgan.degrade, srgan.resize, "
        "srgan.metrics, srgan.tiling, srgan.train_step, srgan.weights, srgan.precision, srgan.errors\n"
        "bad = sorted(m for m in ('ray', 'mlflow', 'boto3', 'botocore', 'pyarrow', 'pipeline') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_verb_imports_another_verb():
    graph = import_graph()
    verbs = {f"pipeline.{v}" for v in VERBS}
    for verb in sorted(verbs - {"pipeline.quickstart"}):
        offending = sorted(graph[verb] & (verbs - {verb}))
        assert not offending, f"{verb} imports verb module(s) {offending}; move the shared piece into a stage"
    # What the quickstart uses of the verbs are their library functions, never main(argv).
    tree = ast.parse((ROOT / "pipeline" / "quickstart.py").read_text())
    calls = {
        node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert "main" not in calls


def test_stage_packages_say_what_they_own_and_may_import():
    for init in sorted((ROOT / "pipeline").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc and len(doc.split()) >= 25, f"{init.relative_to(ROOT)}: say what it owns and may import"


if __name__ == "__main__":
    print(json.dumps(figures()))

"""The layers stay as README draws them: srgan/ is pure PyTorch and never imports pipeline/;
a verb (a `python -m pipeline.<verb>` command) never imports another verb, except the
quickstart, which runs them all; no pipeline module grows past ~350 lines."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERBS = {"train", "tune", "promote", "upscale", "evaluate", "rate", "prepare", "export", "register", "quickstart"}
MAX_LINES = 500  # after ruff format; the stage packages hold the real structure


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_srgan_imports_without_orchestration_packages():
    code = (
        "import sys, srgan.generator, srgan.discriminator, srgan.losses, srgan.degrade, srgan.resize, "
        "srgan.metrics, srgan.tiling, srgan.train_step, srgan.weights, srgan.precision, srgan.errors\n"
        "bad = sorted(m for m in ('ray', 'mlflow', 'boto3', 'botocore', 'pyarrow', 'pipeline') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_srgan_never_imports_pipeline():
    for path in sorted((ROOT / "srgan").glob("*.py")):
        offending = sorted(m for m in imported_modules(path) if m == "pipeline" or m.startswith("pipeline."))
        assert not offending, f"{path.relative_to(ROOT)} imports {offending}"


def test_no_verb_imports_another_verb():
    for verb in sorted(VERBS - {"quickstart"}):
        path = ROOT / "pipeline" / f"{verb}.py"
        others = {f"pipeline.{v}" for v in VERBS - {verb}}
        offending = sorted(imported_modules(path) & others)
        assert not offending, (
            f"pipeline/{verb}.py imports verb module(s) {offending}; move the shared piece into a module no CLI owns"
        )
    # What the quickstart uses of the verbs are their library functions, never main(argv).
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse((ROOT / "pipeline" / "quickstart.py").read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert "main" not in calls


def test_pipeline_modules_stay_small():
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES}): split it by concern"

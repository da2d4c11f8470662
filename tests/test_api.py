"""The public API stays as docs/api.md shows it: every name in `srgan.__all__` and
`pipeline.__all__` resolves, `import pipeline` loads neither Ray nor MLflow, and each python
example on the page runs, in a fresh interpreter in an empty folder (except those whose first
line says they are not run here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"
NOT_RUN = "not run by tests/test_api.py"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def examples() -> list[tuple[int, str]]:
    """(line number, code) of each python block of docs/api.md."""
    text = PAGE.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def python_env() -> dict[str, str]:
    # The repository on the path, as `pip install -e .` would put it.
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=python_env(), capture_output=True, text=True, timeout=120
    )


RUN = [(line, code) for line, code in examples() if NOT_RUN not in code.splitlines()[0]]


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict[int, tuple[int, str]]:
    """{line: (exit code, stderr)} of every run example, started together (each one mostly
    waits on imports, so the page takes about as long as its slowest example)."""
    started = {}
    for line, code in RUN:
        cwd = tmp_path_factory.mktemp(f"api_md_{line}")
        started[line] = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=cwd,
            env=python_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    try:
        for line, process in started.items():
            _, stderr = process.communicate(timeout=120)
            results[line] = (process.returncode, stderr)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def test_the_page_has_examples_for_both_packages():
    assert any("from srgan import" in code for _, code in RUN)
    assert any("from pipeline import" in code for _, code in RUN)
    skipped = [code for _, code in examples() if NOT_RUN in code]
    assert all(NOT_RUN in code.splitlines()[0] for code in skipped), "say 'not run by ...' on a block's first line"


@pytest.mark.parametrize("line", [line for line, _ in RUN], ids=[f"api.md:{line}" for line, _ in RUN])
def test_example_runs(line: int, ran: dict[int, tuple[int, str]]):
    code, stderr = ran[line]
    assert code == 0, f"the example at docs/api.md line {line} failed (exit {code}):\n{stderr}"


def test_every_public_name_resolves(tmp_path: Path):
    code = (
        "import srgan, pipeline\n"
        "for package in (srgan, pipeline):\n"
        "    for name in package.__all__:\n"
        "        assert getattr(package, name) is not None, (package.__name__, name)\n"
        "    assert set(package.__all__) <= set(dir(package)), package.__name__\n"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr


def test_import_pipeline_loads_neither_ray_nor_mlflow(tmp_path: Path):
    code = (
        "import sys, pipeline, pipeline.errors\n"
        "loaded = sorted(m for m in ('ray', 'mlflow') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
        "from pipeline import UpscaleJob\n"  # a name loads its own module, and still no Ray
        "assert 'ray' not in sys.modules\n"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr


def test_an_unknown_name_is_an_attribute_error():
    import pipeline

    with pytest.raises(AttributeError, match="no_such_verb"):
        pipeline.no_such_verb  # noqa: B018


def test_no_public_name_hides_a_module_of_its_package():
    """`srgan.niqe` the module must stay reachable as `import srgan.niqe as m`, not the function."""
    import pkgutil

    import pipeline
    import srgan

    for package in (srgan, pipeline):
        modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        assert not modules & set(package.__all__), sorted(modules & set(package.__all__))

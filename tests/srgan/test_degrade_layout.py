"""srgan/degrade/ stays a package of plain modules: no import cycle, no module imports the package's own
__init__, nothing under srgan/ imports orchestration packages, and every name it offered before the split
is still offered by `srgan.degrade`."""

import ast
from pathlib import Path

import srgan.degrade

SRGAN = Path(__file__).resolve().parents[2] / "srgan"
FORBIDDEN = ("pipeline", "ray", "mlflow", "boto3", "botocore", "pyarrow")
# What `from srgan.degrade import X` and `from srgan.realistic import X` offered before srgan/degrade/ was a package.
BEFORE_THE_SPLIT = [
    "Bicubic", "CHUNK", "CPU_PIECE_PIXELS", "DEGRADATIONS", "Degradation", "KERNEL_TYPES", "MRI",
    "RESIZE_DIRECTIONS", "RESIZE_MODES", "Range", "Realistic", "RealisticPlan", "RoundPlan", "Satellite",
    "add_noise", "blur", "build_degradation", "filter_per_sample", "gaussian_kernels", "jpeg", "mixed_kernels",
    "resize", "sinc_kernels", "usm_sharp",
]  # fmt: skip


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (relative imports as written, with dots)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def test_degrade_modules_import_siblings_without_cycles():
    graph = {}
    for path in sorted((SRGAN / "degrade").glob("*.py")):
        imported = _imports(path)
        assert not any(m.startswith(".") for m in imported), f"{path.name}: use absolute srgan.degrade.<module> imports"
        if path.name != "__init__.py":
            assert "srgan.degrade" not in imported, f"{path.name} imports the package; import the sibling module"
            graph[path.stem] = {m.rsplit(".", 1)[1] for m in imported if m.startswith("srgan.degrade.")}
    done: set[str] = set()

    def visit(module: str, trail: tuple[str, ...]) -> None:
        assert module not in trail, f"import cycle: {' -> '.join((*trail, module))}"
        if module not in done:
            for sibling in graph[module]:
                visit(sibling, (*trail, module))
            done.add(module)

    for module in graph:
        visit(module, ())


def test_srgan_never_imports_orchestration_packages():
    for path in sorted(SRGAN.rglob("*.py")):
        bad = sorted(m for m in _imports(path) if m.split(".")[0] in FORBIDDEN)
        assert not bad, f"{path.relative_to(SRGAN.parent)} imports {bad}"


def test_every_name_from_before_the_split_is_still_offered():
    missing = [name for name in BEFORE_THE_SPLIT if not hasattr(srgan.degrade, name)]
    assert not missing
    assert set(BEFORE_THE_SPLIT) <= set(srgan.degrade.__all__)
    assert callable(srgan.degrade.resize) and callable(srgan.degrade.jpeg)  # functions, not same-named modules


def test_configs_with_the_flat_round_keys_still_build_the_same_degradation():
    """Configs written before the rounds became one dataclass name round two's keys with a 2."""
    from srgan.degrade import build_degradation

    flat = build_degradation("realistic", 4, noise_range=[2, 20], noise_range2=[1, 10], second_blur_prob=0.5)
    nested = build_degradation(
        "realistic", 4, first={"noise_range": [2, 20]}, second={"noise_range": [1, 10], "blur_prob": 0.5}
    )
    assert flat == nested
    assert flat.first.noise_range == (2, 20) and flat.second.noise_range == (1, 10) and flat.second.blur_prob == 0.5

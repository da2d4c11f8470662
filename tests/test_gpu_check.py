"""benchmarks/gpu_check.sh, the one-command GPU check, in its reduced CPU form: one JSON line of
finite figures, bf16 run or excused, and nothing of pipeline/, Ray, MLflow or boto3 imported."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SET5 = ROOT.parent / "shared" / "data" / "Set5"

# Put first on sys.path, this makes any import of these packages fail, as on a torch-only machine.
BLOCKER = """
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pipeline", "ray", "mlflow", "boto3"):
            raise ModuleNotFoundError(f"{name} is not on a torch-only machine", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
"""


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture
def train_folder(tmp_path):
    g = torch.Generator().manual_seed(0)
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(3):  # smooth pictures, larger than the quick form's 48 px patches
        small = torch.rand(3, 8, 10, generator=g)
        picture = torch.nn.functional.interpolate(small[None], size=(64, 80), mode="bilinear")[0]
        Image.fromarray((picture.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"{i}.png")
    return folder


@pytest.mark.slow
def test_quick_form_prints_one_json_line_of_finite_figures_without_pipeline(tmp_path, train_folder):
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCKER)
    set5 = SET5 if SET5.is_dir() else tmp_path / "no_set5"  # absent: the Set5 figure must be null, with a reason
    args = ["--quick", "--device", "cpu", "--train", str(train_folder), "--set5", str(set5), "--psnr-seconds", "2"]
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path / "block")}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # progress goes to stderr
    report = json.loads(lines[0])

    for key in (
        "device",
        "torch_version",
        "train_steps_per_s_fp32",
        "train_steps_per_s_bf16_cl",
        "bf16_cl_vs_fp32_ratio",
        "peak_fraction_fp32",
        "peak_fraction_bf16",
        "upscale_gpx_per_s_fp32",
        "upscale_gpx_per_s_bf16",
        "psnr_phase_seconds",
        "psnr_phase_steps",
        "set5_y_psnr",
        "set5_bicubic_y_psnr",
        "set5_gain_db",
        "wall_s",
    ):
        assert key in report, key
    assert report["device_type"] == "cpu" and report["quick"] is True
    for key in ("model_gflop_per_step", "train_steps_per_s_fp32", "achieved_tflops_fp32", "wall_s"):
        assert _positive(report[key]), (key, report[key])
    for key in ("upscale_gpx_per_s_fp32", "upscale_whole_gpx_per_s_fp32"):
        assert _positive(report[key]), (key, report[key])
    # bf16 autocast runs on CPUs: the bf16 figures are there, or null with the reason why.
    if report["train_steps_per_s_bf16_cl"] is None:
        assert report["train_bf16_reason"] and report["bf16_cl_vs_fp32_ratio"] is None
    else:
        assert report["train_bf16_reason"] is None
        assert _positive(report["train_steps_per_s_bf16_cl"]) and _positive(report["bf16_cl_vs_fp32_ratio"])
    assert _positive(report["upscale_gpx_per_s_bf16"]) or report["upscale_bf16_reason"]
    # No peak is known for a CPU: the fractions are null, with the reason.
    assert report["peak_fraction_fp32"] is None and report["peak_fraction_bf16"] is None and report["peak_reason"]

    assert report["train_dir"] == str(train_folder) and report["train_images"] == 3
    assert report["psnr_phase_steps"] > 0 and 2.0 <= report["psnr_phase_seconds"] < 10
    assert math.isfinite(report["psnr_phase_final_l1"])
    if SET5.is_dir():  # the project's protocol: bicubic x4 gives the published figure
        assert report["set5_bicubic_y_psnr"] == pytest.approx(28.43, abs=0.02)
        assert math.isfinite(report["set5_y_psnr"])
        assert report["set5_gain_db"] == pytest.approx(report["set5_y_psnr"] - report["set5_bicubic_y_psnr"], abs=2e-3)
    else:
        assert report["set5_y_psnr"] is None and report["set5_reason"]
    assert report["forbidden_modules"] == []


def test_bmp_is_read_without_pillow_as_pillow_reads_it(tmp_path):
    gpu_check = _gpu_check_module()
    g = torch.Generator().manual_seed(1)
    pixels = (torch.rand(7, 13, 3, generator=g) * 255).byte()  # odd width: rows padded to 4 bytes
    Image.fromarray(pixels.numpy()).save(tmp_path / "a.bmp")
    assert torch.equal(gpu_check.read_bmp(tmp_path / "a.bmp"), pixels.permute(2, 0, 1))
    assert torch.equal(gpu_check.read_rgb(tmp_path / "a.bmp"), pixels.permute(2, 0, 1))


def test_peak_table_knows_the_lent_gpus_and_not_others():
    peak = _gpu_check_module().peak_tflops
    assert peak("NVIDIA H100 80GB HBM3") == (989.0, 494.7, 67.0)  # SXM
    assert peak("NVIDIA H200") == peak("NVIDIA H100 80GB HBM3")
    assert peak("NVIDIA H100 PCIe")[0] == 756.0
    assert peak("NVIDIA A100-SXM4-80GB")[0] == 312.0 and peak("NVIDIA A100-SXM4-80GB")[2] == 19.5
    assert peak("NVIDIA GeForce RTX 4090") is None and peak("cpu (2 cores, 2 torch threads)") is None

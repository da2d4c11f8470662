"""The one-command GPU check (docs/benchmarks.md, "GPU check"): SRResNet x4 training steps/s
in fp32 and in bf16 autocast with channels_last and their share of the device's peak,
upscaling Gpx/s, and a fixed-budget PSNR-phase run scored on Set5 (Y-PSNR, crop 4).

    bash benchmarks/gpu_check.sh [--device auto|cuda|cpu] [--quick] [--train DIR] [--set5 DIR]

Needs torch only: it imports srgan from the repo and nothing of pipeline/, Ray or MLflow
(Pillow reads images where present; BMP, which Set5 is, is read without it). Prints one JSON
line on stdout with flat keys; progress goes to stderr. A part that cannot run gives null and
a `*_reason` key instead of failing the check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from srgan.fast import inference_form  # noqa: E402
from srgan.generator import GeneratorSpec, build_generator  # noqa: E402
from srgan.losses import PixelLoss  # noqa: E402
from srgan.metrics import psnr_y, quantize  # noqa: E402
from srgan.precision import resolve_precision  # noqa: E402
from srgan.resize import imresize  # noqa: E402
from srgan.tiling import upscale_tiled  # noqa: E402
from srgan.train_step import pretrain_step  # noqa: E402

SCALE = 4
PSNR_MARGIN_S = 40.0  # loading the training images and scoring Set5, with room to spare
FORBIDDEN = ("pipeline", "ray", "mlflow", "boto3")  # what a torch-only machine lacks
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# Dense peak TFLOP/s by a part of torch.cuda.get_device_name, most specific first:
# (bf16 tensor core, tf32 tensor core, fp32 non-tensor), from the vendors' data sheets.
PEAKS = (
    ("H100 PCIe", (756.0, 378.0, 51.0)),
    ("H100", (989.0, 494.7, 67.0)),  # SXM (the "80GB HBM3" part)
    ("H200", (989.0, 494.7, 67.0)),
    ("A100", (312.0, 156.0, 19.5)),
)
# Where the data is found without --train / --set5: the shared data beside this checkout, or a
# copy under build/gpu_data (ignored by git), which is what travels to a lent device machine.
DATA_ROOTS = (
    Path("/work/shared/data"),
    REPO.parent / "shared" / "data",
    REPO / "shared" / "data",
    REPO / "build" / "gpu_data",
)
TRAIN_DIRS = tuple(root / "train" for root in DATA_ROOTS)
SET5_DIRS = tuple(root / "Set5" for root in DATA_ROOTS)


@dataclass(frozen=True)
class Sizes:
    """What each part runs: the paper's x4 configuration, or the reduced CPU form (--quick)."""

    blocks: int
    features: int
    batch: int
    hr_patch: int
    warmup: int
    seconds: float  # timed per case and repeat
    repeats: int
    upscale_input: int
    upscale_tile: int
    psnr_seconds: float


FULL = Sizes(16, 64, 16, 96, 20, 2.5, 3, 512, 256, 300.0)
QUICK = Sizes(2, 16, 4, 48, 2, 0.3, 2, 48, 32, 3.0)


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def peak_tflops(name: str) -> tuple[float, float, float] | None:
    """(bf16, tf32, fp32) dense peaks of the device called `name`, or None when PEAKS does not know it."""
    return next((peak for key, peak in PEAKS if key in name), None)


# --- images ---------------------------------------------------------------------------------


def read_bmp(path: Path) -> torch.Tensor:
    """An uncompressed 24- or 32-bit BMP as (3, H, W) uint8 RGB, without Pillow."""
    data = path.read_bytes()
    if data[:2] != b"BM":
        raise ValueError(f"{path}: not a BMP file")
    offset = int.from_bytes(data[10:14], "little")
    width = int.from_bytes(data[18:22], "little", signed=True)
    height = int.from_bytes(data[22:26], "little", signed=True)
    bits = int.from_bytes(data[28:30], "little")
    compression = int.from_bytes(data[30:34], "little")
    if bits not in (24, 32) or compression not in (0, 3) or (compression == 3 and bits != 32):
        raise ValueError(
            f"{path}: only uncompressed 24/32-bit BMP is read without Pillow (got {bits} bit, {compression})"
        )
    channels, rows = bits // 8, abs(height)
    stride = (bits * width + 31) // 32 * 4
    raw = torch.frombuffer(bytearray(data[offset : offset + stride * rows]), dtype=torch.uint8)
    pixels = raw.view(rows, stride)[:, : width * channels].reshape(rows, width, channels)[..., [2, 1, 0]]
    if height > 0:  # stored bottom row first
        pixels = pixels.flip(0)
    return pixels.permute(2, 0, 1).contiguous()


def read_rgb(path: Path) -> torch.Tensor:
    """An image file as (3, H, W) uint8 RGB: Pillow where present, else BMP by hand or torchvision."""
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        with Image.open(path) as im:
            im = im.convert("RGB")
            pixels = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            return pixels.view(im.height, im.width, 3).permute(2, 0, 1).contiguous()
    if path.suffix.lower() == ".bmp":
        return read_bmp(path)
    from torchvision.io import ImageReadMode, decode_image, read_file

    return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def pick_folder(given: str | None, defaults: tuple[Path, ...]) -> tuple[Path | None, str | None]:
    """(folder, None) for the given or first existing default folder holding images, else (None, reason)."""
    candidates = [Path(given)] if given else list(defaults)
    for folder in candidates:
        if folder.is_dir() and image_files(folder):
            return folder, None
    return None, f"no images in {', '.join(map(str, candidates))} (pass the folder with its option)"


# --- (a) training steps/s ---------------------------------------------------------------------


def generator_spec(sizes: Sizes) -> GeneratorSpec:
    return GeneratorSpec(scale=SCALE, num_blocks=sizes.blocks, num_features=sizes.features)


def forward_flops(spec: GeneratorSpec, lr_size: int) -> int:
    """FLOPs of one forward pass of one (3, lr_size, lr_size) image, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_generator(spec)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, lr_size, lr_size))
    return counter.get_total_flops()


def training_setup(spec: GeneratorSpec, sizes: Sizes, device: torch.device, channels_last: bool):
    """A fresh generator (one seed for every case), its Adam, and one fixed batch on `device`."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_generator(spec).to(device, memory_format=fmt).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99))
    lr_size = sizes.hr_patch // SCALE
    hr = torch.rand(sizes.batch, 3, sizes.hr_patch, sizes.hr_patch, device=device)
    lr = imresize(hr, 1.0 / SCALE).clamp(0, 1)
    assert lr.shape[-1] == lr_size
    return model, optimizer, lr.contiguous(memory_format=fmt), hr.contiguous(memory_format=fmt)


def steps_per_second(case, sizes: Sizes, device: torch.device, precision: str, pixel: PixelLoss) -> float:
    """Steps/s of the project's PSNR step (srgan.train_step.pretrain_step) on one case, timed
    over at least `sizes.seconds` after its warm-up (each step ends in a sync: the loss's .item())."""
    model, optimizer, lr, hr = case
    for _ in range(sizes.warmup):
        pretrain_step(model, optimizer, lr, hr, pixel, precision)
    sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < sizes.seconds or steps < 3:
        pretrain_step(model, optimizer, lr, hr, pixel, precision)
        steps += 1
    sync(device)
    return steps / (time.perf_counter() - start)


def measure_training(sizes: Sizes, device: torch.device) -> dict:
    spec = generator_spec(sizes)
    pixel = PixelLoss("l1")
    lr_size = sizes.hr_patch // SCALE
    flops = 3 * forward_flops(spec, lr_size) * sizes.batch  # forward + backward ~ 3 forwards
    cases = {"fp32": (training_setup(spec, sizes, device, False), "fp32")}
    out: dict = {"train_bf16_reason": None}
    try:
        resolve_precision("bf16", device)  # refuses a GPU without bf16
        cases["bf16_cl"] = (training_setup(spec, sizes, device, True), "bf16")
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        out["train_bf16_reason"] = f"bf16 unavailable: {exc}"
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for repeat in range(sizes.repeats):  # interleaved: fp32 bf16 fp32 bf16 ...
        for name, (case, precision) in list(cases.items()):
            try:
                rates[name].append(steps_per_second(case, sizes, device, precision, pixel))
            except Exception as exc:  # noqa: BLE001
                if name == "fp32":
                    raise
                out["train_bf16_reason"] = f"bf16 training step failed: {type(exc).__name__}: {exc}"
                del cases[name], rates[name]
                continue
            log(f"train {name} repeat {repeat + 1}/{sizes.repeats}: {rates[name][-1]:.2f} steps/s")
    fp32 = statistics.median(rates["fp32"])
    bf16 = statistics.median(rates["bf16_cl"]) if rates.get("bf16_cl") else None
    peaks = peak_tflops(device_name(device)) if device.type == "cuda" else None
    tf32 = device.type == "cuda" and torch.backends.cudnn.allow_tf32  # cuDNN convs in fp32 run as TF32 by default
    peak_fp32 = (peaks[1] if tf32 else peaks[2]) if peaks else None
    peak_bf16 = peaks[0] if peaks else None
    achieved_fp32, achieved_bf16 = flops * fp32 / 1e12, (flops * bf16 / 1e12 if bf16 else None)
    out.update(
        train_blocks=sizes.blocks,
        train_features=sizes.features,
        train_batch=sizes.batch,
        train_hr_patch=sizes.hr_patch,
        train_loss="l1",
        train_optimizer="adam",
        model_gflop_per_step=round(flops / 1e9, 3),
        train_steps_per_s_fp32=round(fp32, 3),
        train_steps_per_s_bf16_cl=round(bf16, 3) if bf16 else None,
        bf16_cl_vs_fp32_ratio=round(bf16 / fp32, 3) if bf16 else None,
        achieved_tflops_fp32=round(achieved_fp32, 4),
        achieved_tflops_bf16=round(achieved_bf16, 4) if achieved_bf16 else None,
        peak_tflops_fp32=peak_fp32,
        peak_fp32_basis=("tf32" if tf32 else "fp32") if peaks else None,
        peak_tflops_bf16=peak_bf16,
        peak_fraction_fp32=round(achieved_fp32 / peak_fp32, 4) if peak_fp32 else None,
        peak_fraction_bf16=round(achieved_bf16 / peak_bf16, 4) if peak_bf16 and achieved_bf16 else None,
        peak_reason=None if peaks else f"no peak known for {device_name(device)!r}",
    )
    return out


# --- (b) upscaling Gpx/s ----------------------------------------------------------------------


def measure_upscaling(sizes: Sizes, device: torch.device) -> dict:
    """Output Gpx/s of the project's inference path (srgan.fast.inference_form, then
    srgan.tiling.upscale_tiled at the upscale job's tile size, and whole-image) on one image."""
    torch.manual_seed(0)
    model = build_generator(generator_spec(sizes)).to(device).eval()
    image = torch.rand(1, 3, sizes.upscale_input, sizes.upscale_input, device=device)
    gpx = (sizes.upscale_input * SCALE) ** 2 / 1e9
    out: dict = {"upscale_input": sizes.upscale_input, "upscale_tile": sizes.upscale_tile, "upscale_bf16_reason": None}
    forms = {"fp32": inference_form(model, "fp32")}
    try:
        forms["bf16"] = inference_form(model, "bf16")
    except Exception as exc:  # noqa: BLE001
        out["upscale_bf16_reason"] = f"{type(exc).__name__}: {exc}"
    rates: dict[str, list[float]] = {}
    with torch.inference_mode():
        for repeat in range(sizes.repeats):
            for precision, form in list(forms.items()):
                for kind, tile in (("tiled", sizes.upscale_tile), ("whole", 0)):
                    key = f"{kind}_{precision}"
                    try:
                        for _ in range(1 if rates.get(key) else 2):  # warm-up (cuDNN picks its kernels)
                            upscale_tiled(form, image, SCALE, tile=tile, out_device=device)
                        sync(device)
                        runs, start = 0, time.perf_counter()
                        while time.perf_counter() - start < sizes.seconds or runs < 2:
                            upscale_tiled(form, image, SCALE, tile=tile, out_device=device)
                            runs += 1
                        sync(device)
                    except Exception as exc:  # noqa: BLE001
                        if precision == "fp32":
                            raise
                        out["upscale_bf16_reason"] = f"{type(exc).__name__}: {exc}"
                        forms.pop(precision, None)
                        break
                    rates.setdefault(key, []).append(gpx * runs / (time.perf_counter() - start))
                    log(f"upscale {key} repeat {repeat + 1}/{sizes.repeats}: {rates[key][-1]:.4f} Gpx/s")

    def median(key: str) -> float | None:
        return round(statistics.median(rates[key]), 5) if rates.get(key) else None

    out.update(
        upscale_gpx_per_s_fp32=median("tiled_fp32"),
        upscale_gpx_per_s_bf16=median("tiled_bf16"),
        upscale_whole_gpx_per_s_fp32=median("whole_fp32"),
        upscale_whole_gpx_per_s_bf16=median("whole_bf16"),
    )
    return out


# --- (c) PSNR phase and Set5 ------------------------------------------------------------------


def load_training_images(folder: Path, min_side: int, device: torch.device) -> list[torch.Tensor]:
    images = [read_rgb(p) for p in image_files(folder)]
    return [im.to(device) for im in images if min(im.shape[-2:]) >= min_side]


def random_batch(
    images: list[torch.Tensor], batch: int, size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) of `batch` random `size` px HR crops with random flips and transposes; LR by
    MATLAB bicubic x1/4, rounded to 8 bit as a stored LR file would be. Float in [0, 1]."""
    crops = []
    for u in torch.rand(batch, 6, generator=gen).tolist():  # one draw a batch: image, top, left, 3 flips
        im = images[int(u[0] * len(images))]
        top, left = int(u[1] * (im.shape[-2] - size + 1)), int(u[2] * (im.shape[-1] - size + 1))
        crop = im[:, top : top + size, left : left + size]
        crop = crop.flip(-1) if u[3] < 0.5 else crop
        crop = crop.flip(-2) if u[4] < 0.5 else crop
        crops.append(crop.transpose(-1, -2) if u[5] < 0.5 else crop)
    hr = torch.stack(crops).float() / 255.0
    return quantize(imresize(hr, 1.0 / SCALE)), hr


def train_psnr_phase(
    images: list[torch.Tensor], sizes: Sizes, seconds: float, device: torch.device, precision: str
) -> tuple[torch.nn.Module, int, float, float]:
    """SRResNet x4 trained with L1 and Adam (2e-4, cosine to 0 over the wall budget) for
    `seconds`: (model, steps, seconds spent, last loss)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if precision == "bf16" else torch.contiguous_format
    model = build_generator(generator_spec(sizes)).to(device, memory_format=fmt).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.99))
    pixel, gen = PixelLoss("l1"), torch.Generator().manual_seed(0)
    steps, loss, start = 0, float("nan"), time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for group in optimizer.param_groups:
            group["lr"] = 2e-4 * 0.5 * (1 + math.cos(math.pi * elapsed / seconds))
        lr, hr = random_batch(images, sizes.batch, sizes.hr_patch, gen)
        loss = pretrain_step(
            model, optimizer, lr.contiguous(memory_format=fmt), hr.contiguous(memory_format=fmt), pixel, precision
        )["loss_pixel"]
        steps += 1
        if steps % 500 == 0:
            log(f"psnr phase: step {steps}, {elapsed:.0f}/{seconds:.0f} s, L1 {loss:.4f}")
    sync(device)
    return model.eval(), steps, time.perf_counter() - start, loss


def set5_scores(folder: Path, model: torch.nn.Module | None, device: torch.device) -> tuple[float, float | None]:
    """(bicubic, model) mean Y-PSNR over `folder` by the project's protocol (pipeline.scoring.
    protocol.score_image, repeated here without pipeline/): HR cut to a multiple of 4, LR by
    MATLAB bicubic in uint8, SR quantised to 8 bit, BT.601 Y, a border of 4 removed."""
    form = inference_form(model, "fp32") if model is not None else None
    bicubic, ours = [], []
    with torch.inference_mode():
        for path in image_files(folder):
            hr8 = read_rgb(path)
            h, w = hr8.shape[-2] // SCALE * SCALE, hr8.shape[-1] // SCALE * SCALE
            hr8 = hr8[None, :, :h, :w].to(device)
            lr8 = imresize(hr8, 1.0 / SCALE)
            hr, lr = hr8.float() / 255, lr8.float() / 255
            bicubic.append(psnr_y((imresize(lr8, float(SCALE)).float() / 255).clamp(0, 1), hr, SCALE).item())
            if form is not None:
                ours.append(psnr_y(quantize(form(lr)), hr, SCALE).item())
    return statistics.mean(bicubic), (statistics.mean(ours) if ours else None)


def measure_psnr_phase(args: argparse.Namespace, sizes: Sizes, device: torch.device, deadline: float) -> dict:
    seconds = args.psnr_seconds if args.psnr_seconds is not None else sizes.psnr_seconds
    # What the earlier parts left of the deadline, less a margin for loading and scoring: the
    # JSON line must come out before gpu_check.sh's `timeout 480` ends the process.
    seconds = max(1.0, min(seconds, deadline - time.perf_counter() - PSNR_MARGIN_S))
    precision = resolve_precision(args.psnr_precision, device)  # auto: bf16 on a GPU that has it, else fp32
    train_dir, train_reason = pick_folder(args.train, TRAIN_DIRS)
    set5_dir, set5_reason = pick_folder(args.set5, SET5_DIRS)
    out: dict = {
        "train_dir": str(train_dir) if train_dir else None,
        "train_reason": train_reason,
        "set5_dir": str(set5_dir) if set5_dir else None,
        "set5_reason": set5_reason,
        "psnr_phase_precision": precision,
        "psnr_phase_budget_s": seconds,
        "psnr_phase_seconds": None,
        "psnr_phase_steps": None,
        "psnr_phase_final_l1": None,
        "train_images": None,
        "set5_y_psnr": None,
        "set5_bicubic_y_psnr": None,
        "set5_gain_db": None,
    }
    model = None
    if train_dir is not None:
        start = time.perf_counter()
        try:
            images = load_training_images(train_dir, sizes.hr_patch, device)
        except (ImportError, OSError, RuntimeError, ValueError) as exc:  # no decoder here (torch-only, no Pillow)
            images, out["train_reason"] = [], f"cannot read the images in {train_dir}: {type(exc).__name__}: {exc}"
        out["train_images"] = len(images)
        log(f"psnr phase: {len(images)} images from {train_dir} in {time.perf_counter() - start:.1f} s")
        if images:
            model, steps, spent, loss = train_psnr_phase(images, sizes, seconds, device, precision)
            out.update(psnr_phase_seconds=round(spent, 2), psnr_phase_steps=steps, psnr_phase_final_l1=round(loss, 5))
            log(f"psnr phase: {steps} steps in {spent:.1f} s, last L1 {loss:.4f}")
        elif out["train_reason"] is None:
            out["train_reason"] = f"no image in {train_dir} is at least {sizes.hr_patch} px a side"
    if set5_dir is not None:
        try:
            bicubic, ours = set5_scores(set5_dir, model, device)
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            out["set5_reason"] = f"cannot score {set5_dir}: {type(exc).__name__}: {exc}"
            return out
        out["set5_bicubic_y_psnr"] = round(bicubic, 3)
        if ours is not None:
            out.update(set5_y_psnr=round(ours, 3), set5_gain_db=round(ours - bicubic, 3))
        else:
            out["set5_reason"] = f"no model trained: {out['train_reason']}"
        log(f"set5: bicubic {bicubic:.2f} dB, model {ours if ours is None else round(ours, 2)} dB")
    return out


# --- the check ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--quick", action="store_true", help="the reduced CPU form: tiny sizes, a few seconds")
    parser.add_argument("--train", help="training images for the PSNR phase (default: shared/data/train if found)")
    parser.add_argument("--set5", help="Set5 HR images (default: shared/data/Set5 if found)")
    parser.add_argument("--psnr-seconds", type=float, help="wall budget of the PSNR phase (300, --quick 3)")
    parser.add_argument("--psnr-precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument(
        "--deadline", type=float, default=450.0, help="seconds the whole check may take (the PSNR phase is cut to fit)"
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=("train", "upscale", "psnr"), help="parts to leave out"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    # From gpu_check.sh's start where it says (interpreter and torch import included), else from here.
    started = float(os.environ.get("GPU_CHECK_T0") or time.time())
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device here; use --device cpu", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else args.device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.backends.cudnn.benchmark = True  # fixed shapes throughout: let cuDNN pick its fastest kernels
    sizes = QUICK if args.quick else FULL
    result: dict = {
        "device": device_name(device),
        "device_type": device.type,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "quick": args.quick,
    }
    log(f"{result['device']}, torch {torch.__version__}, {'quick' if args.quick else 'full'} form")
    if "train" not in args.skip:
        result.update(measure_training(sizes, device))
    if "upscale" not in args.skip:
        result.update(measure_upscaling(sizes, device))
    if "psnr" not in args.skip:
        result.update(
            measure_psnr_phase(args, sizes, device, time.perf_counter() + started + args.deadline - time.time())
        )
    result["forbidden_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    result["load_avg"] = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    result["wall_s"] = round(time.time() - started, 2)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

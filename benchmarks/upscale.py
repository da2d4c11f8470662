"""Upscaling speed and memory: ours against Real-ESRGAN's `RealESRGANer` on the same weights,
in the same run, interleaved. Prints one JSON line per case.

    .venv/bin/python benchmarks/upscale.py [--repeats 5] [--sizes 384 1024] [--tiles 0 256 512]
    .venv/bin/python benchmarks/upscale.py --geotiff [--geotiff-sizes 1024 2048 4096]
    .venv/bin/python benchmarks/upscale.py --skip-images --skip-job     # onnxruntime against PyTorch only

References (installed only for benchmarks: `make bench`; basicsr 1.4.2 imports
`torchvision.transforms.functional_tensor`, which current torchvision removed, so a stand-in
module is registered first):
  * per image: `RealESRGANer(scale=4, model=<the same nn.Module>, tile=t, tile_pad=10,
    pre_pad=10, half=False)`.enhance on an 8-bit RGB array (its input is BGR: it gets the
    reversed channels) against ours, `pipeline.inference.upscale_array` with an Upscaler of
    the same weights and tile (array in, array out: the job's per-image path minus file
    I/O), at `--precision auto` (bf16 on CPUs that compute it natively, as the job runs 8-bit
    files) and at fp32. Case keys: `ratio` (ours at auto over the reference) and
    `fp32_ratio`. Each side is also compared with its own untiled output (8-bit levels).
  * a whole job: a folder of 8 PNGs of mixed sizes, timed as whole processes, start-up
    included: `python -m pipeline.upscale --model g.pt --input in --output out` (defaults)
    against Real-ESRGAN's folder loop (imports, then `cv2.imread` -> `enhance` ->
    `cv2.imwrite` per file, as its inference_realesrgan.py, tile 0, its default).
The generator is the paper's SRResNet-16 x4 (random weights, fp32 parameters). The
generator's achieved GFLOP/s counts its own convolutions (277 kFLOP per output pixel) over
the pixels it computes (recomputed tile borders included). The first case sets it against
this machine's 3x3 convolution peak (64 -> 64 channels, channels_last, at the image size
among 64..256 px where it runs fastest), timed in the same interleaved rounds, fp32 and
bf16, where the job spends its time: the inference form alone on the window of a 256 px
tile, beside the plain module.

--geotiff: peak RSS of the whole process tree (the CLI process and every process it starts,
sampled every 20 ms from /proc) of `python -m pipeline.upscale` on an N x N 4-band uint16
GeoTIFF at x4 with a small generator (1 block, 16 features), and its ratio to the first size.
Medians of --repeats after one untimed warm-up; the machine is shared, so compare ratios
(`loadavg` is os.getloadavg() at the end of each case).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.models.reference import Upscaler  # noqa: E402
from pipeline.upscaling.one_file import plan_bands, upscale_array  # noqa: E402
from srgan.generator import GeneratorSpec, build_generator  # noqa: E402
from srgan.precision import resolve_inference_precision  # noqa: E402
from srgan.tiling import computed_pixels, streams  # noqa: E402
from srgan.weights import save_generator  # noqa: E402

SHIM = (
    "import sys, types, torchvision.transforms.functional as F\n"
    "shim = types.ModuleType('torchvision.transforms.functional_tensor'); shim.rgb_to_grayscale = F.rgb_to_grayscale\n"
    "sys.modules.setdefault('torchvision.transforms.functional_tensor', shim)\n"
)


def realesrganer_class():
    import torchvision.transforms.functional as F

    shim = types.ModuleType("torchvision.transforms.functional_tensor")
    shim.rgb_to_grayscale = F.rgb_to_grayscale
    sys.modules.setdefault("torchvision.transforms.functional_tensor", shim)
    from realesrgan import RealESRGANer

    return RealESRGANer


def paper_generator(seed: int = 0):
    torch.manual_seed(seed)
    return build_generator(GeneratorSpec(scale=4, num_blocks=16, num_features=64)).eval()


def flops_per_input_pixel(model: torch.nn.Module) -> float:
    """The generator's convolution FLOPs (2 per multiply-add) per input pixel."""
    total = 0

    def count(conv, _, out):
        nonlocal total
        total += (
            2
            * conv.in_channels
            // conv.groups
            * conv.out_channels
            * conv.kernel_size[0]
            * conv.kernel_size[1]
            * out.shape[-2]
            * out.shape[-1]
        )

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(torch.zeros(1, model.spec.in_channels, 16, 16))
    for h in hooks:
        h.remove()
    return total / 256


def peak_conv(dtype: torch.dtype):
    """(a call of this machine's fastest 3x3 convolution: 64 -> 64 channels, channels_last,
    on the image size among 64..256 px where it runs fastest; its FLOPs). Timed interleaved
    with what is compared with it, so both see the same load."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(dtype=dtype, memory_format=torch.channels_last)
    best = None
    with torch.inference_mode():
        for side in (64, 96, 128, 192, 256):
            x = torch.randn(1, 64, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
            conv(x)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                conv(x)
                times.append(time.perf_counter() - start)
            rate = side * side / min(times)
            if best is None or rate > best[0]:
                best = (rate, x)
    x = best[1]

    def run():
        with torch.inference_mode():
            for _ in range(10):
                conv(x)

    return run, 10 * 2 * 64 * 64 * 9 * x.shape[-1] * x.shape[-2]


def interleaved(sides: dict, repeats: int) -> tuple[dict[str, float], dict]:
    """Median seconds of each side, run A B C A B C ... after one untimed round; last outputs."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    outputs = {}
    for r in range(repeats + 1):
        for name, fn in sides.items():
            start = time.perf_counter()
            outputs[name] = fn()
            if r:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def generator_case(repeats: int, threads: int) -> dict:
    """The inference form alone on the window a 256 px tile runs in (336 x 336 input for the
    paper's model): the generator's achieved GFLOP/s where the job spends its time, against
    the convolution peak timed in the same rounds, beside the plain module."""
    generator = paper_generator()
    auto = resolve_inference_precision("auto", torch.device("cpu"))
    side = 256 + 2 * generator.receptive_radius
    x = torch.rand(1, 3, side, side)
    flops = flops_per_input_pixel(generator) * side * side
    case = {
        "benchmark": "upscale",
        "case": f"generator_{side}px_window",
        "input": f"1x3x{side}x{side}",
        "repeats": repeats,
        "threads": threads,
    }
    sides, work = {}, {}
    for p in dict.fromkeys((auto, "fp32")):
        form = Upscaler(name="srresnet", scale=4, generator=generator, tile=0, precision=p).form()
        sides[f"{p}_form"], work[f"{p}_form"] = (lambda f=form: f(x)), flops
        sides[f"{p}_peak"], work[f"{p}_peak"] = peak_conv(torch.bfloat16 if p == "bf16" else torch.float32)
    sides["fp32_plain"], work["fp32_plain"] = (
        (lambda: generator(x)),
        flops,
    )  # BatchNorm unfolded, NCHW: as RealESRGANer runs it
    with torch.inference_mode():
        seconds, _ = interleaved(sides, repeats)
    rate = {name: work[name] / seconds[name] / 1e9 for name in sides}
    for p in dict.fromkeys((auto, "fp32")):
        case.update(
            {
                f"{p}_gflop_per_s": round(rate[f"{p}_form"], 1),
                f"{p}_conv_peak_gflop_per_s": round(rate[f"{p}_peak"], 1),
                f"{p}_peak_fraction_ratio": round(rate[f"{p}_form"] / rate[f"{p}_peak"], 3),
            }
        )
    case.update(
        plain_fp32_gflop_per_s=round(rate["fp32_plain"], 1),
        plain_fp32_peak_fraction_ratio=round(rate["fp32_plain"] / rate["fp32_peak"], 3),
        form_over_plain_fp32_ratio=round(seconds["fp32_plain"] / seconds["fp32_form"], 3),
    )
    case["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(case), flush=True)
    return case


def onnx_case(repeats: int, threads: int) -> dict:
    """onnxruntime on the exported generator (pipeline.export's file: the inference form in
    fp32) against PyTorch's inference form, fp32 and auto, on the window of a 256 px tile,
    interleaved; the largest difference of the two fp32 outputs beside."""
    from pipeline.models.onnx_model import OnnxGenerator, export_onnx

    generator = paper_generator()
    auto = resolve_inference_precision("auto", torch.device("cpu"))
    side = 256 + 2 * generator.receptive_radius
    x = torch.rand(1, 3, side, side)
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(generator, {}, Path(tmp) / "g.onnx")
        runtime = OnnxGenerator((Path(tmp) / "g.onnx").read_bytes(), threads)
    forms = {
        p: Upscaler(name="srresnet", scale=4, generator=generator, tile=0, precision=p).form()
        for p in dict.fromkeys(("fp32", auto))
    }
    sides = {"onnxruntime": lambda: runtime(x), **{f"pytorch_{p}": (lambda f=f: f(x)) for p, f in forms.items()}}
    with torch.inference_mode():
        seconds, outputs = interleaved(sides, repeats)
    case = {"benchmark": "upscale", "case": f"onnxruntime_{side}px_window", "input": f"1x3x{side}x{side}", "repeats": repeats, "threads": threads,
            "onnxruntime_s": round(seconds["onnxruntime"], 4), **{f"{k}_s": round(v, 4) for k, v in seconds.items() if k != "onnxruntime"},
            **{f"{k}_vs_onnxruntime_ratio": round(seconds["onnxruntime"] / seconds[k], 3) for k in sides if k != "onnxruntime"},
            "onnxruntime_vs_pytorch_fp32_max_abs_diff": float((outputs["onnxruntime"] - outputs["pytorch_fp32"]).abs().max()),
            "loadavg": [round(v, 2) for v in os.getloadavg()]}  # fmt: skip
    print(json.dumps(case), flush=True)
    return case


def image_cases(sizes: list[int], tiles: list[int], repeats: int, threads: int) -> list[dict]:
    RealESRGANer = realesrganer_class()
    generator = paper_generator()
    auto = resolve_inference_precision("auto", torch.device("cpu"))
    per_px = flops_per_input_pixel(generator)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "g.pth"
        torch.save({"params": generator.state_dict()}, weights)
        refs = {
            t: RealESRGANer(
                scale=4,
                model_path=str(weights),
                model=paper_generator(),
                tile=t,
                tile_pad=10,
                pre_pad=10,
                half=False,
                device=torch.device("cpu"),
            )
            for t in tiles
        }
    cases, untiled = [], {}
    for size in sizes:
        image = (np.random.default_rng(size).random((size, size, 3)) * 255).astype(np.uint8)
        plan = plan_bands(3, False, 3)
        for tile in tiles:
            ours = {
                p: Upscaler(name="srresnet", scale=4, generator=generator, tile=tile, batch_size=1, precision=p)
                for p in (auto, "fp32")
            }

            def reference(t=tile, image=image):
                with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per tile
                    return refs[t].enhance(image[..., ::-1].copy(), outscale=4)[0][..., ::-1]

            def side(precision, ours=ours, image=image, plan=plan):
                return lambda: upscale_array(ours[precision], image, plan)

            sides = {"ours": side(auto), "ours_fp32": side("fp32"), "ref": reference}
            seconds, outputs = interleaved(sides, repeats)
            if tile == 0:
                untiled[size] = outputs
            mpx = (4 * size) ** 2 / 1e6
            case = {
                "benchmark": "upscale",
                "case": f"{size}px_tile{tile}",
                "input": f"{size}x{size} RGB uint8",
                "tile": tile,
                "precision": auto,
                "ratio": round(seconds["ref"] / seconds["ours"], 3),
                "fp32_ratio": round(seconds["ref"] / seconds["ours_fp32"], 3),
                "ours_mpx_per_s": round(mpx / seconds["ours"], 4),
                "ours_fp32_mpx_per_s": round(mpx / seconds["ours_fp32"], 4),
                "ref_mpx_per_s": round(mpx / seconds["ref"], 4),
                "ours_computed_pixels_ratio": round(
                    computed_pixels(size, size, tile, generator.receptive_radius, streams(ours["fp32"].form())), 3
                ),
            }
            for p, side in ((auto, "ours"), ("fp32", "ours_fp32")):  # the work done, recomputed pixels included
                case[f"{p}_gflop_per_s"] = round(
                    per_px * size * size * case["ours_computed_pixels_ratio"] / seconds[side] / 1e9, 1
                )
            if tile:
                for side in ("ours", "ours_fp32", "ref"):
                    case[f"{side}_tiled_vs_untiled_max_levels"] = int(
                        np.abs(outputs[side].astype(int) - untiled[size][side].astype(int)).max()
                    )
            case.update(
                repeats=repeats,
                threads=threads,
                loadavg=[round(v, 2) for v in os.getloadavg()],
                torch=torch.__version__,
                machine=platform.machine(),
            )
            print(json.dumps(case), flush=True)
            cases.append(case)
    return cases


REFERENCE_LOOP = (
    SHIM
    + """
import glob, os, sys, cv2, torch
from realesrgan import RealESRGANer
sys.path.insert(0, {root!r})
from srgan.generator import GeneratorSpec, build_generator
torch.set_num_threads({threads})
model = build_generator(GeneratorSpec(scale=4, num_blocks=16, num_features=64))
up = RealESRGANer(scale=4, model_path={weights!r}, model=model, tile=0, tile_pad=10, pre_pad=10, half=False, device=torch.device('cpu'))
os.makedirs({out!r}, exist_ok=True)
for path in sorted(glob.glob(os.path.join({src!r}, '*.png'))):
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    out, _ = up.enhance(img, outscale=4)
    cv2.imwrite(os.path.join({out!r}, os.path.basename(path)), out)
"""
)


def job_case(repeats: int, threads: int) -> dict:
    from PIL import Image

    sizes = [(64, 48), (96, 96), (120, 80), (128, 128), (100, 150), (160, 120), (200, 200), (256, 192)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        (work / "in").mkdir()
        for i, (w, h) in enumerate(sizes):
            Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(work / "in" / f"{i}.png")
        generator = paper_generator()
        save_generator(work / "g.pt", generator, {})
        torch.save({"params": generator.state_dict()}, work / "g.pth")
        env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "OMP_NUM_THREADS": str(threads)}
        runs = iter(range(10**6))

        def ours():
            out = work / f"ours{next(runs)}"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipeline.upscale",
                    "--model",
                    str(work / "g.pt"),
                    "--input",
                    str(work / "in"),
                    "--output",
                    str(out),
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            shutil.rmtree(out)

        def reference():
            out = work / f"ref{next(runs)}"
            code = REFERENCE_LOOP.format(
                root=str(ROOT), threads=threads, weights=str(work / "g.pth"), out=str(out), src=str(work / "in")
            )
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
            shutil.rmtree(out)

        seconds, _ = interleaved({"ours": ours, "ref": reference}, repeats)
    return {
        "benchmark": "upscale",
        "case": "job_8_pngs",
        "input": f"8 PNGs, {sum(w * h for w, h in sizes) / 1e6:.3f} Mpx, sizes {sizes}",
        "ratio": round(seconds["ref"] / seconds["ours"], 3),
        "ours_s": round(seconds["ours"], 2),
        "ref_s": round(seconds["ref"], 2),
        "repeats": repeats,
        "threads": threads,
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


def _tree_rss_bytes(root: int) -> int:
    """RSS of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def peak_tree_rss(cmd: list[str], env: dict) -> tuple[int, float]:
    """(peak RSS in bytes of the process tree of `cmd`, seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_bytes(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.decode()[-2000:]}")
    return peak, time.perf_counter() - start


def geotiff_cases(sizes: list[int], repeats: int) -> list[dict]:
    import rasterio
    from rasterio.transform import from_origin

    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        save_generator(
            work / "g.pt",
            build_generator(
                GeneratorSpec(scale=4, in_channels=4, out_channels=4, num_blocks=1, num_features=16)
            ).eval(),
            {},
        )
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        first = None
        for side in sizes:
            src = work / f"in{side}"
            src.mkdir()
            rng = np.random.default_rng(0)
            profile = {
                "driver": "GTiff",
                "width": side,
                "height": side,
                "count": 4,
                "dtype": "uint16",
                "crs": "EPSG:32633",
                "transform": from_origin(500000, 4600000, 10, 10),
                "tiled": True,
                "compress": "deflate",
            }
            with rasterio.open(src / "scene.tif", "w", **profile) as dst:
                for top in range(0, side, 512):
                    block = rng.integers(0, 10000, (4, min(512, side - top), side), dtype=np.uint16)
                    dst.write(block, window=rasterio.windows.Window(0, top, side, block.shape[1]))
            peaks, seconds = [], []
            for r in range(repeats):
                out = work / f"out{side}_{r}"
                peak, took = peak_tree_rss(
                    [
                        sys.executable,
                        "-m",
                        "pipeline.upscale",
                        "--model",
                        str(work / "g.pt"),
                        "--input",
                        str(src),
                        "--output",
                        str(out),
                    ],
                    env,
                )
                peaks.append(peak)
                seconds.append(took)
                shutil.rmtree(out)
            peak_mib = statistics.median(peaks) / 2**20
            first = first or peak_mib
            case = {
                "benchmark": "upscale",
                "case": f"geotiff_{side}px",
                "input": f"{side}x{side} 4-band uint16 GeoTIFF, x4, SRResNet 1 block 16 features",
                "output_side": side * 4,
                "peak_tree_rss_mib": round(peak_mib, 1),
                "peak_tree_rss_runs_mib": [round(p / 2**20, 1) for p in peaks],
                "rss_to_first_size_ratio": round(peak_mib / first, 3),
                "seconds": round(statistics.median(seconds), 1),
                "repeats": repeats,
                "loadavg": [round(v, 2) for v in os.getloadavg()],
            }
            print(json.dumps(case), flush=True)
            cases.append(case)
            shutil.rmtree(src)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[384, 1024])
    parser.add_argument("--tiles", type=int, nargs="+", default=[0, 256, 512])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-images", action="store_true", help="no per-image cases")
    parser.add_argument("--skip-onnx", action="store_true", help="no onnxruntime case")
    parser.add_argument("--skip-job", action="store_true", help="no whole-job case")
    parser.add_argument("--geotiff", action="store_true", help="only the GeoTIFF memory cases")
    parser.add_argument("--geotiff-sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.geotiff:
        geotiff_cases(args.geotiff_sizes, min(args.repeats, 3))
        return
    if not args.skip_onnx:
        onnx_case(args.repeats, args.threads)
    if not args.skip_images:
        generator_case(args.repeats, args.threads)
        image_cases(args.sizes, sorted(set(args.tiles) | {0}), args.repeats, args.threads)
    if not args.skip_job:
        print(json.dumps(job_case(args.repeats, args.threads)), flush=True)


if __name__ == "__main__":
    main()

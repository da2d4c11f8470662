"""Upscaling throughput and memory: our job path against Real-ESRGAN's `RealESRGANer`, same
generator, same image, same process. Prints one JSON line.

    .venv/bin/pip install --no-deps basicsr realesrgan opencv-python-headless tqdm
    .venv/bin/python benchmarks/upscale.py [--size 512] [--repeats 3] [--geotiff 4096]

Throughput: an (size x size) 8-bit RGB array through the paper's SRResNet (16 blocks, 64
features, x4, random weights), array in -> array out, fp32 on the CPU, tile 0 (whole image)
and tile 256: ours is `pipeline.inference.upscale_array` (the job's per-image path minus file
I/O); the reference is `RealESRGANer.enhance` with its defaults (tile_pad 10, pre_pad 10).
Each is also compared with its own untiled output: our tiles carry the model's full
receptive radius as context, so tiled == untiled; Real-ESRGAN's 10 px do not.

Memory: a (geotiff x geotiff) 4-band uint16 GeoTIFF upscaled x4 with a small generator
(1 block, 16 features) by the job's windowed path (default window budget), in a fresh
process, and by one window for the whole raster; peak RSS of each (ru_maxrss).

basicsr 1.4.2 imports `torchvision.transforms.functional_tensor`, which current torchvision
removed; a stand-in module with its one used function is registered before the import.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.models import Upscaler  # noqa: E402
from pipeline.inference import WorkerSettings, plan_bands, process_file, upscale_array  # noqa: E402
from srgan.generator import GeneratorSpec, build_generator  # noqa: E402


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


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def throughput(size: int, repeats: int) -> dict:
    RealESRGANer = realesrganer_class()
    generator = paper_generator()
    image = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    mpx_out = (size * 4) ** 2 / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "g.pth"
        torch.save({"params": generator.state_dict()}, weights)
        ref = {t: RealESRGANer(scale=4, model_path=str(weights), model=paper_generator(), tile=t, half=False, device=torch.device("cpu")) for t in (0, 256)}
    figures: dict = {}
    outputs = {}
    for tile in (0, 256):
        ours = Upscaler(name="srresnet", scale=4, generator=generator, tile=tile)
        t_ours, outputs[("ours", tile)] = timed(lambda: upscale_array(ours, image, plan_bands(3, False, 3)), repeats)
        # RealESRGANer takes BGR (cv2); hand it the reversed channels so outputs compare.
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per tile
            t_ref, out = timed(lambda: ref[tile].enhance(image[..., ::-1].copy(), outscale=4)[0], repeats)
        outputs[("ref", tile)] = out[..., ::-1]
        figures[f"tile{tile}"] = {"ours_mpx_per_s": round(mpx_out / t_ours, 4), "ref_mpx_per_s": round(mpx_out / t_ref, 4), "ratio": round(t_ref / t_ours, 3)}
    for who in ("ours", "ref"):
        diff = np.abs(outputs[(who, 256)].astype(int) - outputs[(who, 0)].astype(int))
        figures[f"{who}_tiled_vs_untiled_max_abs_diff_8bit"] = int(diff.max())
    return figures


def _peak_rss_child(path: str, out: str, max_pixels: int) -> None:
    """Run in a fresh process: upscale one GeoTIFF, print peak RSS (MiB) and seconds."""
    torch.manual_seed(0)
    g = build_generator(GeneratorSpec(scale=4, in_channels=4, out_channels=4, num_blocks=1, num_features=16)).eval()
    up = Upscaler(name="tiny", scale=4, generator=g, tile=256, batch_size=4)
    start = time.perf_counter()
    row = process_file({"key": "scene.tif", "input": path, "output": out, "size": 0}, up, WorkerSettings(model="tiny", window_pixels=max_pixels))
    assert row["status"] == "done", row
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": time.perf_counter() - start, "windows": row["windows"]}))


def geotiff_memory(side: int, max_pixels: int) -> dict:
    import rasterio
    from rasterio.transform import from_origin

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "scene.tif"
        rng = np.random.default_rng(0)
        profile = {"driver": "GTiff", "width": side, "height": side, "count": 4, "dtype": "uint16", "crs": "EPSG:32633", "transform": from_origin(500000, 4600000, 10, 10), "tiled": True, "compress": "deflate"}
        with rasterio.open(src, "w", **profile) as dst:
            for top in range(0, side, 512):
                block = rng.integers(0, 10000, (4, min(512, side - top), side), dtype=np.uint16)
                dst.write(block, window=rasterio.windows.Window(0, top, side, block.shape[1]))
        result = {"geotiff_side": side, "output_side": side * 4, "output_bytes_uint16": side * side * 16 * 4 * 2}
        for name, budget in (("windowed", max_pixels), ("one_window", side * side)):
            code = f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import upscale as b; b._peak_rss_child({str(src)!r}, {str(Path(tmp) / (name + '.tif'))!r}, {budget})"
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            result[name] = {"peak_rss_mib": round(child["peak_rss_mib"], 1), "seconds": round(child["seconds"], 1), "windows": child["windows"]}
            (Path(tmp) / (name + ".tif")).unlink(missing_ok=True)
        result["rss_ratio_one_window_over_windowed"] = round(result["one_window"]["peak_rss_mib"] / result["windowed"]["peak_rss_mib"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="input side for the throughput test")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--geotiff", type=int, default=4096, help="GeoTIFF side for the memory test (0 skips it)")
    parser.add_argument("--window-pixels", type=int, default=WorkerSettings(model="").window_pixels)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-throughput", action="store_true", help="only the GeoTIFF memory test")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures = {"benchmark": "upscale", "machine": platform.machine(), "threads": args.threads, "torch": torch.__version__, "input": f"{args.size}x{args.size} RGB uint8, SRResNet-16 x4 fp32 CPU", "repeats": args.repeats}
    if not args.skip_throughput:
        figures.update(throughput(args.size, args.repeats))
    if args.geotiff:
        figures["geotiff"] = geotiff_memory(args.geotiff, args.window_pixels)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""The trainer against BasicSR's: the same MSRResNet x4, the same images, patch, batch, Adam
and L1 loss, N steps each, interleaved (ours, BasicSR, ours, BasicSR, ...), each side a whole
process timed from start to exit.

    .venv/bin/python benchmarks/train_vs_basicsr.py [--steps 200] [--pairs 2] [--train DIR] [--set5 DIR]

Ours: `python -m pipeline.train` with model.generator.arch msrresnet, phases [pretrain],
pixel loss l1, one Ray Train worker of --cpus CPUs on local Ray, its Ray Data input (HR
files decoded, cropped and bicubic-degraded on the fly). Its log lines give samples/s and
the share of time spent waiting for data (`data wait`).
BasicSR: `basicsr.models.sr_model.SRModel` built from an option dict like its
`options/train/SRResNet_SRGAN/train_MSRResNet_x4.yml` (dist off, no EMA, constant lr),
fed by its `PairedImageDataset` (LR made once from the same HR by our MATLAB bicubic, the
paired crop of its own) through its dataloader with one worker; `optimize_parameters` per
step, data time and step time measured around it as its own log does. basicsr is not a
project dependency: `make bench` installs it, or pass --basicsr-path to a folder holding it
(`pip install --no-deps --target DIR basicsr opencv-python-headless addict yapf lmdb future`).

Both sides use as many torch threads (ceil(--cpus)). After the same number of steps each
generator's Set5 Y-PSNR is scored by `python -m pipeline.evaluate` (BasicSR's net_g is read
by its keys). Prints one JSON line: steps/s of each side (median over pairs, the first 10 %
of steps left out as warm-up), `steps_ratio` (ours over BasicSR's, higher is better for us),
`wall_ratio` (BasicSR's whole-process time over ours), data-wait shares and Set5 figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}
LOG_LINE = re.compile(r"\[step (\d+)/\d+ pretrain\].*?([\d.]+) samples/s\s+data wait (\d+)%")

BASICSR_SIDE = r"""
import json, math, sys, time, types
import torch
import torchvision.transforms.functional as TF
shim = types.ModuleType("torchvision.transforms.functional_tensor")
shim.rgb_to_grayscale = TF.rgb_to_grayscale
sys.modules.setdefault("torchvision.transforms.functional_tensor", shim)
from basicsr.data import build_dataloader, build_dataset
from basicsr.models.sr_model import SRModel

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
dataset_opt = {
    "name": "bench", "type": "PairedImageDataset", "dataroot_gt": args["hr"], "dataroot_lq": args["lr"],
    "io_backend": {"type": "disk"}, "filename_tmpl": "{}", "gt_size": args["patch"], "use_hflip": True,
    "use_rot": True, "phase": "train", "scale": 4, "num_worker_per_gpu": 1, "batch_size_per_gpu": args["batch"],
    "dataset_enlarge_ratio": 100, "prefetch_mode": None,
}
loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False, sampler=None, seed=0)
opt = {
    "name": "bench", "model_type": "SRModel", "scale": 4, "num_gpu": 0, "is_train": True, "dist": False,
    "network_g": {"type": "MSRResNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": args["features"],
                  "num_block": args["blocks"], "upscale": 4},
    "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None, "models": args["out"],
             "training_states": args["out"], "experiments_root": args["out"], "log": args["out"], "visualization": args["out"]},
    "train": {"ema_decay": 0, "optim_g": {"type": "Adam", "lr": args["lr_rate"], "weight_decay": 0, "betas": [0.9, 0.99]},
              "scheduler": {"type": "MultiStepLR", "milestones": [10**9], "gamma": 0.5}, "total_iter": args["steps"],
              "warmup_iter": -1, "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}},
    "val": None, "logger": {"print_freq": 10**9, "save_checkpoint_freq": 10**9, "use_tb_logger": False, "wandb": None},
}
model = SRModel(opt)
data_times, step_times, step = [], [], 0
while step < args["steps"]:
    ready = time.perf_counter()
    for batch in loader:
        got = time.perf_counter()
        model.feed_data(batch)
        model.optimize_parameters(step + 1)
        done = time.perf_counter()
        data_times.append(got - ready)
        step_times.append(done - ready)
        step += 1
        ready = time.perf_counter()
        if step >= args["steps"]:
            break
torch.save({"params": model.net_g.state_dict()}, args["out"] + "/net_g.pth")
skip = max(1, len(step_times) // 10)
print(json.dumps({"steps_per_s": (len(step_times) - skip) / sum(step_times[skip:]),
                  "data_wait": sum(data_times[skip:]) / sum(step_times[skip:])}))
"""


def _set5_psnr(model: str, set5: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.evaluate", "--model", model, "--data", str(set5), "--json", "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    scores = json.loads(out.strip().splitlines()[-1])
    return float(scores["psnr_y"])


def prepare(train: Path, work: Path) -> tuple[Path, Path]:
    """HR images cut to a multiple of 4 and their MATLAB-bicubic x1/4 LR, as PNG (BasicSR's pairs)."""
    import numpy as np
    import torch
    from PIL import Image

    from srgan.resize import imresize

    hr_dir, lr_dir = work / "hr", work / "lr"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir()
    for path in sorted(p for p in train.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")):
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[0] // 4 * 4, image.shape[1] // 4 * 4
        image = image[:h, :w]
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).float()[None] / 255
        lr = (imresize(x, 0.25).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        Image.fromarray(image).save(hr_dir / f"{path.stem}.png")
        Image.fromarray(lr).save(lr_dir / f"{path.stem}.png")
    return hr_dir, lr_dir


def ours(args, hr: Path, work: Path, tag: str) -> dict:
    import yaml

    config = {
        "run": {"name": f"bench-{tag}", "storage_path": str(work / "runs")},
        "data": {
            "train": str(hr),
            "val": None,
            "patch_size": args.patch,
            "patches_per_image": 16,
            "shuffle_buffer": 16,
        },
        "model": {
            "generator": {
                "arch": "msrresnet",
                "scale": 4,
                "num_blocks": args.blocks,
                "num_features": args.features,
                "batch_norm": False,
            }
        },  # fmt: skip
        "loss": {"pixel": "l1", "weights": {"pixel": 1.0}},
        "train": {
            "phases": ["pretrain"],
            "batch_size": args.batch,
            "pretrain": {"steps": args.steps, "lr": args.lr},
            "adam_betas": [0.9, 0.99],
            "ema_decay": 0.0,
            "precision": "fp32",
            "log_every": max(1, args.steps // 20),
            "val_every": 10**9,
            "checkpoint_every": args.steps,
        },  # fmt: skip
        "scaling": {"num_workers": 1, "cpus_per_worker": args.cpus, "use_gpu": False},
        "mlflow": {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": "bench"},
    }
    path = work / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **ENV},
    )
    wall = time.perf_counter() - start
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"pipeline.train failed ({done.returncode}): {text[-2000:]}")
    lines = [(int(s), float(r), int(w)) for s, r, w in LOG_LINE.findall(text)]
    steady = [line for line in lines if line[0] > args.steps // 10] or lines
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"run"')))
    return {
        "wall_s": wall,
        "steps_per_s": statistics.median(r for _, r, _ in steady) / args.batch,
        "data_wait": statistics.median(w for _, _, w in steady) / 100,
        "model": str(Path(summary["checkpoint"]) / "generator.pt"),
    }


def basicsr(args, hr: Path, lr: Path, work: Path, tag: str) -> dict:
    out = work / f"basicsr-{tag}"
    out.mkdir()
    payload = {"hr": str(hr), "lr": str(lr), "patch": args.patch, "batch": args.batch, "steps": args.steps,
               "blocks": args.blocks, "features": args.features, "lr_rate": args.lr, "out": str(out),
               "threads": max(1, -(-int(args.cpus * 10) // 10))}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (args.basicsr_path, str(ROOT)) if p)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", BASICSR_SIDE, json.dumps(payload)], capture_output=True, text=True, env=env, cwd=work
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"BasicSR side failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": wall, "model": str(out / "net_g.pth")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=SHARED / "train")
    parser.add_argument("--set5", type=Path, default=SHARED / "Set5")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--cpus", type=float, default=1.5)
    parser.add_argument("--basicsr-path", default=os.environ.get("BASICSR_PATH", ""))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="train-vs-basicsr-"))
    try:
        hr, lr = prepare(args.train, work)
        runs: dict[str, list[dict]] = {"ours": [], "basicsr": []}
        for pair in range(args.pairs):
            for side in ("ours", "basicsr"):
                print(f"pair {pair + 1}/{args.pairs}: {side} ...", file=sys.stderr, flush=True)
                run = ours(args, hr, work, f"p{pair}") if side == "ours" else basicsr(args, hr, lr, work, f"p{pair}")
                runs[side].append(run)
        median = {side: {k: statistics.median(r[k] for r in rs) for k in ("steps_per_s", "data_wait", "wall_s")} for side, rs in runs.items()}  # fmt: skip
        psnr = {side: _set5_psnr(rs[-1]["model"], args.set5) for side, rs in runs.items()}
        print(json.dumps({
            "steps": args.steps, "pairs": args.pairs, "batch": args.batch, "patch": args.patch,
            "blocks": args.blocks, "features": args.features, "cpus_per_worker": args.cpus,
            "ours_steps_per_s": round(median["ours"]["steps_per_s"], 4),
            "basicsr_steps_per_s": round(median["basicsr"]["steps_per_s"], 4),
            "steps_ratio": round(median["ours"]["steps_per_s"] / median["basicsr"]["steps_per_s"], 3),
            "ours_wall_s": round(median["ours"]["wall_s"], 1), "basicsr_wall_s": round(median["basicsr"]["wall_s"], 1),
            "wall_ratio": round(median["basicsr"]["wall_s"] / median["ours"]["wall_s"], 3),
            "ours_data_wait": round(median["ours"]["data_wait"], 3), "basicsr_data_wait": round(median["basicsr"]["data_wait"], 3),
            "ours_set5_y_psnr": round(psnr["ours"], 3), "basicsr_set5_y_psnr": round(psnr["basicsr"], 3),
            "set5_gap_db": round(psnr["ours"] - psnr["basicsr"], 3),
            "per_pair": {side: [{k: round(v, 4) for k, v in r.items() if k != "model"} for r in rs] for side, rs in runs.items()},
            "loadavg": [round(v, 2) for v in os.getloadavg()],
        }))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

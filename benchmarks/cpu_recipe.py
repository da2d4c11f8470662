"""The CPU recipe (configs/cpu_x4.yaml, issue 23.5): a PSNR phase, then a GAN phase started
from that generator, then Set5 for bicubic and both models and the perceptual promotion
gate on the GAN model, timed as whole processes. `make cpu-model` runs it.

    .venv/bin/python benchmarks/cpu_recipe.py [--set5 DIR] [--out DIR] [--set key=value ...]

The goals it reports against (issue 23.5), each a boolean in the JSON line: the whole run
within 30 minutes; after the PSNR phase Set5 Y-PSNR >= 30.0 dB; after the GAN phase a
generator the perceptual gate promotes, with Set5 NIQE at least 1.5 below bicubic's and
Y-PSNR at least bicubic's + 1.0 dB. Training data: ../shared/data/train where it exists,
else the bundled samples://photos. Progress: each phase's own log lines on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def run(cmd: list[str], what: str) -> tuple[str, float, int]:
    """(stdout, seconds, return code) of `cmd`; its stderr goes to ours (progress)."""
    print(f"{what}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **ENV})
    return done.stdout, time.perf_counter() - start, done.returncode


def summary(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith('{"run"')))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set5", type=Path, default=SHARED / "Set5")
    parser.add_argument("--out", type=Path, default=ROOT / "cpu-model")
    parser.add_argument("--set", action="append", default=[], help="extra config override for both phases")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tracking = f"sqlite:///{args.out / 'mlflow.db'}"
    args.out.mkdir(parents=True, exist_ok=True)
    common = ["--config", "configs/cpu_x4.yaml", "--set", f"run.storage_path={args.out / 'runs'}"]
    common += ["--set", f"mlflow.tracking_uri={tracking}"]
    if not (SHARED / "train").is_dir():
        common += ["--set", "data.train=samples://photos"]
    for extra in args.set:
        common += ["--set", extra]
    train = [sys.executable, "-m", "pipeline.train", *common]
    out, psnr_s, rc = run(
        [*train, "--set", f"run.name=cpu-psnr-{stamp}", "--set", "train.phases=[pretrain]"], "PSNR phase"
    )
    if rc:
        raise SystemExit(f"the PSNR phase failed (rc {rc})")
    psnr_run = summary(out)
    out, gan_s, rc = run(
        [*train, "--set", f"run.name=cpu-gan-{stamp}", "--set", "train.phases=[gan]",
         "--set", f"train.init_from=runs:/{psnr_run['mlflow_run_id']}"],
        "GAN phase",
    )  # fmt: skip
    if rc:
        raise SystemExit(f"the GAN phase failed (rc {rc})")
    gan_run = summary(out)
    psnr_model = str(Path(psnr_run["checkpoint"]) / "generator.pt")
    gan_model = str(Path(gan_run["checkpoint"]) / "generator.pt")
    out, eval_s, rc = run(
        [sys.executable, "-m", "pipeline.evaluate", "--data", str(args.set5), "--model", "bicubic",
         "--model", psnr_model, "--model", gan_model, "--scale", "4", "--json", "--device", "cpu"],
        "Set5",
    )  # fmt: skip
    if rc:
        raise SystemExit(f"evaluate failed (rc {rc})")
    table = json.loads(out.strip().splitlines()[-1])
    figures = next(iter(table["sets"].values()))
    bicubic, psnr_fig, gan_fig = (figures[column["label"]] for column in table["models"])
    out, promote_s, promote_rc = run(
        [sys.executable, "-m", "pipeline.promote", "--run-id", gan_run["mlflow_run_id"], "--name", f"srgan-cpu-{stamp}",
         "--holdout", str(args.set5), "--criterion", "perceptual", "--tracking-uri", tracking],
        "promotion gate",
    )  # fmt: skip
    total = psnr_s + gan_s
    print(json.dumps({
        "train_s": round(total, 1), "psnr_phase_s": round(psnr_s, 1), "gan_phase_s": round(gan_s, 1),
        "evaluate_s": round(eval_s, 1), "promote_s": round(promote_s, 1),
        "bicubic": bicubic, "psnr_model": psnr_fig, "gan_model": gan_fig,
        "promote_rc": promote_rc, "promote_output": out.strip().splitlines()[-3:],
        "within_30_min": total <= 1800,
        "psnr_phase_at_least_30db": psnr_fig["psnr_y"] >= 30.0,
        "gan_niqe_1_5_below_bicubic": gan_fig["niqe"] <= bicubic["niqe"] - 1.5,
        "gan_psnr_1db_above_bicubic": gan_fig["psnr_y"] >= bicubic["psnr_y"] + 1.0,
        "gan_promoted": promote_rc == 0 and "PROMOTED" in out.upper(),
        "psnr_run": psnr_run["mlflow_run_id"], "gan_run": gan_run["mlflow_run_id"],
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }))  # fmt: skip


if __name__ == "__main__":
    main()

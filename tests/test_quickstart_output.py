"""What a newcomer sees of `make quickstart`: a screenful of the quickstart's own lines, with
Ray's, MLflow's and the workers' output in a log file it names, and the same decisions on a
re-run. The whole run takes minutes, so that test is marked slow; the pieces it rests on (the
log file, the seeded sweep, the lines it prints) are tested fast here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cluster, quickstart
from pipeline.config import load_config, load_yaml
from pipeline.training.driver import TrainOutcome
from pipeline.training.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
LINE_BUDGET = 60

# A process that prints every way the quickstart's steps and Ray do, inside a LogFile.
PRINTS_EVERY_WAY = r"""
import logging, os, subprocess, sys
from pipeline.cli import LogFile

logging.basicConfig(stream=sys.stderr, format="%(message)s")  # set up before, as Ray's handler is
print("before", flush=True)
with LogFile(sys.argv[1]) as log:
    log.say("own line")
    print("a library's print")
    print("a library's warning", file=sys.stderr)
    logging.getLogger("ray").warning("ray's logging")
    os.write(1, b"fd 1\n")
    os.write(2, b"fd 2\n")
    subprocess.run([sys.executable, "-c", "import sys; print('child'); print('child err', file=sys.stderr)"])
    log.note("note: said once")
    log.note("note: said once")
    with log.showing():
        print("a report")
    print("after the report")
    log.say("an error line", error=True)
print("after", flush=True)
"""

FAILS_INSIDE = r"""
import sys
from pipeline import cli
from pipeline.cli import LogFile
from pipeline.errors import UserError

@cli.command
def main(argv=None):
    with LogFile(sys.argv[1]) as log:
        log.say("=== 1/1 a step ===")
        print("the step's own chatter")
        raise UserError("the step failed: bad input x")

sys.exit(main())
"""


def run_script(code: str, log: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, timeout=60)


def test_the_log_file_takes_everything_but_the_commands_own_lines(tmp_path):
    log = tmp_path / "logs" / "run.log"
    proc = run_script(PRINTS_EVERY_WAY, log)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["before", "own line", "note: said once", "a report", "after"]
    assert proc.stderr.splitlines() == ["an error line"]
    text = log.read_text()
    for line in (
        "own line",
        "a library's print",
        "a library's warning",
        "ray's logging",
        "fd 1",
        "fd 2",
        "child",
        "child err",
        "a report",
        "after the report",
        "an error line",
    ):
        assert line in text.splitlines(), (line, text)
    assert text.count("note: said once") == 1
    assert "before" not in text.splitlines() and "after" not in text.splitlines()  # the terminal's again


def test_an_error_inside_the_log_reaches_the_terminal_with_the_log_named(tmp_path):
    log = tmp_path / "run.log"
    proc = run_script(FAILS_INSIDE, log)
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == ["=== 1/1 a step ==="]
    assert proc.stderr.splitlines() == [
        f"stopped; the whole output, Ray's included, is in {log}",
        "error: the step failed: bad input x",
    ]
    assert "the step's own chatter" in log.read_text()


def test_settings_for_a_log_file_keep_what_the_user_set(monkeypatch):
    for key in cluster.LOG_FILE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAY_COLOR_PREFIX", "1")
    set_here = cluster.settings_for_a_log_file()
    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"  # no error-level watcher line
    assert os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["RAY_COLOR_PREFIX"] == "1" and "RAY_COLOR_PREFIX" not in set_here


def test_the_quickstarts_decisions_cannot_depend_on_which_trial_finishes_first():
    sweep, base = load_sweep(ROOT / "configs" / "quickstart_tune.yaml")
    # Both trials run side by side and to the end: no scheduler stops the one that reports second.
    assert sweep.scheduler.type == "none"
    assert sweep.num_samples <= sweep.max_concurrent_trials
    assert "seed" in load_yaml(ROOT / "configs" / "quickstart_tune.yaml")  # the sampled weights
    assert "seed" in load_yaml(ROOT / "configs" / "quickstart.yaml")["run"]  # crops, degradations, weights
    assert load_config(ROOT / "configs" / "quickstart.yaml").run.seed == sweep.seed == 0


def test_the_quickstart_says_each_trial_and_the_training_in_a_line():
    line = quickstart.trial_line(
        "bebdd_00001",
        {"loss.weights.content": "0.0329681", "loss.weights.adversarial": "0.000103878"},
        {"val/psnr": 26.5677, "val/niqe": 7.3917},
        "FINISHED",
        "score",
        23.66567,
        best=True,
    )
    assert line == (
        "bebdd_00001: content 0.033, adversarial 0.000104: PSNR 26.57 dB, NIQE 7.39, score 23.666 (finished)  <- best"
    )
    unreported = quickstart.trial_line("x_00000", {"loss.weights.content": "0.1"}, {}, "KILLED", "score", None, False)
    assert unreported == "x_00000: content 0.1: PSNR - dB, NIQE -, score - (killed)"
    outcome = TrainOutcome(
        "qs",
        "/runs/qs",
        "abc123",
        "sqlite:///m.db",
        "/runs/qs/step_300",
        None,
        {"step": 300, "val/psnr": 26.67, "val/psnr_bicubic": 26.02, "val/niqe": float("nan")},
        [],
    )
    assert quickstart.training_lines(outcome, 1.93) == [
        "trained 300 steps in 1.9 min; validation PSNR 26.67 dB (bicubic 26.02), NIQE - (bicubic -)",
        "MLflow run abc123; checkpoint /runs/qs/step_300",
    ]


@pytest.mark.long
def test_make_quickstart_prints_a_screenful_and_names_its_log(tmp_path):
    """The whole quickstart, as `make quickstart` runs it, into a fresh folder and MLflow store.
    It starts a Ray of its own (never the test session's: no RAY_ADDRESS), with Ray's defaults
    (not the settings this test session runs with)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_")) or k == "RAY_TMPDIR"}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    out = tmp_path / "quickstart"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.quickstart", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
    )
    log = out / quickstart.LOG_NAME
    terminal = proc.stdout
    tail = log.read_text()[-5000:] if log.exists() else "(no log)"
    assert proc.returncode == 0, f"{terminal}\n--- log tail ---\n{tail}"
    lines = terminal.splitlines()
    assert len(lines) <= LINE_BUDGET, terminal
    assert str(log) in lines[0] and log.is_file()
    assert "PreemptionWatcher" not in terminal and "Traceback" not in terminal, terminal
    assert terminal.count("LPIPS is skipped") <= 1
    assert "promoted: distortion criterion" in terminal and "=== done in" in terminal
    assert "Started a local Ray instance" in log.read_text()  # Ray's own logging went to the log

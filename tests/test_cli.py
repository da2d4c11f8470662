"""Every bad input a new user is likely to try ends in one line, `error: ...`, exit code 2, and
nothing written to MLflow or storage; a real bug keeps its traceback (exit 1). Every verb's
--help shows each option's default and ends with examples."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline import cli, evaluate, promote, quickstart, samples, train, tune, upscale
from pipeline.errors import DataError, UsageError
from pipeline.models.pyfunc import log_generator
from pipeline.tracking.store import client
from srgan.generator import SRResNet
from srgan.weights import save_generator
from tests.helpers import one_error_line, write_images

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
VERBS = {
    "train": train,
    "tune": tune,
    "promote": promote,
    "upscale": upscale,
    "evaluate": evaluate,
    "quickstart": quickstart,
}


@pytest.fixture
def images(tmp_path) -> Path:
    write_images(tmp_path / "hr", 2, size=(48, 48))
    return tmp_path / "hr"


@pytest.fixture
def generator_file(tmp_path) -> Path:
    path = tmp_path / "g" / "generator.pt"
    save_generator(path, SRResNet(scale=2, num_blocks=1, num_features=8))
    return path


def test_override_yaml_that_does_not_parse(capsys, tmp_path):
    line = one_error_line(capsys, train.main(["--config", str(QUICKSTART), "--set", "train.batch_size=[1,"]))
    assert "--set 'train.batch_size=[1,': the value is not valid YAML" in line
    sweep = ROOT / "configs" / "quickstart_tune.yaml"
    assert "--set 'num_samples=[1,'" in one_error_line(
        capsys, tune.main(["--config", str(sweep), "--set", "num_samples=[1,"])
    )
    assert "--train-set 'train.gan.steps={'" in one_error_line(
        capsys, tune.main(["--config", str(sweep), "--train-set", "train.gan.steps={"])
    )


def test_a_library_error_names_a_setting_and_the_command_line_its_flag():
    parser = cli.Parser("python -m pipeline.x", "", [])
    parser.add_argument("--set", dest="overrides", action="append")
    parser.add_argument("--output")
    with pytest.raises(UsageError) as err, cli.naming_flags(parser, ref="--model"):
        raise DataError("`ref` x: `output` y exists; `overrides` z; `workers` w, `odd one`, tags.`a.b` `left")
    assert str(err.value) == "--model x: --output y exists; --set z; workers w, `odd one`, tags.`a.b` `left"
    with pytest.raises(DataError, match="^no setting here$"), cli.naming_flags(parser):
        raise DataError("no setting here")


def test_a_run_name_that_would_leave_the_storage_path_is_refused(capsys, tmp_path, images):
    runs, db = tmp_path / "runs", tmp_path / "mlflow.db"
    args = [
        "--config",
        str(QUICKSTART),
        "--set",
        f"data.train={images}",
        "--set",
        "data.val=null",
        "--set",
        f"run.storage_path={runs}",
        "--set",
        f"mlflow.tracking_uri=sqlite:///{db}",
    ]
    line = one_error_line(capsys, train.main([*args, "--set", "run.name=../x"]))
    assert line.startswith("error: invalid config: run.name: '../x' is not a folder name") and "e.g. srgan-x4-a" in line
    assert not (tmp_path / "x").exists() and not runs.exists() and not db.exists()


def test_storage_in_a_missing_bucket_is_refused_before_the_mlflow_run_opens(capsys, tmp_path, images, s3_server):
    db = tmp_path / "mlflow.db"
    args = [
        "--config",
        str(QUICKSTART),
        "--set",
        f"data.train={images}",
        "--set",
        "data.val=null",
        "--set",
        f"mlflow.tracking_uri=sqlite:///{db}",
    ]
    line = one_error_line(capsys, train.main([*args, "--set", "run.storage_path=s3://no-such-bucket/runs"]))
    assert "run.storage_path s3://no-such-bucket/runs" in line and "bucket 'no-such-bucket' does not exist" in line
    assert not db.exists()  # no MLflow run (not even a store) was made


def test_quickstart_checks_its_arguments_before_writing_a_sample(capsys, tmp_path, s3_server):
    out = tmp_path / "qs"
    assert "config file /nope.yaml not found" in one_error_line(
        capsys, quickstart.main(["--out", str(out), "--config", "/nope.yaml"])
    )
    assert "bucket 'no-such-bucket' does not exist" in one_error_line(
        capsys, quickstart.main(["--out", str(out), "--root", "s3://no-such-bucket/qs"])
    )
    assert not out.exists()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert f"--out {a_file}: {a_file} is a file, not a folder" in one_error_line(
        capsys, quickstart.main(["--out", str(a_file)])
    )
    assert a_file.read_text() == "mine"


def test_a_sweep_objective_training_never_reports_is_refused_with_the_valid_names(capsys, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"train_config: {QUICKSTART}\nsearch: {{loss.weights.content: {{loguniform: [0.1, 1.0]}}}}\n"
        "objective: {metric: val/fid, mode: min}\n"
    )
    line = one_error_line(capsys, tune.main(["--config", str(sweep)]))
    assert "'val/fid' is not a metric training reports" in line and "val/psnr, val/ssim" in line and "val/niqe" in line


def test_a_file_that_is_not_a_generator_gets_the_same_error_everywhere(capsys, tmp_path, images):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"these bytes are not a checkpoint")
    from_evaluate = one_error_line(capsys, evaluate.main(["--model", str(bogus), "--data", str(images)]))
    from_upscale = one_error_line(
        capsys, upscale.main(["--model", str(bogus), "--input", str(images), "--output", str(tmp_path / "out")])
    )
    assert (
        from_evaluate == from_upscale and "bogus.pt" in from_upscale and "is not a PyTorch checkpoint" in from_upscale
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--batch-tiles", "0", "argument --batch-tiles: 0 is too small: give 1 or more"),
        ("--tile", "-1", "argument --tile: -1 is too small: give 0 or more"),
        ("--threads", "0", "argument --threads: 0 is too small: give 1 or more"),
        ("--max-pixels", "0", "argument --max-pixels: 0 is too small: give 1 or more"),
        ("--tile", "big", "argument --tile: 'big' is not a whole number"),
        ("--gpus-per-worker", "0", "argument --gpus-per-worker: 0 must be above 0"),
    ],
)
def test_upscale_numbers_are_refused_when_parsed(capsys, option, value, message):
    # The input does not exist: the option is refused before anything looks at it.
    line = one_error_line(
        capsys,
        upscale.main(
            ["--model", "bicubic", "--scale", "2", "--input", "/nowhere", "--output", "/nowhere-out", option, value]
        ),
    )
    assert message in line and "(see python -m pipeline.upscale --help)" in line


def test_a_scale_the_generator_cannot_make_is_refused_by_every_verb(capsys, images):
    for main, extra in (
        (upscale.main, ["--input", str(images), "--output", "/nowhere"]),
        (evaluate.main, ["--data", str(images)]),
    ):
        line = one_error_line(capsys, main(["--model", "bicubic", "--scale", "5", *extra]))
        assert "argument --scale: invalid choice: 5 (choose from 2, 3, 4, 8)" in line


def test_upscale_job_objects_refuse_what_the_command_line_refuses(capsys):
    # The library names its parameters; the command line names its flags.
    with pytest.raises(upscale.UsageError, match="`tile` -1: give 0 or more"):
        upscale.UpscaleJob(model="bicubic", scale=2, input="in", output="out", tile=-1)
    with pytest.raises(upscale.UsageError, match="`model` bicubic needs `scale`"):
        upscale.UpscaleJob(model="bicubic", input="in", output="out")
    code = upscale.main(["--model", "bicubic", "--input", "in", "--output", "out"])
    assert code == 2 and "--model bicubic needs --scale" in one_error_line(capsys, code)
    with pytest.raises(ValueError, match="scale 5 is not supported; use one of 2, 3, 4, 8"):
        upscale.UpscaleJob(model="bicubic", scale=5, input="in", output="out")


def test_an_output_bucket_that_does_not_exist_is_refused_before_any_image(capsys, images, s3_server):
    line = one_error_line(
        capsys,
        upscale.main(
            ["--model", "bicubic", "--scale", "2", "--input", str(images), "--output", "s3://no-such-bucket/out/"]
        ),
    )
    assert "--output s3://no-such-bucket/out: bucket 'no-such-bucket' does not exist" in line


def test_promote_refuses_a_missing_holdout_before_registering(capsys, tmp_path, generator_file):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = client(uri)
    run_id = c.create_run(
        c.create_experiment("promote-errors", artifact_location=(tmp_path / "art").as_uri())
    ).info.run_id
    log_generator(uri, run_id, generator_file)  # a run that could be registered
    capsys.readouterr()
    line = one_error_line(capsys, promote.main(["--run-id", run_id, "--holdout", "/nope", "--tracking-uri", uri]))
    assert "/nope does not exist" in line
    # A holdout that lists but cannot be scored is found out before registering, too.
    write_images(tmp_path / "holdout", 1, size=(64, 64))
    (tmp_path / "holdout" / "z_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    line = one_error_line(
        capsys,
        promote.main(["--run-id", run_id, "--holdout", str(tmp_path / "holdout"), "--tracking-uri", uri]),
        alone=False,
    )
    assert "z_broken.png: not a readable PNG" in line
    assert c.search_registered_models() == []


def test_evaluate_names_the_unreadable_image(capsys, images):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    line = one_error_line(capsys, evaluate.main(["--model", "bicubic", "--scale", "2", "--data", str(images)]))
    assert f"{images / 'broken.png'}: not a readable PNG" in line and "remove or replace it" in line


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_a_tracking_server_that_does_not_answer_is_named_within_30_s(capsys, tmp_path, images, server, request):
    uri = "http://127.0.0.1:9" if server == "refused" else request.getfixturevalue("silent_server")
    args = [
        "--config",
        str(QUICKSTART),
        "--set",
        f"data.train={images}",
        "--set",
        "data.val=null",
        "--set",
        f"run.storage_path={tmp_path / 'runs'}",
        "--set",
        f"mlflow.tracking_uri={uri}",
    ]
    started = time.monotonic()
    line = one_error_line(capsys, train.main(args))
    assert time.monotonic() - started < 30
    assert f"MLflow tracking server {uri} does not answer" in line
    assert not (tmp_path / "runs").exists()


def test_a_bug_keeps_its_traceback_and_exits_1():
    code = "from pipeline import cli\n@cli.command\ndef main(argv):\n    raise RuntimeError('an internal bug')\nraise SystemExit(main([]))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" in done.stderr and "RuntimeError: an internal bug" in done.stderr


def test_console_scripts_print_one_error_line(tmp_path):
    script = Path(sys.executable).parent / "srgan-upscale"
    done = subprocess.run(
        [str(script), "--model", "bicubic", "--scale", "2", "--input", "x", "--output", "y", "--batch-tiles", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "error: argument --batch-tiles: 0 is too small: give 1 or more (see python -m pipeline.upscale --help)"
    ], done.stderr


@pytest.mark.parametrize("verb", [*VERBS, "samples"])
def test_help_shows_every_default_and_ends_with_examples(verb, capsys):
    module = VERBS.get(verb, samples)
    assert module.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"\nexamples:\n(  python -m pipeline\.\S+.*\n)+$", text), text
    options = re.split(r"\n(?=  -)", text.split("options:")[1].split("\nexamples:")[0])
    for option in options:
        if not option.strip() or option.strip().startswith("-h, --help"):
            continue
        assert re.search(r"\((default|required)", " ".join(option.split())), option


def test_data_too_small_for_one_batch_is_refused_before_the_mlflow_run(capsys, tmp_path, ray_session):
    write_images(tmp_path / "one", 1, size=(48, 48))
    db = tmp_path / "mlflow.db"
    args = [
        "--config",
        str(QUICKSTART),
        "--set",
        f"data.train={tmp_path / 'one'}",
        "--set",
        "data.val=null",
        "--set",
        "data.patches_per_image=2",
        "--set",
        f"run.storage_path={tmp_path / 'runs'}",
        "--set",
        f"mlflow.tracking_uri=sqlite:///{db}",
    ]
    line = one_error_line(capsys, train.main(args), alone=False)  # Ray Data logs its scan
    assert (
        "1 usable image(s) x data.patches_per_image 2 = 2 patches an epoch, fewer than one batch (train.batch_size 8)"
        in line
    )
    assert not db.exists()

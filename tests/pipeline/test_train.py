"""Training acceptance: 2 CPU workers, DDP over gloo, a tiny model, data in a moto bucket."""

import json
import re
import uuid
from pathlib import Path

import boto3
import mlflow
import numpy as np
import pytest
import yaml

from pipeline import tracking
from pipeline.config import parse_config
from pipeline.train import main
from pipeline.training.driver import run_training
from srgan.generator import build_generator
from srgan.weights import load_generator
from tests.helpers import put_images, tiny, write_images

ROOT = Path(__file__).resolve().parents[2]


def _history(client, run_id: str, key: str) -> list:
    return sorted(client.get_metric_history(run_id, key), key=lambda m: (m.timestamp, m.step))


def _assert_each_step_logged_once(client, run_id: str) -> None:
    """A resumed run continues its metrics: no key holds a step twice."""
    for key in client.get_run(run_id).data.metrics:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), (key, sorted(steps))


@pytest.mark.slow
def test_ddp_run_over_s3_checkpoints_to_the_bucket_and_logs_everything(ray_session, bucket, mlflow_uri):
    put_images(bucket, "hr/train", 8, size=(48, 48), with_bad=True)
    put_images(bucket, "hr/val", 2, size=(40, 40), seed=1)
    # Unused with the discriminator backbone; a presigned URL whose credentials must not reach MLflow.
    presigned = "https://AKIAUSER:s3cr3tpass@weights.example.com/vgg19.pth?X-Amz-Signature=s3cr3tsig"
    cfg = parse_config(
        tiny(
            f"s3://{bucket}/hr/train/",
            f"s3://{bucket}/hr/val/",
            f"s3://{bucket}/runs",
            mlflow_uri,
            loss={"vgg_weights": presigned},
        )
    )
    outcome = run_training(cfg)

    # Checkpoints are in the bucket: rank 0's state and generator, every rank's RNG state.
    keys = [
        o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"runs/{cfg.run.name}/")["Contents"]
    ]
    final = f"runs/{cfg.run.name}/step_00000008/"
    assert {final + f for f in ("state.pt", "generator.pt", "rng_rank0.pt", "rng_rank1.pt")} <= set(keys)
    assert outcome.checkpoint == f"s3://{bucket}/{final.rstrip('/')}"
    assert outcome.metrics["step"] == 8 and outcome.metrics["phase"] == "gan"

    client = mlflow.MlflowClient(mlflow_uri)
    run = client.get_run(outcome.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["loss.weights.content"] == "1.0" and run.data.params["scaling.num_workers"] == "2"
    assert not any("testing-secret" in v or "s3cr3t" in v for v in run.data.params.values())  # credentials never logged
    assert run.data.params["loss.vgg_weights"] == "https://***@weights.example.com/vgg19.pth?X-Amz-Signature=***"
    metrics = run.data.metrics
    for key in (
        "train/loss_pixel",
        "train/loss_d",
        "train/d_real",
        "train/d_fake",
        "train/samples_per_s",
        "val/psnr",
        "val/ssim",
        "val/psnr_bicubic",
        "train/content_to_adversarial",
    ):
        assert key in metrics, key
    assert run.data.tags["train.precision_used"] == "fp32"  # what precision auto became here
    assert metrics["data/bad_inputs"] == 4 and metrics["data/train_images"] == 8 and metrics["val/images"] == 2
    assert [m.step for m in _history(client, run.info.run_id, "train/lr")] == list(range(1, 9))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "grids")
    }
    assert {"bad_inputs.json", "generator.pt", "grids/step_00000004.png", "grids/step_00000008.png"} <= artifacts
    bad = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="bad_inputs.json", tracking_uri=mlflow_uri
            )
        ).read_text()
    )
    assert {b["key"] for b in bad} == {"bad/empty.png", "bad/truncated.png", "bad/not_an_image.jpg", "bad/tiny.png"}

    # The logged model runs on an image array through the generic pyfunc interface.
    model = mlflow.pyfunc.load_model(str(tracking.download(outcome.model_uri, mlflow_uri)))
    out = model.predict(np.random.rand(1, 3, 10, 12).astype(np.float32))
    assert np.asarray(out).shape == (1, 3, 20, 24)
    meta = model.metadata.metadata["srgan"]
    assert meta["scale"] == 2 and meta["in_channels"] == 3 and meta["layout"] == "NCHW"


@pytest.mark.slow
def test_a_worker_failure_resumes_from_the_last_checkpoint(ray_session, bucket, mlflow_uri):
    put_images(bucket, "hr", 8, size=(48, 48))
    tree = tiny(f"s3://{bucket}/hr/", None, f"s3://{bucket}/runs", mlflow_uri, debug={"fail_once_at_step": 5})
    cfg = parse_config(tree)
    outcome = run_training(cfg)
    assert outcome.metrics["step"] == 8
    assert (
        boto3.client("s3").get_object(Bucket=bucket, Key=f"runs/{cfg.run.name}/.debug_failed_once")["Body"].read()
        == b"5"
    )

    client = mlflow.MlflowClient(mlflow_uri)
    resumed = _history(client, outcome.mlflow_run_id, "train/resumed_from_step")
    assert [(m.step, m.value) for m in resumed] == [(4, 4.0)]  # the checkpoint before the failure
    steps = _history(client, outcome.mlflow_run_id, "train/lr")
    # In the order logged: the failed attempt's steps (to 5), then the restarted one's after
    # them; nothing restarted from 0 and no step (the failed attempt's 5) came twice.
    assert [m.step for m in steps] == list(range(1, 9))
    _assert_each_step_logged_once(client, outcome.mlflow_run_id)


def _cli_summary(capsys) -> dict:
    """The JSON line `python -m pipeline.train` ends with (Ray's forwarded worker logs may follow it)."""
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"run"')]
    assert len(lines) == 1, lines
    return json.loads(lines[0])


@pytest.mark.slow
def test_cli_resume_continues_a_finished_run_and_a_rerun_without_it_is_refused(
    ray_session, tmp_path, mlflow_uri, capsys
):
    write_images(tmp_path / "hr", 8, size=(48, 48))
    tree = tiny(
        str(tmp_path / "hr"),
        None,
        str(tmp_path / "runs"),
        mlflow_uri,
        train={"phases": ["pretrain"], "pretrain": {"steps": 4, "lr": 1e-3}},
    )
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(tree))
    cli = ["--config", str(config)]
    assert main(cli) == 0
    first = _cli_summary(capsys)
    assert first["checkpoint"].endswith("step_00000004")

    assert main(cli) == 2
    err = capsys.readouterr().err
    assert re.search(r"^error: .*already exists .* pass --resume", err, re.M), err
    assert main([*cli, "--set", "train.pretrain.steps=6", "--resume"]) == 0
    second = _cli_summary(capsys)
    assert second["checkpoint"].endswith("step_00000006") and second["mlflow_run_id"] == first["mlflow_run_id"]
    client = mlflow.MlflowClient(mlflow_uri)
    assert [m.value for m in client.get_metric_history(second["mlflow_run_id"], "train/resumed_from_step")] == [4.0]
    assert sorted({m.step for m in client.get_metric_history(second["mlflow_run_id"], "train/lr")}) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    _assert_each_step_logged_once(client, second["mlflow_run_id"])

    assert main([*cli, "--set", "run.name=never-ran", "--resume"]) == 2
    assert "no checkpoints of run 'never-ran'" in capsys.readouterr().err

    # A GAN-only run starts from the pretrained generator of that MLflow run: two steps at
    # lr 1e-4 leave its weights within a few lr of those (a fresh generator is far away).
    tree["run"]["name"] = "gan-only"
    tree["train"] = {
        **tree["train"],
        "phases": ["gan"],
        "gan": {"steps": 2, "lr": 1e-4, "init_from": f"runs:/{second['mlflow_run_id']}"},
        "val_every": 2,
    }
    tree["data"]["val"] = str(tmp_path / "hr")
    gan = run_training(parse_config(tree))
    assert gan.metrics["step"] == 2 and gan.metrics["phase"] == "gan" and "val/psnr" in gan.metrics
    pretrained = load_generator(Path(second["checkpoint"]) / "generator.pt")[0]
    tuned = load_generator(Path(gan.checkpoint) / "generator.pt")[0]
    moved = max((a - b).abs().max().item() for a, b in zip(pretrained.parameters(), tuned.parameters()))
    fresh = max(
        (a - b).abs().max().item() for a, b in zip(build_generator(pretrained.spec).parameters(), tuned.parameters())
    )
    assert moved < 1e-3 < 0.05 < fresh, (moved, fresh)


def test_init_from_accepts_a_file_a_checkpoint_folder_and_an_mlflow_run(tmp_path, mlflow_uri):
    import torch

    from pipeline.training.driver import resolve_init_generator
    from srgan.generator import SRResNet
    from srgan.weights import WeightsError, save_generator

    g = SRResNet(scale=2, num_blocks=1, num_features=8)
    save_generator(tmp_path / "ckpt" / "generator.pt", g)
    client = mlflow.MlflowClient(mlflow_uri)
    run = client.create_run(client.create_experiment(f"init-{uuid.uuid4().hex[:6]}"))
    client.log_artifact(run.info.run_id, str(tmp_path / "ckpt" / "generator.pt"))
    for ref in (str(tmp_path / "ckpt" / "generator.pt"), str(tmp_path / "ckpt"), f"runs:/{run.info.run_id}"):
        spec, state = resolve_init_generator(ref, mlflow_uri)
        assert spec == g.spec and all(torch.equal(state[k], v) for k, v in g.state_dict().items()), ref
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_init_generator(str(tmp_path / "nothing"), mlflow_uri)


@pytest.mark.slow
def test_fine_tuning_starts_from_a_published_rrdbnet_with_its_architecture(ray_session, tmp_path, mlflow_uri, capsys):
    """train.init_from a Real-ESRGAN-layout file: the run builds RRDBNet as the file has it
    (model.generator says SRResNet), starts from its weights, and saves an RRDBNet; a SwinIR
    (inference only) is refused in one line before anything runs."""
    import torch

    from pipeline.errors import ConfigError
    from srgan.generator import GeneratorSpec
    from srgan.rrdbnet import RRDBNet

    torch.manual_seed(0)
    published = RRDBNet(
        GeneratorSpec(scale=2, num_blocks=1, num_features=8, growth=4, batch_norm=False, arch="rrdbnet")
    )
    torch.save({"params_ema": published.state_dict()}, tmp_path / "RealESRGAN_x2plus.pth")
    write_images(tmp_path / "hr", 8, size=(48, 48))
    tree = tiny(
        str(tmp_path / "hr"),
        None,
        str(tmp_path / "runs"),
        mlflow_uri,
        train={
            "phases": ["pretrain"],
            "pretrain": {"steps": 2, "lr": 1e-5},
            "init_from": str(tmp_path / "RealESRGAN_x2plus.pth"),
        },
        scaling={"num_workers": 1, "cpus_per_worker": 1},
    )
    out = run_training(parse_config(tree))
    tuned, _ = load_generator(Path(out.checkpoint) / "generator.pt")
    assert tuned.spec == published.spec
    moved = max((a - b).abs().max().item() for a, b in zip(published.parameters(), tuned.parameters()))
    assert moved < 1e-3, moved
    assert "train.init_from: the generator is rrdbnet x2, 1 blocks of 8" in capsys.readouterr().out

    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    swin = SwinIR(
        upscale=2, img_size=16, window_size=4, depths=[1], embed_dim=8, num_heads=[2], upsampler="pixelshuffledirect"
    )
    torch.save(swin.state_dict(), tmp_path / "swinir.pth")
    tree["train"]["init_from"] = str(tmp_path / "swinir.pth")
    tree["run"]["name"] = "swin"
    with pytest.raises(
        ConfigError, match="the trainer builds srresnet, msrresnet, rrdbnet generators, not spandrel:SwinIR"
    ):
        run_training(parse_config(tree))


def test_cli_errors_are_one_line_with_exit_code_2(capsys, tmp_path):
    code = main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--set", "train.batch_size=7"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: invalid config: train.batch_size 7") and err.count("\n") == 1
    code = main(
        [
            "--config",
            str(ROOT / "configs" / "quickstart.yaml"),
            "--set",
            f"data.train={tmp_path / 'none'}",
            "--set",
            f"run.storage_path={tmp_path}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err


def test_a_bad_input_found_by_a_worker_is_reported_as_the_users_error():
    from ray.train import WorkerGroupError

    from pipeline.errors import DataError
    from pipeline.training.driver import _user_error_of

    data_error = DataError("the training data gave no full batch")
    assert (
        _user_error_of(WorkerGroupError("both failed", {0: data_error, 1: DataError("the same on rank 1")}))
        is data_error
    )
    # A bug on any rank keeps the traceback: it is not hidden behind another rank's user error.
    assert _user_error_of(WorkerGroupError("rank 1 failed", {0: RuntimeError("a bug"), 1: data_error})) is None
    assert _user_error_of(KeyboardInterrupt()) is None

"""BatchNorm under DDP: 2 Ray Train workers (gloo) run the pipeline's TrainState through both
phases on their own images; with train.sync_batch_norm their BatchNorm buffers agree, and
validation always scores the generator rank 0 saves."""

import logging
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import TrainConfig, parse_config
from pipeline.training.loop import validate
from pipeline.training.recipe import build_generator_loss, phase_at
from pipeline.training.state import TrainState, sync_batch_norm_on
from srgan.generator import SRResNet
from srgan.losses import PixelLoss
from srgan.resize import imresize
from srgan.train_step import unwrap
from tests.helpers import smooth_image, tiny


def _config(sync, storage: Path) -> TrainConfig:
    # 2 images per worker, as the paper's batch of 16 on 8 GPUs.
    train = {"sync_batch_norm": sync, "pretrain": {"steps": 3, "lr": 1e-3}, "gan": {"steps": 3, "lr": 1e-3}}
    return parse_config(tiny(str(storage / "hr"), None, str(storage / "runs"), "sqlite:///unused.db", train=train))


def _val_rows(count: int = 4) -> list[dict]:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(count):
        hr = torch.from_numpy(smooth_image(rng, 32, 32)).permute(2, 0, 1).float() / 255
        rows.append(
            {
                "idx": i,
                "key": f"v{i}",
                "hr": hr.numpy(),
                "lr": imresize(hr[None], 0.5)[0].clamp(0, 1).numpy(),
                "levels": 0,
            }
        )
    return rows


def _buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.detach().clone() for name, b in unwrap(model).named_buffers()}


def _steps_then_validate(loop: dict) -> None:
    """A Ray Train worker: TrainState (as train_loop_per_worker builds it) through every step of
    both phases on this rank's own random images, then validation of the weight average.
    Rank r leaves its BatchNorm buffers, its average before validation and the validation
    figures in loop["out"]/rank{r}.pt."""
    import ray.train

    cfg = TrainConfig.model_validate(loop["config"])
    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    device = torch.device("cpu")
    state = TrainState(cfg, device, "fp32")
    g_loss, pixel = build_generator_loss(cfg, state.d, device), PixelLoss(cfg.loss.pixel)
    images = torch.Generator().manual_seed(rank)
    while state.step < cfg.total_steps:
        if phase_at(cfg, state.step) != state.phase:
            state.start_phase(phase_at(cfg, state.step))
        hr = torch.rand(cfg.worker_batch_size, 3, 16, 16, generator=images)
        state.train_step(imresize(hr, 0.5), hr, g_loss, pixel)
    ema = {k: v.clone() for k, v in state.ema.state_dict().items()}
    metrics, _ = validate(state.ema.model, loop["val_rows"], 2, 0, rank, world, device)
    out = {"g": _buffers(state.g), "d": _buffers(state.d), "ema": ema, "metrics": metrics}
    torch.save(out, Path(loop["out"]) / f"rank{rank}.pt")


def _train_two_workers(cfg: TrainConfig, folder: Path, val_rows: list[dict]) -> list[dict]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    folder.mkdir(parents=True)
    TorchTrainer(
        _steps_then_validate,
        train_loop_config={"config": cfg.model_dump(mode="json"), "val_rows": val_rows, "out": str(folder)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": cfg.scaling.cpus_per_worker}),
        run_config=RunConfig(name=f"sync-bn-{uuid.uuid4().hex[:8]}", storage_path=str(folder / "ray")),
    ).fit()
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _largest_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if "running" in k)


@pytest.mark.slow
@pytest.mark.parametrize("sync", ["auto", False])
def test_synced_batch_norm_keeps_the_ranks_buffers_equal_and_validation_scores_the_saved_generator(
    ray_session, tmp_path, sync
):
    cfg, val_rows = _config(sync, tmp_path), _val_rows()
    ranks = _train_two_workers(cfg, tmp_path / "out", val_rows)

    for net in ("g", "d"):
        gap = _largest_gap(ranks[0][net], ranks[1][net])
        if sync == "auto":  # the default with 2 workers: one set of statistics
            assert gap < 1e-6, (net, gap)
        else:  # each worker's own 2 images: the buffers drift apart
            assert gap > 1e-4, (net, gap)

    # The figures are those of rank 0's average, the generator it saves, scored alone.
    g = cfg.model.generator
    saved = SRResNet(g.scale, g.in_channels, g.out_channels, g.num_blocks, g.num_features, g.batch_norm, g.bicubic_skip)
    saved.load_state_dict(ranks[0]["ema"])
    alone, _ = validate(saved, val_rows, g.scale, 0, rank=0, world=1, device=torch.device("cpu"))
    for rank in ranks:
        for key, value in alone.items():
            assert rank["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key


def test_batch_norm_sync_is_resolved_once_and_its_absence_on_small_batches_warned(tmp_path, caplog):
    caplog.set_level(logging.INFO, "pipeline.train")
    auto, off = _config("auto", tmp_path), _config(False, tmp_path)
    assert sync_batch_norm_on(auto, world=2, rank=0)
    assert "BatchNorm statistics over all 2 workers' images (train.sync_batch_norm=auto)" in caplog.text
    caplog.clear()

    assert not sync_batch_norm_on(off, world=2, rank=1) and not caplog.records  # rank 0 speaks for the run
    assert not sync_batch_norm_on(off, world=2, rank=0)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "its own 2 images" in record.message and "set train.sync_batch_norm=auto" in record.message
    caplog.clear()

    assert not sync_batch_norm_on(auto, world=1, rank=0) and not caplog.records  # one worker: nothing to sync
    big = parse_config(
        {**off.model_dump(mode="json"), "train": {**off.train.model_dump(mode="json"), "batch_size": 16}}
    )
    assert not sync_batch_norm_on(big, world=2, rank=0) and not caplog.records  # 8 a worker: left to the user

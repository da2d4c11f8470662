"""A training run's checkpoints: what a worker reports to Ray Train and reads back on resume.

A checkpoint folder step_XXXXXXXX holds rank 0's whole training state (state.pt), the EMA
generator with its spec (generator.pt, what MLflow logs and upscaling loads) and every
rank's RNG state. On S3 each worker uploads its files itself, through pipeline.storage, so
an endpoint that stops answering is retried for s3.retry_s seconds; Ray Train records a
checkpoint only once every worker's upload returned, so a half-uploaded folder is never
one a restart or --resume starts from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipeline.io import storage
from srgan.weights import save_generator

if TYPE_CHECKING:
    from pipeline.training.state import TrainState


def uploader(run_uri: str):
    """Ray Train's checkpoint_upload_fn for a run under `run_uri` on S3 (None for a local run,
    which Ray copies itself): each file of the worker's checkpoint folder is uploaded whole,
    with storage's retries."""
    if not storage.is_s3(run_uri):
        return None

    def upload(checkpoint, dir_name: str):
        import ray.train

        target = storage.join(run_uri, dir_name)
        local = Path(checkpoint.path)
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            storage.upload_file(path, storage.join(target, path.relative_to(local).as_posix()))
        fs, path = storage.filesystem(target)
        return ray.train.Checkpoint(path=path, filesystem=fs)

    return upload


def save_checkpoint(
    rank: int, metrics: dict, state: TrainState, meta: dict, run_uri: str = "", unsent: list | None = None
) -> None:
    """Report `metrics` with a checkpoint step_XXXXXXXX: rank 0's state.pt (with what its
    RunLogger has not sent to MLflow yet, `unsent`) and generator.pt (the EMA generator with
    its spec), every rank's RNG state."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if rank == 0:
            torch.save({**state.state_dict(), "unsent_log": unsent or []}, folder / "state.pt")
            save_generator(folder / "generator.pt", state.ema.model, {**meta, "trained_steps": state.step})
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, folder / f"rng_rank{rank}.pt")
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"step_{state.step:08d}",
            checkpoint_upload_fn=uploader(run_uri),
        )


def load_checkpoint(checkpoint, rank: int) -> tuple[dict, dict | None]:
    """(state.pt, this rank's RNG state or None) of `checkpoint`."""
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / "state.pt", map_location="cpu", weights_only=True)
        rng_file = Path(folder) / f"rng_rank{rank}.pt"
        rng = torch.load(rng_file, map_location="cpu", weights_only=True) if rng_file.exists() else None
    return state, rng


def restore_rng(rng: dict | None) -> None:
    """Put back a rank's RNG state (after the models are built: building draws from it)."""
    if rng is None:
        return
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])

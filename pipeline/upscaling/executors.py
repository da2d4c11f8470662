"""Where a batch upscaling job's files are processed: in this process, or on a Ray Data pool.

Both run the same per-file code (pipeline.inference.UpscaleWorker: decode, tiler, encode,
whole write, a manifest row whatever happens) on the same items and hand the rows back to
the job, which records them; they differ only in where the worker lives.

  local  one worker in this process, every CPU thread (or the GPU): no Ray start-up, worker
         start or shutdown, which on a small job cost several times the work.
  ray    a Ray Data actor pool (one actor per GPU share, else per `threads` CPUs), on the
         cluster RAY_ADDRESS names or a local Ray started without the dashboard.
  auto   local for a local input folder of at most AUTO_LOCAL_BYTES of files when no Ray
         cluster is configured (RAY_ADDRESS unset); ray otherwise (s3:// inputs, large jobs,
         any configured cluster).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from pipeline.io import storage
from pipeline.upscaling.manifest import ManifestRow, WorkItem
from pipeline.upscaling.one_file import UpscaleWorker, WorkerSettings

EXECUTORS = ("auto", "local", "ray")
AUTO_LOCAL_BYTES = 256 << 20  # input bytes up to which a local job runs in-process under auto


def choose(requested: str, input_uri: str, todo: list[WorkItem]) -> tuple[str, str]:
    """(executor, why) for `requested` (auto, local or ray)."""
    if requested != "auto":
        return requested, f"`executor` {requested}"
    if storage.is_s3(input_uri):
        return "ray", "auto: an s3:// input"
    if os.environ.get("RAY_ADDRESS"):
        return "ray", "auto: a Ray cluster is configured (RAY_ADDRESS)"
    size = sum(item.size for item in todo)
    if size > AUTO_LOCAL_BYTES:
        return "ray", f"auto: {size / 2**20:.0f} MiB of input, over the {AUTO_LOCAL_BYTES >> 20} MiB run in-process"
    return "local", f"auto: a local input of {size / 2**20:.1f} MiB and no Ray cluster configured"


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_local(todo: list[WorkItem], settings: WorkerSettings, generator_bytes: bytes | None) -> Iterator[ManifestRow]:
    """Rows of `todo`, upscaled one file after another in this process."""
    worker = UpscaleWorker(settings, generator_bytes)
    for item in todo:
        yield ManifestRow.from_dict(worker(item.to_dict()))


def ray_resources(
    cluster: dict, gpus_per_worker: float, threads: int | None, workers: int | None, cpu_only: bool
) -> tuple[dict, int]:
    """(Ray resources of one actor, number of actors): one per GPU share, else per CPU group."""
    gpus = float(cluster.get("GPU", 0))
    if gpus > 0 and not cpu_only:
        return {"num_gpus": gpus_per_worker, "num_cpus": threads or 1}, workers or max(1, int(gpus / gpus_per_worker))
    cpus = int(cluster.get("CPU", os.cpu_count() or 1))
    threads = threads or max(1, min(4, cpus))
    return {"num_cpus": threads}, workers or max(1, cpus // threads)


def run_ray(
    todo: list[WorkItem], settings: WorkerSettings, generator_bytes: bytes | None, resources: dict, workers: int
) -> Iterator[ManifestRow]:
    """Rows of `todo` from a Ray Data actor pool, in the order they finish."""
    import ray

    ds = ray.data.from_items([item.to_dict() for item in todo], override_num_blocks=min(len(todo), 1000))
    ds = ds.map(
        UpscaleWorker,
        fn_constructor_kwargs={"settings": settings, "generator_bytes": generator_bytes},
        compute=ray.data.ActorPoolStrategy(size=workers),
        **resources,
    )
    for row in ds.iter_rows():
        yield ManifestRow.from_dict(dict(row))

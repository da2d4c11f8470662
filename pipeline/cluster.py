"""Starting Ray locally, or joining the cluster named by RAY_ADDRESS.

Ray Data runs the decode/crop/degrade stages as fractional-CPU tasks, several per core,
each in a worker process that has imported torch (about 2 s). By default Ray kills idle
workers beyond one per CPU after a second, so every burst of tasks would pay that import
again: on 2 CPUs that cut the training pipeline to a fifth of its speed (see docs/benchmarks.md,
benchmarks). A local Ray started here keeps its workers; on a cluster, set the same two
settings as environment variables on every node before `ray start`:
RAY_num_workers_soft_limit and RAY_idle_worker_killing_time_threshold_ms.

The dashboard starts too (ray[default]): Ray Train's placement-group cleaner asks its State
API whether a run's controller is still alive, and frees the run's reserved CPUs/GPUs when it
is not, e.g. after Tune stops a trial early. Without it those reservations would leak.
That State API finds the cluster through the file `ray start` leaves in Ray's temp folder;
a head killed without `ray stop` leaves a stale one, which ensure_ray removes (see
forget_dead_cluster).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

# For a run whose Ray output goes to a log file (the quickstart): a local Ray's processes
# inherit these from the process that starts it.
LOG_FILE_ENV = {
    # One PreemptionWatcher actor per training run, each logging an error-level line about its
    # constructor arguments that reads as a failure; there is no node to be preempted locally.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # A progress bar in a file is one line per redraw; rank 0's step lines say the progress.
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_COLOR_PREFIX": "0",  # worker lines without terminal colour codes
}


def settings_for_a_log_file() -> dict[str, str]:
    """Set LOG_FILE_ENV in this process's environment where the user has not set the variable,
    before ensure_ray starts a local Ray; returns what was set."""
    set_here = {k: v for k, v in LOG_FILE_ENV.items() if k not in os.environ}
    os.environ.update(set_here)
    return set_here


def worker_reuse_config(num_cpus: int) -> dict:
    return {"num_workers_soft_limit": 4 * num_cpus + 4, "idle_worker_killing_time_threshold_ms": 600_000}


def current_cluster_file() -> Path:
    """Where `ray start` records its head's address (Ray's own temp-dir rules)."""
    if "RAY_TMPDIR" in os.environ:
        tmp = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        tmp = os.environ["TMPDIR"]
    else:
        tmp = "/tmp"
    return Path(tmp) / "ray" / "ray_current_cluster"


def forget_dead_cluster() -> str | None:
    """Remove the record of a `ray start` head that nothing answers at any more (a head killed
    without `ray stop`); return its address, or None when there is nothing to forget.

    Ray's State API, which Ray Train's placement-group cleaner calls, prefers that record to
    the running local Ray: with a stale one every training run waits 12 s at its end for a
    dead address, and the cleaner cannot work."""
    path = current_cluster_file()
    try:
        address = path.read_text().strip()
        host, _, port = address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=1):
            return None  # a live head: keep it
    except (FileNotFoundError, ValueError):
        return None
    except OSError:
        path.unlink(missing_ok=True)
        return address


def ensure_ray(num_cpus: int | None = None, dashboard: bool = True, **init_kwargs) -> None:
    """Connect to RAY_ADDRESS if set (ray job submit sets it), else start a local Ray with
    `num_cpus` (default: all of this machine's) that keeps its worker processes; without the
    dashboard when `dashboard` is False (batch upscaling needs no State API)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**init_kwargs)
        return
    cpus = num_cpus or os.cpu_count() or 1
    dead = forget_dead_cluster()
    if dead:
        print(
            f"note: removed {current_cluster_file()}: it named a Ray head at {dead} that no longer answers",
            file=sys.stderr,
        )
    # address="local": always a new local Ray, never one that `ray start` left recorded in
    # /tmp/ray/ray_current_cluster (possibly long gone).
    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=None if dashboard else False,
        _system_config=worker_reuse_config(cpus),
        **init_kwargs,
    )

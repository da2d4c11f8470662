"""Starting Ray locally, or joining the cluster named by RAY_ADDRESS.

Ray Data runs the decode/crop/degrade stages as fractional-CPU tasks, several per core,
each in a worker process that has imported torch (about 2 s). By default Ray kills idle
workers beyond one per CPU after a second, so every burst of tasks would pay that import
again: on 2 CPUs that cut the training pipeline to a fifth of its speed (see README,
benchmarks). A local Ray started here keeps its workers; on a cluster, set the same two
settings as environment variables on every node before `ray start`:
RAY_num_workers_soft_limit and RAY_idle_worker_killing_time_threshold_ms.

The dashboard starts too (ray[default]): Ray Train's placement-group cleaner asks its State
API whether a run's controller is still alive, and frees the run's reserved CPUs/GPUs when it
is not, e.g. after Tune stops a trial early. Without it those reservations would leak.
"""

from __future__ import annotations

import os


def worker_reuse_config(num_cpus: int) -> dict:
    return {"num_workers_soft_limit": 4 * num_cpus + 4, "idle_worker_killing_time_threshold_ms": 600_000}


def ensure_ray(num_cpus: int | None = None, **init_kwargs) -> None:
    """Connect to RAY_ADDRESS if set (ray job submit sets it), else start a local Ray with
    `num_cpus` (default: all of this machine's) that keeps its worker processes."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**init_kwargs)
        return
    cpus = num_cpus or os.cpu_count() or 1
    # address="local": always a new local Ray, never one that `ray start` left recorded in
    # /tmp/ray/ray_current_cluster (possibly long gone).
    ray.init(address="local", num_cpus=cpus, _system_config=worker_reuse_config(cpus), **init_kwargs)

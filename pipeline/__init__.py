"""The verbs as library functions with typed arguments (docs/api.md), imported on first use, so that
`import pipeline.errors` or any stage loads no verb, Ray or MLflow. The package may import every
module under it; none imports the package's names back (they import modules: `from pipeline import cli`)."""

from __future__ import annotations

import importlib

# Public name -> "module:attribute". `evaluate_model` and `promote_run` are not called after their
# functions (`evaluate`, `promote`): those names are the verbs' modules (`from pipeline import
# evaluate` gives the module, and importing it sets that name on this package).
_PUBLIC = {
    "TrainConfig": "pipeline.config:TrainConfig",
    "load_config": "pipeline.config:load_config",
    "parse_config": "pipeline.config:parse_config",
    "run_training": "pipeline.training.driver:run_training",
    "TrainOutcome": "pipeline.training.driver:TrainOutcome",
    "SweepConfig": "pipeline.training.sweep:SweepConfig",
    "load_sweep": "pipeline.training.sweep:load_sweep",
    "run_sweep": "pipeline.tune:run_sweep",
    "Gate": "pipeline.promote:Gate",
    "Decision": "pipeline.promote:Decision",
    "judge": "pipeline.promote:judge",
    "promote_run": "pipeline.promote:promote",
    "sweep_best_run": "pipeline.promote:sweep_best_run",
    "UpscaleJob": "pipeline.upscaling.job:UpscaleJob",
    "run_upscale": "pipeline.upscale:run_upscale",
    "evaluate_model": "pipeline.evaluate:evaluate",
    "evaluate_as_is": "pipeline.evaluate:evaluate_as_is",
    "EvalReport": "pipeline.scoring.protocol:EvalReport",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    module, attribute = _PUBLIC[name].split(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

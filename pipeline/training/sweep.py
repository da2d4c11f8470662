"""Sweep configuration: which training config every trial starts from, the search space over
its keys, what "best" means, and the early-stopping scheduler.

    sweep, base = load_sweep("configs/tune_loss_weights.yaml", overrides=["num_samples=4"])

Everything is checked when the file loads: each search key against the training config
(with its distribution's lower end), the objective against the metrics training reports.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from pipeline.config import FolderName, MlflowSection, Section, apply_overrides, load_yaml, parse_config
from pipeline.errors import ConfigError
from pipeline.scoring.protocol import VALIDATION_METRICS

SCORE = "score"  # objective.metric naming the weighted sum objective.score


class Distribution(Section):
    """Exactly one of: loguniform [low, high], uniform [low, high], choice [values...]."""

    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [k for k in ("loguniform", "uniform", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of loguniform: [low, high], uniform: [low, high], choice: [values]")
        if self.loguniform is not None and not 0 < self.loguniform[0] < self.loguniform[1]:
            raise ValueError(f"loguniform needs 0 < low < high, got {list(self.loguniform)}")
        if self.uniform is not None and not self.uniform[0] < self.uniform[1]:
            raise ValueError(f"uniform needs low < high, got {list(self.uniform)}")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        return self

    def example(self) -> Any:
        """A value from the distribution (its lower end), for validating the search space."""
        if self.choice is not None:
            return self.choice[0]
        return (self.loguniform or self.uniform)[0]


class ObjectiveSection(Section):
    metric: str = Field("val/psnr", description="a reported metric, or 'score' for the weighted sum below")
    mode: Literal["max", "min"] = "max"
    score: dict[str, float] | None = Field(
        None,
        description="score = sum(weight * metric), e.g. {val/psnr: 1, val/niqe: -1} (a perception-distortion trade-off)",
    )

    @model_validator(mode="after")
    def _reported(self) -> ObjectiveSection:
        if (self.metric == SCORE) != (self.score is not None):
            raise ValueError("objective.metric 'score' and objective.score go together: set both or neither")
        valid = ", ".join(VALIDATION_METRICS)
        if self.metric != SCORE and self.metric not in VALIDATION_METRICS:
            raise ValueError(
                f"metric {self.metric!r} is not a metric training reports; use one of {valid}, or 'score' with objective.score"
            )
        for name in self.score or {}:
            if name not in VALIDATION_METRICS:
                raise ValueError(f"score names {name!r}, which training does not report; use metrics among {valid}")
        return self


class SchedulerSection(Section):
    type: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1, description="training steps before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1)


class SweepConfig(Section):
    name: FolderName = Field(
        "srgan-loss-weights",
        description="the Tune experiment (re-run the same name to resume) and the MLflow parent run",
    )
    storage_path: str = Field("./ray_results/sweeps", description="local path or s3://bucket/prefix")
    train_config: str = Field(..., description="training config every trial starts from (relative to this file)")
    train_overrides: list[str] = Field(
        default_factory=list, description="key=value applied to train_config for every trial"
    )
    search: dict[str, Distribution] = Field(..., description="dotted training-config key -> distribution")
    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    num_samples: int = Field(8, ge=1)
    max_concurrent_trials: int = Field(2, ge=1)
    trial_cpus: float = Field(
        0.1, ge=0, description="CPUs for each trial's driver; its workers follow the training config's scaling"
    )
    seed: int = 0
    mlflow: MlflowSection = Field(default_factory=lambda: MlflowSection(experiment="srgan-sweeps"))


def load_sweep(
    path: str | Path, overrides: list[str] | None = None, train_overrides: list[str] | None = None
) -> tuple[SweepConfig, dict]:
    """(sweep config, the trials' base training-config tree). Every search key is checked
    against the training config now, with its distribution's lower end."""
    tree = apply_overrides(load_yaml(path), overrides or [])
    sweep = parse_config(tree, SweepConfig)
    train_path = Path(sweep.train_config)
    if not train_path.is_absolute():
        train_path = Path(path).parent / train_path
    base = apply_overrides(load_yaml(train_path), sweep.train_overrides, "train_overrides")
    base = apply_overrides(base, train_overrides or [], "`train_overrides`")
    train = parse_config(base)
    if not train.data.val:
        raise ConfigError(
            f"objective.metric {sweep.objective.metric}: trials report validation metrics only with data.val set; set it in {train_path} or with `train_overrides` data.val=<images>"
        )
    steps = train.total_steps
    if sweep.scheduler.type == "asha" and sweep.scheduler.grace_period > steps:
        raise ConfigError(
            f"scheduler.grace_period {sweep.scheduler.grace_period} is more than the {steps} training steps of a trial; lower it or train longer"
        )
    for key, dist in sweep.search.items():
        try:
            parse_config(apply_overrides(copy.deepcopy(base), [f"{key}={yaml.safe_dump(dist.example()).strip()}"]))
        except ConfigError as exc:
            raise ConfigError(f"search.{key}: not a usable training-config key or value ({exc})") from None
    return sweep, base

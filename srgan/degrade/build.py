"""A degradation by its config name (`data.degradation.name` and `params`)."""

from __future__ import annotations

from dataclasses import fields

from srgan.degrade.base import Degradation
from srgan.degrade.bicubic import Bicubic
from srgan.degrade.mri import MRI
from srgan.degrade.realistic import Realistic
from srgan.degrade.rounds import RoundSettings
from srgan.degrade.satellite import Satellite

DEGRADATIONS: dict[str, type] = {"bicubic": Bicubic, "realistic": Realistic, "satellite": Satellite, "mri": MRI}


ROUND_KEYS = {f.name for f in fields(RoundSettings)} - {"blur_prob"}


def rounds_from_flat_keys(params: dict) -> dict:
    """`realistic` params with the flat keys of configs written before the rounds were one
    dataclass (`noise_range` for round one, `noise_range2` and `second_blur_prob` for round
    two) moved into `first` / `second`, as Real-ESRGAN's option files name them."""
    params = dict(params)
    rounds = {"first": dict(params.pop("first", None) or {}), "second": dict(params.pop("second", None) or {})}
    for key in list(params):
        base, round_ = (key[:-1], "second") if key.endswith("2") else (key, "first")
        if key == "second_blur_prob":
            base, round_ = "blur_prob", "second"
        if base in ROUND_KEYS or key == "second_blur_prob":
            rounds[round_][base] = params.pop(key)
    return {**params, **{k: v for k, v in rounds.items() if v}}


def build_degradation(name: str, scale: int, **params) -> Degradation:
    """The degradation called `name` with `scale` and any of its documented parameters."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; choose one of {', '.join(DEGRADATIONS)}")
    cls = DEGRADATIONS[name]
    if cls is Realistic:
        params = rounds_from_flat_keys(params)
    known = {f.name for f in fields(cls)} - {"scale"}
    unknown = set(params) - known
    if unknown:
        raise ValueError(
            f"degradation {name!r} has no parameter(s) {', '.join(sorted(unknown))}; it takes {', '.join(sorted(known)) or 'none'}"
        )
    return cls(scale=scale, **params)

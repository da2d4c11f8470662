"""Which architecture a checkpoint from elsewhere holds, found from its keys and shapes.

Families are tried in FAMILIES' order; the first whose required keys are all present, whose
known keys cover the file's and whose shape check passes builds the model. A layout prefix
(``esrgan:<file>``) forces one family. A file no family fits is refused in one line naming
the families tried and the closest one's missing and unexpected keys.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from srgan.archs import msrresnet, rrdbnet, spandrel, srresnet
from srgan.archs.checkpoint import CheckpointError, read_file, state_of
from srgan.archs.family import Family, readable
from srgan.weights import GENERATOR_FORMAT, generator_from_payload

FAMILIES: tuple[Family, ...] = (srresnet.LORNATANG, srresnet.BLOCKS, msrresnet.FAMILY, rrdbnet.FAMILY, spandrel.FAMILY)
LAYOUTS = {family.layout: family for family in FAMILIES}


def _tried() -> str:
    return "; ".join(family.name for family in FAMILIES)


def _near_miss(state: dict) -> str:
    scored = [(family.closeness(state), family) for family in FAMILIES if family.required]
    score, closest = max(scored, key=lambda pair: pair[0])
    if score <= 0:
        sample = ", ".join(k[:80] for k in sorted(state)[:5]) + (", ..." if len(state) > 5 else "")
        return f"no family is close (its keys: {sample})"
    missing = [readable(p) for p in closest.missing(state)]
    unexpected = closest.unexpected(state)
    parts = [
        f"missing {', '.join(missing[:5])}" if missing else "",
        f"unexpected {', '.join(k[:80] for k in unexpected[:5])}" + (" ..." if len(unexpected) > 5 else "")
        if unexpected
        else "",
    ]
    detail = "; ".join(p for p in parts if p) or "its tensor shapes do not fit"
    return f"closest is {closest.name} ({closest.layout}:<file>): {detail}"


def recognise(state: dict) -> Family | None:
    """The first family that fits `state`, or None."""
    return next((family for family in FAMILIES if family.matches(state)), None)


def import_state(payload: dict, layout: str | None = None) -> tuple[nn.Module, dict]:
    """(generator in eval mode, meta) from a loaded checkpoint: recognised by its keys, or
    read as `layout` (a key of LAYOUTS) when given."""
    if layout is not None and layout not in LAYOUTS:
        raise CheckpointError(
            f"unknown checkpoint layout {layout!r}; use one of {', '.join(LAYOUTS)}, or no prefix to recognise it"
        )
    state, wrapper = state_of(payload)
    if layout is not None:
        family = LAYOUTS[layout]
        if not family.matches(state):
            problems = [
                f"missing keys {', '.join(map(readable, family.missing(state)[:5]))}" if family.missing(state) else ""
            ]
            unexpected = family.unexpected(state)
            problems.append(f"unexpected keys {', '.join(k[:80] for k in unexpected[:5])}" if unexpected else "")
            raise CheckpointError(
                f"is not a {family.name} checkpoint: {'; '.join(p for p in problems if p) or 'its shapes do not fit'}"
            )
    else:
        family = recognise(state)
        if family is None:
            raise CheckpointError(f"matches no architecture tried ({_tried()}); {_near_miss(state)}")
    model, meta = family.build(state)
    return model, {**meta, **({"wrapper": wrapper} if wrapper else {})}


def load_file(path: str | Path, layout: str | None = None) -> tuple[nn.Module, dict]:
    """(generator in eval mode, meta) from any model file: an srgan generator.pt, or a
    checkpoint from elsewhere (recognised, or read as `layout`). Read without running code."""
    payload = read_file(path)
    if payload.get("format") == GENERATOR_FORMAT and layout is None:
        return generator_from_payload(payload, str(path))
    try:
        return import_state(payload, layout)
    except CheckpointError as exc:
        raise CheckpointError(f"{path} {exc}") from None

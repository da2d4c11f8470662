"""Every other architecture spandrel recognises (MIT; the loader of ComfyUI and chaiNNer):
SwinIR, Swin2SR, HAT, DAT, SPAN, OmniSR, Real-CUGAN, Compact (SRVGGNet), PLKSR, ... Never
spandrel_extra_arches, whose licences are non-commercial.

spandrel reads the hyper-parameters off the tensors and builds the model, stopped as soon
as it outgrows the file's weights (srgan.archs.family.bounded_build). It runs here as a SpandrelGenerator: the spec records ``arch = "spandrel:<id>"``, and
rebuilding from a saved state dict checks that spandrel still sees that architecture, so
loading a registered model guesses nothing. Inputs are padded (reflect, then replicate) to
the sizes the architecture needs and the output cut back, as spandrel does.

Tiling: a model without attention has a finite receptive radius, measured as for our own
architectures (up to MAX_MEASURED input pixels). An attention model (SwinIR, HAT, ...)
partitions its input into windows from the input's origin and, layer by layer, sees further
than any tile: its tiles start on a multiple of its window size (`align`, so that a tile sees
the whole image's partition) and overlap by OVERLAP input pixels; they are not exact in
general (the measured difference from a whole-image pass is in docs/models.md).
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from srgan.archs.checkpoint import CheckpointError, check_dtypes
from srgan.archs.family import Family, bounded_build
from srgan.generator import GeneratorSpec, check_spec
from srgan.tiling import measure_radius

OVERLAP = 32  # input pixels of context around a tile of an attention model
MAX_MEASURED = 64  # beyond this radius a model counts as unbounded (tiles overlap by OVERLAP)
PREFIX = "spandrel:"


def _registry():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import spandrel

    return spandrel


def detected(state: dict) -> str | None:
    """The id of the architecture spandrel sees in `state`, or None."""
    spandrel = _registry()
    for support in spandrel.MAIN_REGISTRY.architectures("detection"):
        try:
            if support.detect(state):
                return str(support.architecture.id)
        except Exception:  # a detector that trips over a key it did not expect: not this one
            continue
    return None


class SpandrelGenerator(nn.Module):
    """A spandrel model with our generator's interface: spec, scale, receptive_radius."""

    def __init__(self, net: nn.Module, spec: GeneratorSpec, multiple: int, minimum: int, attention: bool) -> None:
        super().__init__()
        self.net, self.spec, self.multiple, self.minimum, self.attention = net, spec, multiple, minimum, attention
        self._radius: int | None = None
        window = getattr(net, "window_size", 1)
        window = max(window) if isinstance(window, (tuple, list)) else int(window or 1)
        self.align = math.lcm(max(multiple, 1), window if attention else 1)  # where tiles start

    @property
    def scale(self) -> int:
        return self.spec.scale

    @property
    def exact_tiles(self) -> bool:
        return not self.attention and self.receptive_radius < MAX_MEASURED

    @property
    def receptive_radius(self) -> int:
        """The measured radius of a model without attention; OVERLAP for one with it."""
        if self._radius is None:
            radius = None
            if not self.attention:
                probe = copy.deepcopy(self.net).cpu().float()
                radius = measure_radius(probe, self.spec.scale, self.spec.in_channels, guess=16, limit=MAX_MEASURED)
            radius = OVERLAP if radius is None else radius + self.multiple
            self._radius = -(-radius // self.align) * self.align  # a multiple of align: file windows stay aligned
        return self._radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h = max(self.minimum - h, 0) + (-max(h, self.minimum)) % self.multiple
        pad_w = max(self.minimum - w, 0) + (-max(w, self.minimum)) % self.multiple
        if pad_h or pad_w:
            rh, rw = min(pad_h, h - 1), min(pad_w, w - 1)
            x = F.pad(x, (0, rw, 0, rh), mode="reflect") if rh or rw else x
            x = F.pad(x, (0, pad_w - rw, 0, pad_h - rh), mode="replicate") if pad_h > rh or pad_w > rw else x
        out = self.net(x)
        return out[..., : h * self.spec.scale, : w * self.spec.scale]


def _has_attention(net: nn.Module) -> bool:
    return any("attention" in type(m).__name__.lower() or "attn" in type(m).__name__.lower() for m in net.modules())


def import_state(state: dict, expected: str | None = None) -> tuple[nn.Module, dict]:
    """(SpandrelGenerator in eval mode, meta) for a state dict spandrel recognises."""
    arch = detected(state)
    if arch is None:
        raise CheckpointError("not an architecture spandrel recognises")
    if expected is not None and arch != expected:
        raise CheckpointError(f"was saved as spandrel's {expected} but spandrel now reads it as {arch}")
    spandrel = _registry()

    def load():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            descriptor = spandrel.MAIN_REGISTRY.load(dict(state))
        return descriptor

    try:
        descriptor = bounded_build(load, state, f"spandrel's {arch}")
    except CheckpointError:
        raise
    except Exception as exc:  # load_state_dict's message runs over several lines: keep the telling one
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next(
            (line for line in lines if "size mismatch" in line or "Missing key" in line), lines[0] if lines else ""
        )
        raise CheckpointError(
            f"looks like spandrel's {arch} but does not load ({type(exc).__name__}: {detail[:200]})"
        ) from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose not in ("SR", "Restoration"):
        raise CheckpointError(
            f"is spandrel's {arch}, a {getattr(descriptor, 'purpose', 'non-image')} model, not super-resolution"
        )
    check_dtypes(descriptor.model.state_dict(), state, f"spandrel's {arch}")
    spec = check_spec(
        GeneratorSpec(
            scale=int(descriptor.scale),
            in_channels=int(descriptor.input_channels),
            out_channels=int(descriptor.output_channels),
            num_blocks=0,
            num_features=1,
            batch_norm=False,
            arch=PREFIX + arch,
        )
    )
    req = descriptor.size_requirements
    model = SpandrelGenerator(
        descriptor.model, spec, int(req.multiple_of), int(req.minimum), _has_attention(descriptor.model)
    )
    return model.eval(), {"arch": spec.arch, "layout": "spandrel"}


def rebuild(spec: GeneratorSpec, state: dict) -> nn.Module:
    """A SpandrelGenerator from the state dict save_generator wrote (keys net.*)."""
    inner = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    model, _ = import_state(inner, expected=spec.arch[len(PREFIX) :])
    if model.spec != spec:
        raise CheckpointError(f"its weights read as {model.spec}, not the {spec} it was saved with")
    return model


FAMILY = Family(
    name="spandrel's architectures (SwinIR, HAT, DAT, SPAN, OmniSR, Real-CUGAN, ...)",
    layout="spandrel",
    required=(),
    known=(),
    build=import_state,
    accepts=lambda state: detected(state) is not None,
)

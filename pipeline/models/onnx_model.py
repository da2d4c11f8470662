"""Generators as ONNX files: export one with dynamic batch, height and width, and run one with
onnxruntime through the same tiler as a PyTorch generator.

The exported graph is the generator's inference form (srgan.fast: BatchNorm folded, the last
PixelShuffle merged into the tail) in fp32, opset 17, input ``image`` (N, C, h, w) float32 in
[0, 1], output ``upscaled`` (N, C_out, h*s, w*s), not clamped. Its metadata property
``srgan`` holds what running it needs: the generator spec, the receptive radius the tiler
pads by, and the checkpoint's meta (data_range, ...). A file is read only under the model-file
size limit, and its metadata is not trusted: at load it must parse, hold only those keys, a
spec check_spec accepts and a radius in 0..MAX_RADIUS, and a probe input must come out
`scale` times larger with the spec's channels (check_metadata, probe). onnx and onnxruntime
are the extra ``onnx`` (`pip install 'srgan-pipeline[onnx]'`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import ModelRefError
from srgan.archs.checkpoint import MAX_FILE_BYTES
from srgan.errors import UserError
from srgan.fast import inference_form
from srgan.generator import GeneratorSpec, check_spec

META_KEY = "srgan"
OPSET = 17
MISSING = "needs onnx and onnxruntime: pip install 'srgan-pipeline[onnx]'"
META_FIELDS = ("spec", "receptive_radius", "meta")
MAX_RADIUS = 512  # input pixels; our architectures measure under 64, attention models overlap by 32
PROBE = (17, 19)  # an odd, non-square input: a graph fixed to its export size fails on it


def is_onnx(name: str) -> bool:
    """Whether the model reference `name` is an ONNX file (by its name: a file of another
    name that is not a generator is reported as such, not as a bad ONNX model)."""
    return name.lower().rstrip("/").endswith(".onnx")


def export_onnx(generator: nn.Module, meta: dict, path: Path) -> None:
    """Write `generator` (eval mode, on the CPU) to `path` as ONNX (see the module docstring)."""
    try:
        import onnx
    except ImportError as exc:
        raise ModelRefError(f"ONNX export {MISSING}") from exc
    form = inference_form(generator.cpu().eval(), "fp32")
    example = torch.rand(1, generator.spec.in_channels, 24, 24)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "upscaled": {0: "batch", 2: "out_height", 3: "out_width"}}
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                form,
                (example,),
                str(path),
                input_names=["image"],
                output_names=["upscaled"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        except Exception as exc:  # an op with no ONNX form, or control flow the tracer refuses
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise ModelRefError(
                f"architecture {generator.spec.arch} cannot be exported to ONNX ({type(exc).__name__}: {first}); "
                "upscale with the PyTorch model instead"
            ) from None
    model = onnx.load(str(path))
    info = {"spec": generator.spec.to_dict(), "receptive_radius": int(generator.receptive_radius), "meta": meta}
    model.metadata_props.add(key=META_KEY, value=json.dumps(info))
    onnx.save(model, str(path))


def read_onnx(path: Path, name: str = "the ONNX model") -> bytes:
    """The bytes of the .onnx file at `path`, refused before reading when over the model-file limit."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ModelRefError(
            f"{name} is {size / 2**30:.1f} GiB, over the {MAX_FILE_BYTES / 2**30:.1f} GiB limit for a model file; "
            "raise SRGAN_MAX_MODEL_BYTES if it is really a model"
        )
    return path.read_bytes()


def check_metadata(text: str, name: str) -> tuple[GeneratorSpec, int, dict]:
    """(spec, receptive radius, meta) from the srgan metadata property, each checked."""
    fix = "re-export it with python -m pipeline.export"
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise ModelRefError(f"{name} has srgan metadata that is not JSON ({exc}); {fix}") from None
    if not isinstance(info, dict):
        raise ModelRefError(f"{name} has srgan metadata that is a {type(info).__name__}, not an object; {fix}")
    unknown = sorted(set(info) - set(META_FIELDS))
    missing = [key for key in META_FIELDS[:2] if key not in info]
    if unknown or missing:
        what = "; ".join(
            part
            for part in (f"unknown keys {', '.join(map(str, unknown))[:200]}" if unknown else "",
                         f"missing {', '.join(missing)}" if missing else "")
            if part
        )  # fmt: skip
        raise ModelRefError(f"{name} has srgan metadata with {what} (it holds {', '.join(META_FIELDS)}); {fix}")
    try:
        spec = check_spec(info["spec"]) if isinstance(info["spec"], dict) else None
    except (UserError, TypeError) as exc:
        raise ModelRefError(f"{name} has srgan metadata whose {exc}; {fix}") from None
    if spec is None:
        raise ModelRefError(f"{name} has srgan metadata whose spec is not an object; {fix}")
    radius = info["receptive_radius"]
    if not isinstance(radius, int) or isinstance(radius, bool) or not 0 <= radius <= MAX_RADIUS:
        raise ModelRefError(
            f"{name} has srgan metadata whose receptive_radius {json.dumps(radius)[:40]} is not an integer in 0..{MAX_RADIUS}; {fix}"
        )
    meta = info.get("meta") or {}
    if not isinstance(meta, dict):
        raise ModelRefError(f"{name} has srgan metadata whose meta is a {type(meta).__name__}, not an object; {fix}")
    return spec, radius, dict(meta)


class OnnxGenerator:
    """An exported generator run by onnxruntime: call it with (N, C, h, w) float tensors like
    a PyTorch generator; `spec`, `scale`, `receptive_radius` and `meta` come from the file."""

    def __init__(self, data: bytes, threads: int | None = None, name: str = "the ONNX model") -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelRefError(f"{name} {MISSING}") from exc
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(data, options, providers=providers)
        except Exception as exc:
            raise ModelRefError(
                f"{name} is not an ONNX model onnxruntime can run ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from exc
        props = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise ModelRefError(
                f"{name} is an ONNX model without srgan metadata (its spec and receptive radius); export it with python -m pipeline.export"
            )
        self.spec, self.receptive_radius, self.meta = check_metadata(props[META_KEY], name)
        self.device = torch.device("cpu")  # tensors go in and come back on the CPU
        self.probe(name)

    def probe(self, name: str) -> None:
        """Refuse a graph whose input, output or sizes are not what its metadata says."""
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != ["image"]:
            raise ModelRefError(
                f"{name} takes inputs {', '.join(inputs)[:200]}, not the one input 'image' an export has"
            )
        h, w = PROBE
        shape = (1, self.spec.in_channels, h, w)
        try:
            out = self(torch.rand(shape, generator=torch.Generator().manual_seed(0)))
        except Exception as exc:  # onnxruntime's InvalidArgument, Fail, ...: the graph is not what the spec says
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelRefError(
                f"{name} does not run on a {shape} input as its srgan metadata says it should ({first}); "
                "re-export it with python -m pipeline.export"
            ) from None
        expected = (1, self.spec.out_channels, h * self.spec.scale, w * self.spec.scale)
        if tuple(out.shape) != expected:
            raise ModelRefError(
                f"{name} turns a {shape} input into {tuple(out.shape)}, but its srgan metadata says "
                f"{expected} (scale {self.spec.scale}, {self.spec.out_channels} channels out); "
                "re-export it with python -m pipeline.export"
            )

    @property
    def scale(self) -> int:
        return self.spec.scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"image": np.ascontiguousarray(x.detach().float().cpu().numpy())})[0]
        return torch.from_numpy(out)

"""Generators as ONNX files: export one with dynamic batch, height and width, and run one with
onnxruntime through the same tiler as a PyTorch generator.

The exported graph is the generator's inference form (srgan.fast: BatchNorm folded, the last
PixelShuffle merged into the tail) in fp32, opset 17, input ``image`` (N, C, h, w) float32 in
[0, 1], output ``upscaled`` (N, C_out, h*s, w*s), not clamped. Its metadata property
``srgan`` holds what running it needs: the generator spec, the receptive radius the tiler
pads by, and the checkpoint's meta (data_range, ...). onnx and onnxruntime are the extra
``onnx`` (`pip install 'srgan-pipeline[onnx]'`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import ModelRefError
from srgan.fast import inference_form
from srgan.generator import GeneratorSpec

META_KEY = "srgan"
OPSET = 17
MISSING = "needs onnx and onnxruntime: pip install 'srgan-pipeline[onnx]'"


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
        info = json.loads(props[META_KEY])
        self.spec = GeneratorSpec(**info["spec"])
        self.receptive_radius = int(info["receptive_radius"])
        self.meta = dict(info.get("meta") or {})
        self.device = torch.device("cpu")  # tensors go in and come back on the CPU

    @property
    def scale(self) -> int:
        return self.spec.scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"image": np.ascontiguousarray(x.detach().float().cpu().numpy())})[0]
        return torch.from_numpy(out)

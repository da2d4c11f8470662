"""Turn a model reference into something that upscales tensors. One resolver for the whole
project: evaluate, promote, upscale and the GAN phase's init_from all take these.

References:
  ``bicubic``                          the MATLAB bicubic baseline (no weights)
  a model file, local or ``s3://``: an srgan ``generator.pt``, or a checkpoint trained
      elsewhere (``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``), recognised by its keys and
      shapes (srgan.archs: MSRResNet, RRDBNet, SRResNet reimplementations, and every
      architecture spandrel knows) and converted to an srgan generator.pt
  ``esrgan:<file>``, ``basicsr:<file>``, ``srgan-pytorch:<file>``, ``srgan-blocks:<file>``,
      ``spandrel:<file>``   the same, read as that layout (an override; no guessing)
  ``path/generator.onnx``, ``s3://...onnx``   a generator exported by pipeline.export (onnxruntime)
  a checkpoint folder (local or s3://) holding generator.pt
  ``runs:/<run id>``                   the generator.pt a training run logged
  ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``models:/m-<id>``   an MLflow model

MLflow models are loaded from the srgan checkpoint they carry (``data/generator.pt``, or
``extra_files/generator.pt`` in models logged before pipeline.serving) with
``torch.load(weights_only=True)``, never through the model's own loader.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch
from torch import nn

from pipeline import tracking
from pipeline.errors import ModelRefError, UsageError
from pipeline.io import storage
from pipeline.io.redact import redact_uri
from pipeline.models.onnx_model import OnnxGenerator, is_onnx, read_onnx
from srgan.archs.checkpoint import is_checkpoint_name
from srgan.archs.registry import LAYOUTS, load_file
from srgan.errors import UserError
from srgan.fast import inference_form
from srgan.generator import check_scale
from srgan.resize import imresize
from srgan.tiling import crop_region, upscale_tiled
from srgan.weights import WeightsError, load_generator, save_generator

BICUBIC = "bicubic"
REFERENCE_HELP = "give 'bicubic', a model file (.pt, .pth, .ckpt, .safetensors, .onnx), a checkpoint folder, runs:/<run id> or models:/<name>@<alias>"


@dataclass
class Upscaler:
    """A generator (or bicubic) with what is needed to run it.

    Call with (N, C, h, w) float in [0, 1]; returns (N, C_out, h*scale, w*scale) in [0, 1]
    on the CPU. `tile` bounds memory (0: whole image at once). The generator runs in its
    inference form (srgan.fast: BatchNorm folded, channels_last, in `precision`), built once
    per precision and shared by copies made with dataclasses.replace.
    """

    name: str
    scale: int
    generator: nn.Module | None = None
    meta: dict = field(default_factory=dict)
    tile: int = 256
    batch_size: int = 4
    precision: str = "fp32"  # or bf16 / fp16: the weights and activations of the inference form
    forms: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def data_range(self) -> float | None:
        """The stored value the model's training read as 1.0 (its checkpoint's `data_range`), if
        one range covered all its training data; None otherwise."""
        value = self.meta.get("data_range")
        return float(value) if value else None

    @property
    def in_channels(self) -> int | None:
        return None if self.generator is None else self.generator.spec.in_channels

    @property
    def pad(self) -> int:
        """Input pixels of context an output pixel depends on (windows need this much overlap)."""
        return 4 if self.generator is None else int(self.generator.receptive_radius)

    @property
    def device(self) -> torch.device:
        if self.generator is None:
            return torch.device("cpu")
        return getattr(self.generator, "device", None) or next(self.generator.parameters()).device

    def form(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The generator as it runs: its inference form in this precision (built once)."""
        if self.precision not in self.forms:
            self.forms[self.precision] = (
                inference_form(self.generator, self.precision)
                if isinstance(self.generator, nn.Module)
                else self.generator
            )
        return self.forms[self.precision]

    def __call__(self, lr: torch.Tensor, region: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """`region` (top, bottom, left, right): upscale only that part of `lr`, the rest
        being context (see srgan.tiling.upscale_tiled)."""
        with torch.inference_mode():
            if self.generator is None:
                return crop_region(imresize(lr.float(), float(self.scale)).clamp(0, 1), region, self.scale)
            if lr.shape[1] != self.in_channels:
                raise ModelRefError(
                    f"model {self.name} takes {self.in_channels}-channel images, got {lr.shape[1]} channels"
                )
            out = upscale_tiled(
                self.form(),
                lr.float(),
                self.scale,
                tile=self.tile,
                pad=self.pad,
                batch_size=self.batch_size,
                region=region,
            )
            return out.clamp_(0, 1)


def pick_device(name: str | None = None) -> torch.device:
    """The device `name` names (cpu, cuda, cuda:N; CUDA only where there is one), or by
    default CUDA when there is one, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"`device` {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"`device` {name}: no CUDA device here; use cpu")
    return device


def _mlflow_download(uri: str, tracking_uri: str | None) -> Path:
    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_reachable(tracking_uri, must_exist=True)
    from mlflow.exceptions import MlflowException

    try:
        return tracking.download(uri, tracking_uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelRefError(f"cannot load {uri} from MLflow at {tracking.display_uri(tracking_uri)}: {first}") from exc


def _model_weights(model_dir: Path) -> Path:
    """The generator.pt inside a downloaded MLflow model, in its current or its old layout."""
    for relative in (tracking.MODEL_WEIGHTS, tracking.OLD_MODEL_WEIGHTS):
        if (model_dir / relative).is_file():
            return model_dir / relative
    return model_dir / tracking.MODEL_WEIGHTS  # not there: generator_file says so


def _stored_file(ref: str, uri: str, workdir: Path) -> Path:
    """A local path to the file at `uri` (local or s3://, downloaded into `workdir`)."""
    if not storage.exists(uri):
        raise ModelRefError(f"model {ref!r}: {uri} does not exist; {REFERENCE_HELP}")
    if storage.is_s3(uri):
        path = workdir / PurePosixPath(uri).name
        storage.download(uri, path)
        return path
    return Path(uri)


def generator_file(ref: str, workdir: Path, tracking_uri: str | None = None) -> Path:
    """A local path to the generator file (generator.pt or .onnx) that `ref` names
    (downloading it into `workdir`)."""
    if ref.startswith("models:/"):
        path = _model_weights(_mlflow_download(ref, tracking_uri))
    elif ref.startswith("runs:/"):
        rest = ref[len("runs:/") :].strip("/")
        if "/" not in rest:
            rest += "/generator.pt"
        path = _mlflow_download(f"runs:/{rest}", tracking_uri)
        if path.is_dir():
            path = _model_weights(path)
    else:
        uri = storage.local_or_uri(ref)
        if not _names_a_file(uri):
            uri = storage.join(uri, "generator.pt")
        path = _stored_file(ref, uri, workdir)
    if not path.is_file():
        raise ModelRefError(f"model {ref!r} holds no srgan generator (looked for {path.name})")
    return path


def _names_a_file(uri: str) -> bool:
    """Whether `uri` is a model file rather than a checkpoint folder: it ends like one, or it
    is a file (a local one, or an S3 object)."""
    if is_checkpoint_name(uri) or is_onnx(uri):
        return True
    if storage.is_s3(uri):
        return storage.exists(uri) and not storage.exists(storage.join(uri, "generator.pt"))
    return Path(uri).is_file()


def foreign_layout(ref: str) -> tuple[str, str] | None:
    """(layout, file URI) of a reference forced to a layout (``esrgan:<file>``, srgan.archs)."""
    layout, sep, rest = ref.partition(":")
    return (layout, rest) if sep and layout in LAYOUTS and not rest.startswith("//") else None


def read_generator(
    data: bytes, name: str, device: str | torch.device = "cpu", threads: int | None = None
) -> tuple[nn.Module | OnnxGenerator, dict]:
    """(generator, meta) from the bytes fetch_generator_bytes returns for reference `name`: an
    srgan generator.pt (eval mode, on `device`) or, for a .onnx name, an ONNX export (run by
    onnxruntime with `threads`)."""
    if is_onnx(name):
        generator = OnnxGenerator(data, threads, f"model {name!r}")
        return generator, generator.meta
    try:
        return load_generator(io.BytesIO(data), map_location=device)
    except WeightsError as exc:
        raise ModelRefError(f"model {name!r}: {exc}") from exc


def fetch_generator_bytes(ref: str, tracking_uri: str | None = None) -> tuple[bytes, nn.Module | OnnxGenerator, dict]:
    """(the generator's bytes, the generator on the CPU, its meta) for any reference but
    'bicubic'; the bytes are what a pool of workers is handed. A checkpoint trained elsewhere
    is recognised by its keys (or read as the layout its prefix names) and converted to an
    srgan generator.pt, so that the bytes always hold the architecture: loading them guesses
    nothing."""
    forced = foreign_layout(ref)
    with tempfile.TemporaryDirectory() as tmp:
        if forced is None:
            layout, path = None, generator_file(ref, Path(tmp), tracking_uri)
        else:
            layout, path = forced[0], _stored_file(ref, storage.local_or_uri(forced[1]), Path(tmp))
        if is_onnx(path.name) and layout is None:
            data = read_onnx(path, f"model {ref!r}")
            return data, *read_generator(data, ref if is_onnx(ref) else path.name)
        try:
            generator, meta = load_file(path, layout)
        except UserError as exc:
            raise ModelRefError(f"model {ref!r}: {exc}") from exc
        if "layout" not in meta:  # an srgan generator.pt already
            return path.read_bytes(), generator, meta
        converted = Path(tmp) / "converted" / "generator.pt"
        save_generator(converted, generator, {**meta, "imported_from": redact_uri(ref)})
        data = converted.read_bytes()
    return data, *read_generator(data, ref)


def fetch_generator(
    ref: str, tracking_uri: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """(generator in eval mode, meta) for any reference but 'bicubic' (see module docstring);
    a PyTorch module, so not an ONNX export."""
    _, generator, meta = fetch_generator_bytes(ref, tracking_uri)
    if not isinstance(generator, nn.Module):
        raise ModelRefError(
            f"model {ref!r} is an ONNX export, which can only upscale; give the srgan generator it was exported from"
        )
    return generator.to(map_location), meta


def load_upscaler(
    ref: str,
    device: torch.device | None = None,
    scale: int | None = None,
    tile: int = 256,
    tracking_uri: str | None = None,
    **options,
) -> Upscaler:
    """Upscaler for `ref`. `scale` is required for bicubic and, for a model, must agree with
    the model's own scale when given. `options`: Upscaler's batch_size, precision."""
    if scale is not None:
        check_scale(scale)
    if ref == BICUBIC:
        if scale is None:
            raise ModelRefError("the bicubic baseline needs a scale (`scale`)")
        return Upscaler(name=BICUBIC, scale=scale, tile=tile, **options)
    _, generator, meta = fetch_generator_bytes(ref, tracking_uri)
    if isinstance(generator, nn.Module):
        generator = generator.to(device or pick_device())
    if scale is not None and scale != generator.scale:
        raise ModelRefError(
            f"model {ref} upscales x{generator.scale}, but `scale` {scale} was asked for; drop `scale` or pick a x{scale} model"
        )
    return Upscaler(name=str(ref), scale=generator.scale, generator=generator, meta=meta, tile=tile, **options)

"""Where weights come from: the VGG19 content-loss backbone and generator checkpoints.

VGG19 weights have three sources, chosen by one string:
  * ``"torchvision"``: torchvision's ImageNet weights (VGG19_Weights.IMAGENET1K_V1), through
    torchvision's own download and cache (``$TORCH_HOME/hub/checkpoints``);
  * a local file path: a ``torch.save``'d state dict of torchvision's ``vgg19`` (keys
    ``features.N.weight``) or of its ``features`` part alone (keys ``N.weight``);
  * a URI (``s3://...``, ``https://...``): downloaded once into a local cache by a fetch
    function (the pipeline supplies S3; plain HTTP(S) works out of the box), then loaded as
    a file. Give ``sha256`` to have the file checked.
The expected preprocessing is ImageNet's: RGB in [0, 1], normalised by mean/std (see losses).
Every load uses ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from srgan.errors import UserError
from srgan.generator import build_generator, check_spec

Fetch = Callable[[str, Path], None]

VGG_SOURCE_HELP = (
    "set the VGG19 weights source to one of: 'torchvision' (ImageNet weights via torchvision's "
    "download/cache; on an offline machine pre-seed $TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth), "
    "a local file path to a vgg19 state dict, or an s3:// URI (downloaded once and cached; add its sha256 to have it checked)"
)

GENERATOR_FORMAT = "srgan-generator/1"


class WeightsError(UserError):
    """Weights could not be found, fetched, verified or loaded."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_root() -> Path:
    """Where srgan and the pipeline keep what they download or write once: $SRGAN_CACHE, else ~/.cache/srgan."""
    return Path(os.environ.get("SRGAN_CACHE", Path.home() / ".cache" / "srgan"))


def default_cache_dir() -> Path:
    return cache_root() / "weights"


def _is_uri(source: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source) is not None


def _http_fetch(uri: str, dest: Path) -> None:
    torch.hub.download_url_to_file(uri, str(dest), progress=False)


def cached_fetch(
    uri: str, sha256: str | None = None, fetch: Fetch | None = None, cache_dir: Path | None = None
) -> Path:
    """Local path of `uri`, downloading it into the cache the first time.

    The download lands in a temporary file renamed into place only when complete (and
    checked against `sha256` when given), so an interrupted fetch never leaves a bad cache.
    """
    if fetch is None:
        if uri.startswith(("http://", "https://")):
            fetch = _http_fetch
        else:
            raise WeightsError(
                f"no fetcher for {uri!r}: the srgan core downloads http(s) only; load it through the pipeline (which reads s3://) or download it and pass a local path"
            )
    cache_dir = cache_dir or default_cache_dir()
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = cache_dir / f"{key}-{Path(uri.rstrip('/')).name or 'weights'}"
    if not target.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".partial-")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            fetch(uri, tmp)
            if sha256 and sha256_of(tmp) != sha256.lower():
                raise WeightsError(
                    f"sha256 mismatch for {uri}: expected {sha256}, got {sha256_of(tmp)}; check the URI or the checksum in the config"
                )
            tmp.replace(target)
        except WeightsError:
            raise
        except Exception as exc:  # any fetch failure: report the URI and the cause on one line
            raise WeightsError(f"could not download {uri}: {type(exc).__name__}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
    return target


def _load_state_dict(path: Path, sha256: str | None) -> dict:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if sha256 and sha256_of(path) != sha256.lower():
        raise WeightsError(f"sha256 mismatch for {path}: expected {sha256}; the file is not the one configured")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"could not read weights from {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return state


def load_state_dict_source(source: str, sha256: str | None = None, fetch: Fetch | None = None, hint: str = "") -> dict:
    """State dict from a local file path or a URI (fetched once into the cache, see
    `cached_fetch`), checked against `sha256` when given. `hint` (the fix) ends the message
    when the file does not exist."""
    path = cached_fetch(source, sha256, fetch) if _is_uri(source) else Path(source).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist" + (f"; {hint}" if hint else ""))
    return _load_state_dict(path, sha256)


def load_features_state(features: nn.Sequential, state: dict, arch: str, hint: str) -> nn.Sequential:
    """`features` (a torchvision model's `features` stack) loaded from a full state dict
    (keys `features.N.*`) or a features-only one (keys `N.*`); WeightsError naming `arch` and
    ending with `hint` when the keys or shapes do not fit."""
    if any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"not a {arch} state dict ({first}); {hint}") from exc
    return features


def vgg19_features(state: dict | None = None) -> nn.Sequential:
    """torchvision's VGG19 `features` stack, loaded from a full or a features-only state dict."""
    from torchvision.models import vgg19

    features = vgg19(weights=None).features
    if state is None:
        return features
    return load_features_state(features, state, "VGG19", VGG_SOURCE_HELP)


def _torchvision_vgg19_state() -> dict:
    from torchvision.models import VGG19_Weights

    try:
        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsError(
            f"VGG19 ImageNet weights are not in torchvision's cache ({cache}) and could not be downloaded "
            f"({type(exc).__name__}); {VGG_SOURCE_HELP}"
        ) from exc


def load_vgg19_features(source: str | None, sha256: str | None = None, fetch: Fetch | None = None) -> nn.Sequential:
    """VGG19 `features` with weights from `source` (see module docstring). Raises WeightsError."""
    if not source:
        raise WeightsError(f"no VGG19 weights source configured; {VGG_SOURCE_HELP}")
    if source == "torchvision":
        return vgg19_features(_torchvision_vgg19_state())
    path = cached_fetch(source, sha256, fetch) if _is_uri(source) else Path(source).expanduser()
    if not path.exists():
        raise WeightsError(f"VGG19 weights file {path} does not exist; {VGG_SOURCE_HELP}")
    return vgg19_features(_load_state_dict(path, sha256))


def save_generator(path: str | Path, generator: nn.Module, meta: dict | None = None) -> None:
    """Write a generator with the spec needed to rebuild it (and free-form `meta`)."""
    model = getattr(generator, "module", generator)  # unwrap DDP
    payload = {
        "format": GENERATOR_FORMAT,
        "spec": model.spec.to_dict(),
        "state_dict": model.state_dict(),
        "meta": meta or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_generator(path: str | Path | BinaryIO, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(generator in eval mode, meta) from a file (or an open binary stream of one) written
    by `save_generator`."""
    if isinstance(path, (str, Path)):
        payload = _load_state_dict(Path(path), None)
    else:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"could not read a generator from the stream: {type(exc).__name__}: {exc}") from exc
        path = "<stream>"
    model, meta = generator_from_payload(payload, str(path))
    return model.to(map_location), meta


def generator_from_payload(payload: dict, where: str = "<stream>") -> tuple[nn.Module, dict]:
    """(generator in eval mode, meta) from what `save_generator` wrote, already loaded. The
    spec's sizes are bounded and the model built on the meta device first (a file naming a
    million blocks is refused, not built)."""
    from srgan.archs.checkpoint import CheckpointError, check_dtypes, check_tensors
    from srgan.archs.family import bounded_build

    if not isinstance(payload, dict) or payload.get("format") != GENERATOR_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise WeightsError(
            f"{where} is not an srgan generator checkpoint (format {found!r}, expected {GENERATOR_FORMAT!r})"
        )
    state, meta = payload.get("state_dict"), payload.get("meta", {})
    if not isinstance(state, dict) or not isinstance(payload.get("spec"), dict) or not isinstance(meta, dict):
        raise WeightsError(
            f"{where} is not a whole srgan generator checkpoint (spec, state_dict and meta must be dicts)"
        )
    try:
        check_tensors(state)
        spec = check_spec(payload["spec"])
        if spec.arch.startswith("spandrel:"):
            from srgan.archs.spandrel import rebuild

            model = rebuild(spec, state)
        else:
            model = bounded_build(lambda: build_generator(spec), state, f"the generator in {where}")
            check_dtypes(model.state_dict(), state, "srgan generator")
            model.load_state_dict(state)
    except (UserError, CheckpointError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{where} holds a generator that cannot be rebuilt: {first}") from None
    return model.eval(), dict(meta)

"""Training configuration: pydantic models, one per section, loaded from YAML.

Defaults are the paper's SRGAN settings (Ledig et al. 2017, sec. 3.2): SRResNet with 16
blocks, 96 px HR patches, batch 16, Adam (beta1 0.9) at lr 1e-4; a PSNR phase of 10^6
steps, then a GAN phase of 2x10^5 steps with the lr dropped to 1e-5 half way; content
loss on VGG19 phi_5,4 with weight 1 and adversarial weight 1e-3.

    cfg = load_config("configs/srgan_x4.yaml", overrides=["train.batch_size=32"])

Unknown keys and bad values fail at load time with the dotted key in the message.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError
from pipeline.formats import EXTENSIONS
from pipeline.io.redact import redact_uri
from srgan.degrade import build_degradation
from srgan.errors import UserError
from srgan.generator import SCALES, GeneratorSpec, build_generator, check_scale
from srgan.losses import PAPER_FEATURE_SCALE, VGG19_LAYERS
from srgan.precision import PRECISIONS


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _folder_name(name: str) -> str:
    """A run or sweep name is one folder under the storage path: a name like ../x would put
    checkpoints outside it."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or ".." in name:
        raise ValueError(
            f"{name!r} is not a folder name: use letters, digits, '-', '_' and '.', starting with a letter or digit, no '..', e.g. srgan-x4-a"
        )
    return name


FolderName = Annotated[str, AfterValidator(_folder_name)]


class RunSection(Section):
    name: FolderName | None = Field(None, description="run folder under storage_path; default srgan-<timestamp>")
    storage_path: str = Field("./ray_results", description="checkpoints go here: a local path or s3://bucket/prefix")
    seed: int = 0


class DegradationSection(Section):
    name: Literal["bicubic", "realistic", "satellite", "mri"] = "bicubic"
    params: dict[str, Any] = Field(default_factory=dict, description="parameters of the srgan.degrade class")


class DataSection(Section):
    train: str = Field(..., description="HR training images: s3://bucket/prefix/, a local folder, or samples://photos")
    val: str | None = Field(None, description="HR validation images (same forms); none: no validation")
    extensions: list[str] = Field(default_factory=lambda: list(EXTENSIONS))
    patch_size: int = Field(96, description="HR patch size (the paper's 96 for x4)")
    patches_per_image: int = Field(16, ge=1, description="random HR crops taken from each image per epoch")
    degradation: DegradationSection = Field(default_factory=DegradationSection)
    data_range: float | tuple[float, float] | None = Field(
        None,
        description="stored value that maps to 1.0 (e.g. 4095), or [low, high] mapped to 0..1 (e.g. [-1024, 3071]); default: what each file declares, else the dtype's maximum",
    )
    val_crop: int | None = Field(None, description="centre-crop validation images to this HR size; none: whole images")
    val_max_images: int | None = Field(None, ge=1, description="use at most this many validation images")
    grid_images: int = Field(4, ge=0, description="validation images shown in each LR|bicubic|SR|HR grid")
    shuffle_buffer: int = Field(16, ge=0, description="training batches in each worker's local shuffle buffer")
    read_cpus: float = Field(0.25, gt=0, description="CPUs per Ray Data read/decode task")
    images_per_task: int = Field(
        4,
        ge=1,
        description="images decoded and cropped per Ray Data task (at least a worker's batch, so a batch's crops come from distinct images)",
    )
    degrade_on: Literal["cpu", "device"] = Field(
        "cpu",
        description="cpu: Ray Data tasks make the LR; device: workers degrade each batch on their own device (GPU), Ray Data ships HR crops",
    )

    @field_validator("extensions")
    @classmethod
    def _dotted(cls, v: list[str]) -> list[str]:
        return [e.lower() if e.startswith(".") else f".{e.lower()}" for e in v]

    @field_validator("data_range", mode="before")
    @classmethod
    def _range(cls, v: Any) -> Any:
        """A maximum above 0, or [low, high] with low below high."""
        number = (int, float)
        if v is None or (isinstance(v, number) and not isinstance(v, bool) and v > 0):
            return v
        if (
            isinstance(v, (list, tuple))
            and len(v) == 2
            and all(isinstance(x, number) and not isinstance(x, bool) for x in v)
        ):
            if not v[0] < v[1]:
                raise ValueError(f"[{v[0]:g}, {v[1]:g}]: give [low, high] with low below high")
            return tuple(float(x) for x in v)
        raise ValueError(
            f"{v!r}: give the stored value that maps to 1.0 (e.g. 4095) or [low, high] (e.g. [-1024, 3071])"
        )


class GeneratorSection(Section):
    arch: Literal["srresnet", "msrresnet", "rrdbnet"] = Field(
        "srresnet",
        description="srresnet: the paper's (BatchNorm optional); msrresnet: BasicSR's (no BatchNorm, bilinear skip); rrdbnet: ESRGAN's (no BatchNorm, growth); train.init_from sets it from the checkpoint",
    )
    scale: int = Field(4, description=f"one of {', '.join(map(str, SCALES))}")
    in_channels: int = Field(3, ge=1)
    out_channels: int = Field(3, ge=1)
    num_blocks: int = Field(16, ge=1)
    num_features: int = Field(64, ge=1)
    growth: int = Field(32, ge=1, description="rrdbnet: channels each dense-block convolution adds")
    batch_norm: bool = True
    bicubic_skip: bool = Field(
        False, description="learn a residual over bicubic (not in the paper); helps small, short runs"
    )
    output: Literal["linear", "tanh"] = Field(
        "linear", description="srresnet's last activation: linear, or tanh for (tanh(x) + 1) / 2"
    )

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, v: int) -> int:
        return check_scale(v)

    @model_validator(mode="after")
    def _buildable(self) -> GeneratorSection:
        """The architecture's own rules (msrresnet and rrdbnet have no BatchNorm, ...), checked on
        a two-feature copy before any worker starts."""
        try:
            build_generator(replace(self.spec(), num_blocks=1, num_features=2, growth=2))
        except UserError as exc:
            raise ValueError(f"model.generator.arch {self.arch}: {exc}") from None
        return self

    def spec(self) -> GeneratorSpec:
        """The srgan.generator spec these settings describe."""
        return GeneratorSpec(**{name: getattr(self, name) for name in GeneratorSpec.__dataclass_fields__})

    @classmethod
    def of(cls, spec: GeneratorSpec) -> GeneratorSection:
        """The settings that build `spec` (train.init_from: the checkpoint's architecture)."""
        return cls(**spec.to_dict())


class DiscriminatorSection(Section):
    base_features: int = Field(64, ge=1)
    spectral_norm: bool = False


class ModelSection(Section):
    generator: GeneratorSection = Field(default_factory=GeneratorSection)
    discriminator: DiscriminatorSection = Field(default_factory=DiscriminatorSection)


class LossWeightsSection(Section):
    content: float = Field(1.0, ge=0)
    adversarial: float = Field(1e-3, ge=0)
    pixel: float = Field(0.0, ge=0)


class LossSection(Section):
    weights: LossWeightsSection = Field(default_factory=LossWeightsSection)
    pixel: Literal["l1", "mse"] = "mse"
    gan_type: Literal["vanilla", "ragan", "lsgan"] = "vanilla"
    content_backbone: Literal["vgg19", "discriminator"] = Field(
        "vgg19", description="vgg19: the paper's loss; discriminator: feature matching on D's conv stages (no download)"
    )
    vgg_layer: str = "relu5_4"
    vgg_weights: str = Field("torchvision", description="'torchvision', a local file path, or an s3:// URI")
    vgg_sha256: str | None = None
    feature_scale: float | None = Field(
        None, description=f"default {PAPER_FEATURE_SCALE:.5f} (1/12.75) for vgg19, 1.0 for discriminator"
    )
    rgb_bands: list[int] | None = Field(None, description="bands forming the RGB image fed to VGG (N-band data)")

    @field_validator("vgg_layer")
    @classmethod
    def _known_layer(cls, v: str) -> str:
        if v not in VGG19_LAYERS:
            raise ValueError(f"unknown VGG19 layer {v!r}; choose one of {', '.join(VGG19_LAYERS)}")
        return v

    @property
    def effective_feature_scale(self) -> float:
        if self.feature_scale is not None:
            return self.feature_scale
        return PAPER_FEATURE_SCALE if self.content_backbone == "vgg19" else 1.0


class PretrainSection(Section):
    steps: int = Field(1_000_000, ge=0)
    lr: float = Field(1e-4, gt=0)


class GanSection(Section):
    steps: int = Field(200_000, ge=0)
    lr: float = Field(1e-4, gt=0, description="generator lr (and discriminator lr unless d_lr is set)")
    d_lr: float | None = Field(None, gt=0, description="discriminator lr; default: lr")
    lr_drop_step: int | None = Field(100_000, description="GAN-phase step at which lr is multiplied by lr_drop_factor")
    lr_drop_factor: float = Field(0.1, gt=0)
    init_from: str | None = Field(
        None,
        description="generator to start the GAN phase from when it runs alone (phases [gan]); the same as train.init_from there",
    )
    d_features_every: int = Field(
        100,
        ge=1,
        description="loss.content_backbone discriminator: G's content loss uses a frozen copy of D (eval mode) taken at the start of the GAN phase and again every this many GAN steps",
    )


class TrainSection(Section):
    phases: list[Literal["pretrain", "gan"]] = Field(default_factory=lambda: ["pretrain", "gan"])
    batch_size: int = Field(16, ge=1, description="global batch size, divided among the workers")
    pretrain: PretrainSection = Field(default_factory=PretrainSection)
    gan: GanSection = Field(default_factory=GanSection)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    init_from: str | None = Field(
        None,
        description="start from this generator (any model reference: a file in any recognised layout, a checkpoint folder, runs:/, models:/); its architecture replaces model.generator",
    )
    precision: str = Field(
        "auto", description=f"one of {', '.join(PRECISIONS)}; auto: bf16 on GPUs that have it, fp32 otherwise"
    )
    ema_decay: float = Field(0.999, ge=0, lt=1)
    ema_bn_batches: int = Field(
        8,
        ge=0,
        description="recent LR batches over which the EMA generator's BatchNorm statistics are recomputed for its own weights before each validation and checkpoint (0: keep the live generator's)",
    )
    sync_batch_norm: Literal["auto"] | bool = Field(
        "auto", description="BatchNorm statistics over all workers' batches (DDP); auto: on with more than one worker"
    )
    log_every: int = Field(100, ge=1)
    val_every: int = Field(5000, ge=1)
    lpips_weights: str | None = Field(
        "torchvision",
        description="LPIPS AlexNet backbone for validation: 'torchvision' (its cache, never downloaded), a local file or s3:// URI; null: no LPIPS. Not found: validation says so once and goes on without it",
    )
    checkpoint_every: int = Field(5000, ge=1)
    num_to_keep: int = Field(3, ge=1, description="checkpoints kept in storage")
    max_failures: int = Field(3, ge=-1, description="worker-failure restarts before the run fails (-1: unlimited)")

    @field_validator("precision", mode="before")
    @classmethod
    def _known_precision(cls, v) -> str:
        if v in ("off", False):  # the name before fp32 (YAML reads a bare off as false)
            return "fp32"
        if v not in PRECISIONS:
            raise ValueError(f"{v!r} is not one of {', '.join(PRECISIONS)}")
        return v

    @field_validator("phases")
    @classmethod
    def _phase_order(cls, v: list[str]) -> list[str]:
        if v not in (["pretrain"], ["gan"], ["pretrain", "gan"]):
            raise ValueError(f"phases must be [pretrain], [gan] or [pretrain, gan], got {v}")
        return v


class ScalingSection(Section):
    num_workers: int = Field(1, ge=1)
    min_workers: int | None = Field(
        None,
        ge=1,
        description="elastic: train on as few as this many workers when nodes are lost (up to num_workers); none: always num_workers, waiting for lost nodes to return",
    )
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0, description="leave CPUs free for Ray Data tasks on small machines")
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources each worker needs besides CPU/GPU, e.g. {accelerator_type:H100: 0.001}",
    )

    @model_validator(mode="after")
    def _min_not_above_max(self):
        if self.min_workers is not None and self.min_workers > self.num_workers:
            raise ValueError(
                f"scaling.min_workers {self.min_workers} is above scaling.num_workers {self.num_workers}; give at most {self.num_workers}"
            )
        return self


class MlflowSection(Section):
    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    experiment: str = "srgan"
    artifact_location: str | None = Field(
        None, description="for a new experiment; default ./mlartifacts with a local tracking store"
    )
    log_model: bool = True
    outage_s: float = Field(
        300.0,
        gt=0,
        description="how long training keeps its metrics and goes on while the tracking server does not answer, before the run stops (checkpoints kept; continue with --resume)",
    )


class S3Section(Section):
    endpoint_url: str | None = Field(
        None, description="default: $AWS_ENDPOINT_URL (credentials always come from the AWS chain)"
    )
    region: str | None = Field(None, description="default: $AWS_REGION / the AWS config")
    retry_s: float = Field(
        120.0,
        gt=0,
        description="how long an S3 read or write (checkpoints included) is retried, with backoff, while the endpoint does not answer",
    )


class DebugSection(Section):
    fail_once_at_step: int | None = Field(
        None, description="test hook: a worker raises once at this step (off by default)"
    )
    step_sleep_s: float = Field(
        0.0, ge=0, description="test hook: each step takes at least this long, so fault tests can act mid-run (0: off)"
    )


class TrainConfig(Section):
    run: RunSection = Field(default_factory=RunSection)
    data: DataSection
    model: ModelSection = Field(default_factory=ModelSection)
    loss: LossSection = Field(default_factory=LossSection)
    train: TrainSection = Field(default_factory=TrainSection)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    mlflow: MlflowSection = Field(default_factory=MlflowSection)
    s3: S3Section = Field(default_factory=S3Section)
    debug: DebugSection = Field(default_factory=DebugSection)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        g = self.model.generator
        if self.data.patch_size % g.scale:
            raise ValueError(
                f"data.patch_size {self.data.patch_size} must be a multiple of model.generator.scale {g.scale}"
            )
        if self.data.patch_size // g.scale < 4:
            raise ValueError(
                f"data.patch_size {self.data.patch_size} gives LR patches under 4 px at x{g.scale}; use at least {4 * g.scale}"
            )
        if self.train.batch_size % self.scaling.num_workers:
            raise ValueError(
                f"train.batch_size {self.train.batch_size} must divide evenly among scaling.num_workers {self.scaling.num_workers}"
            )
        if g.in_channels != g.out_channels:
            raise ValueError("model.generator.in_channels and out_channels must match for training on HR/LR pairs")
        if self.data.val_crop is not None and self.data.val_crop % g.scale:
            raise ValueError(
                f"data.val_crop {self.data.val_crop} must be a multiple of model.generator.scale {g.scale}"
            )
        if self.loss.rgb_bands is not None and (
            len(self.loss.rgb_bands) != 3 or max(self.loss.rgb_bands) >= g.in_channels
        ):
            raise ValueError(f"loss.rgb_bands must name 3 of the {g.in_channels} bands, got {self.loss.rgb_bands}")
        self._pixel_with_discriminator_features()
        try:
            build_degradation(self.data.degradation.name, g.scale, **self.data.degradation.params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"data.degradation.params: {exc}") from None
        return self

    def _pixel_with_discriminator_features(self) -> None:
        """Feature matching on D keeps no colour or brightness of its own: a GAN phase with it needs
        a pixel term. An unset loss.weights.pixel becomes 1.0 there; an explicit 0 is refused."""
        weights = self.loss.weights
        if self.loss.content_backbone != "discriminator" or weights.content == 0 or "gan" not in self.train.phases:
            return
        if weights.pixel > 0:
            return
        if "pixel" in weights.model_fields_set:
            raise ValueError(
                "loss.weights.pixel must be > 0 with loss.content_backbone discriminator (feature matching on D "
                "keeps no colour or brightness); set e.g. loss.weights.pixel=1.0, or use content_backbone vgg19"
            )
        weights.pixel = 1.0

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + (self.train.gan.steps if "gan" in self.train.phases else 0)

    @property
    def pretrain_steps(self) -> int:
        return self.train.pretrain.steps if "pretrain" in self.train.phases else 0

    @property
    def worker_batch_size(self) -> int:
        return self.train.batch_size // self.scaling.num_workers


def _set_dotted(tree: dict, dotted: str, value: Any, what: str) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{what} {dotted}: {k!r} is a value, not a section")
        node = child
    node[keys[-1]] = value


def apply_overrides(tree: dict, overrides: list[str], what: str = "`overrides`") -> dict:
    """Apply `key.sub=value` strings (values parsed as YAML: 2e-4, true, [a, b]); `what`
    names where they came from in an error (a parameter in backticks, or a config key)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{what} {item!r}: expected key.path=value, e.g. train.batch_size=32")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            reason = str(exc).splitlines()[0]
            raise ConfigError(
                f"{what} {item!r}: the value is not valid YAML ({reason}); close brackets and quote text, e.g. 'mlflow.experiment=\"a: b\"'"
            ) from None
        _set_dotted(tree, key.strip(), value, what)
    return tree


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/srgan_x4.yaml for every key)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        parts.append(f"{key}: {msg}" if key else msg)
    return "; ".join(parts)


def parse_config(tree: dict, model: type[BaseModel] = TrainConfig) -> Any:
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(f"invalid config: {_describe(err)}") from None


def load_yaml(path: str | Path | None) -> dict:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config file {path} cannot be read as text ({type(exc).__name__}: {exc}); give a YAML file"
        ) from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return tree


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, model: type[BaseModel] = TrainConfig
) -> Any:
    """Config from YAML `path` with `key=value` overrides applied, validated."""
    return parse_config(apply_overrides(load_yaml(path), overrides or []), model)


SECRET_MARKERS = ("secret", "password", "token", "access_key", "credential")


def flatten(cfg: BaseModel) -> dict[str, str]:
    """Dotted key -> string value, for MLflow params; keys that look secret are left out and
    credentials inside URIs (user:password@, a presigned signature) masked."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif not any(m in prefix.lower() for m in SECRET_MARKERS):
            out[prefix] = redact_uri(str(value))

    walk("", cfg.model_dump(mode="json"))
    return out

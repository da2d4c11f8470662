"""What tests share: small but real-looking images and the bad files a bucket collects, files
in published layouts (12-bit PNG, GeoTIFF, DICOM), reference modules written from published
definitions, tiny models, configs and a one-line-error reader. Tests import these from here,
never from one another."""

from __future__ import annotations

import io
import math
import struct
import uuid
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from pipeline import formats
from pipeline.data import reader
from pipeline.models.reference import Upscaler
from pipeline.upscaling.manifest import WorkItem
from pipeline.upscaling.one_file import WorkerSettings, process_file
from srgan.generator import GeneratorSpec, build_generator


def smooth_image(rng: np.random.Generator, height: int, width: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """Blocky low-frequency content plus mild texture, so SR has something to learn."""
    coarse = rng.random((height // 8 + 1, width // 8 + 1, channels))
    img = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    return (img * top).round().astype(dtype) if top != 1.0 else img.astype(dtype)


def png_bytes(array: np.ndarray) -> bytes:
    return formats.encode(array, "x.png")


def bad_files(rng: np.random.Generator) -> dict[str, bytes]:
    """Name -> bytes for one of each kind of bad input."""
    good = png_bytes(smooth_image(rng, 64, 64))
    buf = io.BytesIO()
    Image.fromarray(smooth_image(rng, 12, 12)).save(buf, "PNG")
    return {
        "bad/empty.png": b"",
        "bad/truncated.png": good[: len(good) // 3],
        "bad/not_an_image.jpg": b"%PDF-1.4 this is a document, not a picture",
        "bad/tiny.png": buf.getvalue(),
    }


def put_images(
    bucket: str, prefix: str, count: int, size: tuple[int, int] = (64, 64), seed: int = 0, with_bad: bool = False
) -> list[str]:
    """Upload `count` PNGs (and, with_bad, the bad files) to s3://bucket/prefix; returns keys."""
    import boto3

    s3 = boto3.client("s3")
    rng = np.random.default_rng(seed)
    files = {f"img_{i:03d}.png": png_bytes(smooth_image(rng, *size)) for i in range(count)}
    if with_bad:
        files.update(bad_files(rng))
    for name, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{name}", Body=data)
    return sorted(files)


def write_images(folder: Path, count: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img_{i:03d}.png"
        path.write_bytes(png_bytes(smooth_image(rng, *size)))
        paths.append(path)
    return paths


def geotiff_bytes(
    array: np.ndarray,
    nodata=None,
    pixel_size: float = 10.0,
    alpha: bool = False,
    colours: tuple[str, ...] = (),
    georeferenced: bool = True,
    **creation,
) -> bytes:
    """An (H, W, C) array as a GeoTIFF in UTM 33N with `pixel_size` m pixels, band
    descriptions and a tag, written by rasterio; `colours` set each band's colour
    interpretation; not `georeferenced`: a plain TIFF with GDAL's metadata."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin

    h, w, c = array.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": c,
        "dtype": str(array.dtype),
        "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 4600000.0, pixel_size, pixel_size),
        "nodata": nodata,
        **creation,
    }
    if not georeferenced:
        del profile["crs"], profile["transform"]
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(np.moveaxis(array, -1, 0))
            dst.descriptions = tuple(f"band-{i + 1}" for i in range(c))
            dst.update_tags(SENSOR="test-sat")
            if alpha:
                dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
            if colours:
                dst.colorinterp = [ColorInterp[name] for name in colours]
        return mem.read()


def dicom_bytes(
    array: np.ndarray, bits_stored: int = 12, signed: bool = False, spacing=(0.5, 0.5), compressed_garbage: bool = False
) -> bytes:
    """A single-frame MR slice holding the (H, W) `array` as stored values."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "TEST-001", "Test^Patient", "MR"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelSpacing = [str(s) for s in spacing]
    ds.RescaleSlope, ds.RescaleIntercept = "1.5", "-100"
    ds.SmallestImagePixelValue = int(array.min())
    data = array.astype(np.int16 if signed else np.uint16).tobytes()
    ds.PixelData = data[: len(data) // 3] if compressed_garbage else data
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


SWEEP = """
name: tiny-sweep
storage_path: {root}/sweeps
train_config: train.yaml
search:
  loss.weights.content: {{loguniform: [0.1, 10.0]}}
  loss.weights.adversarial: {{loguniform: [1.0e-4, 1.0e-2]}}
  loss.weights.pixel: {{loguniform: [1.0e-3, 1.0]}}
objective: {{metric: score, mode: max, score: {{val/psnr: 1.0, val/niqe: -1.0}}}}
scheduler: {{type: asha, grace_period: 2, reduction_factor: 2}}
num_samples: 3
max_concurrent_trials: 2
mlflow: {{experiment: sweeps}}   # the default store, sqlite:///mlflow.db in the working directory: trials must not resolve it in theirs
"""


TRAIN = """
run: {{storage_path: {root}/runs}}
data: {{train: {root}/hr, val: {root}/val, patch_size: 16, patches_per_image: 4, val_crop: 100, grid_images: 1, shuffle_buffer: 16}}
model: {{generator: {{scale: 2, num_blocks: 1, num_features: 8, bicubic_skip: true}}, discriminator: {{base_features: 4}}}}
loss: {{content_backbone: discriminator}}
train: {{batch_size: 4, phases: [gan], gan: {{steps: 6, lr: 1.0e-3, lr_drop_step: null}}, log_every: 2, val_every: 2, checkpoint_every: 2}}
scaling: {{num_workers: 1, cpus_per_worker: 0.5}}
"""


def trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
        if isinstance(m, nn.PReLU):
            m.weight.data.uniform_(0.05, 0.4)
        if isinstance(m, nn.Conv2d):
            m.weight.data.mul_(0.5)
    return model.eval()


class LornatangSRResNet(nn.Module):  # SRGAN-PyTorch model.py, SRResNet
    def __init__(self, in_channels=3, out_channels=3, channels=64, num_rcb=16, upscale=4):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, channels, 9, 1, 4), nn.PReLU())
        self.trunk = nn.Sequential(*[ResidualConvBlock(channels) for _ in range(num_rcb)])
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))
        self.upsampling = nn.Sequential(*[UpsampleBlock(channels, 2) for _ in range({2: 1, 4: 2, 8: 3}[upscale])])
        self.conv3 = nn.Conv2d(channels, out_channels, 9, 1, 4)

    def forward(self, x):
        c1 = self.conv1(x)
        x = self.conv2(self.trunk(c1)) + c1
        return torch.clamp_(self.conv3(self.upsampling(x)), 0.0, 1.0)


class BasicSRMSRResNet(nn.Module):  # basicsr.archs.srresnet_arch.MSRResNet
    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=4):
        super().__init__()
        self.upscale = upscale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[BasicSRBlock(num_feat) for _ in range(num_block)])
        if upscale in (2, 3):
            self.upconv1 = nn.Conv2d(num_feat, num_feat * upscale * upscale, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(upscale)
        else:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1)

    def forward(self, x):
        feat = self.lrelu(self.conv_first(x))
        out = self.body(feat)
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)


# Every character S3 allows in a key is part of the name: '%6F' is not 'o', '?' and '#' are
# not a query or fragment, and space, '+', control and non-ASCII characters are themselves.
ODD_KEYS = [
    "%6Fk.png",
    "a b.png",
    "é 日本.png",
    "plus+sign.png",
    "q?x=1&y.png",
    "hash#1.png",
    "tilde~!$'()*,;:@.png",
    'brace{}[]^|`<>".png',
    "ctl\x01.png",
    "trail .png",
    "back\\slash.png",
]


def run_one(tmp_path: Path, name: str, data: bytes, up: Upscaler, **settings) -> tuple[dict, Path]:
    src = tmp_path / "in" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    out = tmp_path / "out" / name
    item = WorkItem(name, str(src), str(out), len(data))
    row = process_file(item, up, WorkerSettings(model=up.name, **settings))
    return row, out


def upscaler(channels: int = 3, tile: int = 0, **kw) -> Upscaler:
    g = random_generator(channels)
    return Upscaler(name="test-model", scale=SCALE, generator=g, tile=tile, **kw)


def random_generator(channels: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    g = build_generator(
        GeneratorSpec(scale=SCALE, in_channels=channels, out_channels=channels, num_blocks=1, num_features=8)
    )
    # Random BN statistics, as a trained model would have (eval mode uses them).
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return g.eval()


SCALE = 2


def one_error_line(capsys, code: int, alone: bool = True) -> str:
    """The one `error:` line of a refused command, asserting exit 2, no traceback and (with
    `alone`, for commands refused before Ray starts and logs) nothing else on stderr."""
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    lines = err.splitlines() if alone else [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def tiny(train_uri: str, val_uri: str | None, storage_path: str, mlflow_uri: str, **sections) -> dict:
    tree = {
        "run": {"name": f"t-{uuid.uuid4().hex[:8]}", "storage_path": storage_path},
        "data": {
            "train": train_uri,
            "val": val_uri,
            "patch_size": 16,
            "patches_per_image": 4,
            "val_crop": 32,
            "grid_images": 2,
            "shuffle_buffer": 16,
        },
        "model": {"generator": {"scale": 2, "num_blocks": 1, "num_features": 8}, "discriminator": {"base_features": 4}},
        "loss": {"content_backbone": "discriminator", "weights": {"content": 1.0, "adversarial": 1e-3, "pixel": 1.0}},
        "train": {
            "batch_size": 4,
            "pretrain": {"steps": 4, "lr": 1e-3},
            "gan": {"steps": 4, "lr": 1e-4, "lr_drop_step": 2},
            "log_every": 1,
            "val_every": 4,
            "checkpoint_every": 2,
            "max_failures": 1,
        },
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
        "mlflow": {"tracking_uri": mlflow_uri, "experiment": "tests"},
    }
    for section, values in sections.items():
        tree[section] = {**tree.get(section, {}), **values}
    return tree


def expected(up, array: np.ndarray, low: float, high: float, order=(0, 1, 2)) -> np.ndarray:
    """The model's output for `array` read as [low, high] -> [0, 1], mapped back; bands fed in
    `order` and written back where they came from."""
    x = reader.to_unit(array[..., list(order)], high - low, -low)
    y = reader.from_unit(up(x[None])[0], array.dtype, high - low, -low)
    out = np.empty_like(y)
    out[..., list(order)] = y
    return out


def png_with_sbit(array: np.ndarray, bits: int = 12) -> bytes:
    """A 16-bit PNG of `array` with an sBIT chunk declaring `bits` significant bits per channel."""
    png = formats.encode(array, "x.png")
    body = b"sBIT" + bytes([bits] * array.shape[-1])
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:33] + chunk + png[33:]  # right after IHDR, before the image data


def twelve_bit(seed: int = 0, size: tuple[int, int] = (48, 48), channels: int = 3) -> np.ndarray:
    """A uint16 image of 12-bit values reaching 4095."""
    image = (smooth_image(np.random.default_rng(seed), *size, channels, np.float64) * 4095).round().astype(np.uint16)
    image[0, 0] = 4095
    return image


class BasicSRBlock(nn.Module):  # basicsr.archs.arch_util.ResidualBlockNoBN, res_scale 1
    def __init__(self, f):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(f, f, 3, 1, 1), nn.Conv2d(f, f, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class ResidualConvBlock(nn.Module):  # SRGAN-PyTorch model.py, _ResidualConvBlock
    def __init__(self, c):
        super().__init__()
        self.rcb = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.PReLU(),
            nn.Conv2d(c, c, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x):
        return x + self.rcb(x)


class UpsampleBlock(nn.Module):  # SRGAN-PyTorch model.py, _UpsampleBlock
    def __init__(self, c, f):
        super().__init__()
        self.upsample_block = nn.Sequential(nn.Conv2d(c, c * f * f, 3, 1, 1), nn.PixelShuffle(f), nn.PReLU())

    def forward(self, x):
        return self.upsample_block(x)


class LeftthomasResidualBlock(nn.Module):  # leftthomas/SRGAN model.py, ResidualBlock
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class LeftthomasUpsample(nn.Module):  # leftthomas/SRGAN model.py, UpsampleBLock
    def __init__(self, in_channels, up_scale):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels * up_scale**2, kernel_size=3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(up_scale)
        self.prelu = nn.PReLU()

    def forward(self, x):
        return self.prelu(self.pixel_shuffle(self.conv(x)))


class LeftthomasGenerator(nn.Module):  # leftthomas/SRGAN model.py, Generator (netG_epoch_4_100.pth)
    def __init__(self, scale_factor=4, channels=64):
        super().__init__()
        upsample_block_num = int(math.log(scale_factor, 2))
        self.block1 = nn.Sequential(nn.Conv2d(3, channels, kernel_size=9, padding=4), nn.PReLU())
        self.block2 = LeftthomasResidualBlock(channels)
        self.block3 = LeftthomasResidualBlock(channels)
        self.block4 = LeftthomasResidualBlock(channels)
        self.block5 = LeftthomasResidualBlock(channels)
        self.block6 = LeftthomasResidualBlock(channels)
        self.block7 = nn.Sequential(nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.BatchNorm2d(channels))
        block8 = [LeftthomasUpsample(channels, 2) for _ in range(upsample_block_num)]
        block8.append(nn.Conv2d(channels, 3, kernel_size=9, padding=4))
        self.block8 = nn.Sequential(*block8)

    def forward(self, x):
        block1 = self.block1(x)
        block6 = self.block6(self.block5(self.block4(self.block3(self.block2(block1)))))
        block7 = self.block7(block6)
        block8 = self.block8(block1 + block7)
        return (torch.tanh(block8) + 1) / 2


def with_conv_biases(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` with non-zero conv biases (a trained model's), so bias folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            m.bias.data = torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1
    return model


def logged_generator_model(tmp_path, name: str = "srgan") -> dict:
    """A store holding one run with a tiny generator logged and registered as `name`@champion."""
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    from pipeline import tracking
    from pipeline.models import pyfunc
    from srgan.generator import SRResNet
    from srgan.weights import save_generator

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = tracking.client(uri)
    run_id = c.create_run(c.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    generator = SRResNet(scale=2, num_blocks=1, num_features=8).eval()
    save_generator(tmp_path / "generator.pt", generator, meta={"data_range": 255})
    model_uri = pyfunc.log_generator(uri, run_id, tmp_path / "generator.pt")
    version = tracking.register_version(uri, name, model_uri, run_id, {tracking.SOURCE_TAG: run_id})
    c.set_registered_model_alias(name, "champion", version)
    location = c.get_logged_model(model_uri[len("models:/") :]).artifact_location
    return {
        "uri": uri,
        "run_id": run_id,
        "model_uri": model_uri,
        "generator": generator,
        "dir": Path(url2pathname(urlsplit(location).path)),
    }

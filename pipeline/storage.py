"""Paths the pipeline reads and writes: local folders, ``s3://bucket/prefix`` and ``samples://``.

S3 goes through pyarrow's S3FileSystem built with ``FileSystem.from_uri``, which takes the
endpoint, region and credentials from the standard AWS settings (``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, instance roles).
``apply_s3_settings`` exports endpoint/region given in a config as those variables before
Ray starts, so every worker sees the same settings. Credentials are never read or logged
here. ``samples://photos`` (or ``medical``, ``satellite``, nothing for all) names the
bundled sample images, written to a local cache on first use.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from pipeline.errors import StorageError

SAMPLES_SCHEME = "samples://"


@dataclass(frozen=True)
class StoredFile:
    uri: str  # how to name it again: s3://bucket/key or an absolute local path
    path: str  # the path inside `filesystem` (bucket/key or the local path)
    key: str  # relative to the listed root, '/'-separated
    size: int


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def apply_s3_settings(endpoint_url: str | None = None, region: str | None = None) -> None:
    """Export config-given S3 settings as the standard AWS variables (workers inherit them)."""
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        os.environ["AWS_REGION"] = region
        os.environ.setdefault("AWS_DEFAULT_REGION", region)


def samples_root() -> Path:
    return Path(os.environ.get("SRGAN_CACHE", Path.home() / ".cache" / "srgan")) / "samples"


def _resolve_samples(uri: str) -> str:
    from pipeline.samples import write_samples

    root = samples_root()
    marker = root / ".complete"
    if not marker.exists():
        write_samples(root)
        marker.touch()
    sub = uri[len(SAMPLES_SCHEME):].strip("/")
    folder = root / sub
    if not folder.is_dir():
        raise StorageError(f"{uri} names no bundled samples; use samples://photos, samples://holdout, samples://medical, samples://satellite or samples://")
    return str(folder)


def local_or_uri(uri: str) -> str:
    """`uri` with samples:// resolved to its local folder and local paths made absolute."""
    if uri.startswith(SAMPLES_SCHEME):
        return _resolve_samples(uri)
    if "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path, s3:// URI or samples:// name."""
    uri = local_or_uri(uri)
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    if not is_s3(uri):
        raise StorageError(f"unsupported URI scheme in {uri!r}; use a local path or s3://bucket/prefix")
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except Exception as exc:
        raise StorageError(f"cannot open {uri}: {exc}") from exc
    return fs, path.rstrip("/")


def _uri_for(root_uri: str, path: str) -> str:
    return f"s3://{path}" if is_s3(root_uri) else path


def list_files(root_uri: str, extensions: list[str] | tuple[str, ...] | None = None) -> list[StoredFile]:
    """Every file under `root_uri` (recursive), filtered by extension, sorted by key."""
    fs, root = filesystem(root_uri)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"{root_uri} does not exist")
        if info.type == pafs.FileType.File:
            entries = [info]
            root = str(PurePosixPath(root).parent)
        else:
            entries = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot list {root_uri}: {exc}") from exc
    exts = tuple(e.lower() for e in extensions) if extensions else None
    out = []
    for e in entries:
        if e.type != pafs.FileType.File:
            continue
        if exts and not e.path.lower().endswith(exts):
            continue
        key = PurePosixPath(e.path).relative_to(root).as_posix()
        out.append(StoredFile(uri=_uri_for(local_or_uri(root_uri), e.path), path=e.path, key=key, size=e.size or 0))
    return sorted(out, key=lambda f: f.key)


def join(root_uri: str, *parts: str) -> str:
    """Append '/'-separated parts to a local path or URI."""
    if "://" in root_uri:
        return "/".join([root_uri.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(root_uri, *parts))


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise StorageError(f"{uri} does not exist") from exc
    except Exception as exc:
        raise StorageError(f"cannot read {uri}: {exc}") from exc


@contextlib.contextmanager
def _appearing_whole(target: Path):
    """A temporary path beside local file `target` (`.name.<id>.partial`) that becomes
    `target` by rename when the block completes, and is removed when it does not."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_whole(uri: str, fill) -> None:
    """Call `fill(binary file)` to write `uri` so that it appears only complete: a local file
    by temp + rename, an S3 object when its PUT (or multipart upload) completes."""
    fs, path = filesystem(uri)
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            with _appearing_whole(Path(path)) as tmp:
                with open(tmp, "wb") as fh:
                    fill(fh)
        else:
            with fs.open_output_stream(path) as fh:
                fill(fh)
    except Exception as exc:
        raise StorageError(f"cannot write {uri}: {exc}") from exc


def write_bytes(uri: str, data: bytes) -> None:
    """Write `data` to `uri` whole (see `_write_whole`)."""
    _write_whole(uri, lambda fh: fh.write(data))


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except Exception as exc:
        raise StorageError(f"cannot check {uri}: {exc}") from exc


def check_destination(uri: str, what: str = "output") -> None:
    """Refuse, before anything is written, a destination that cannot take files: an s3://
    bucket that does not exist (or these credentials cannot see), a local path that is a file."""
    uri = local_or_uri(uri)
    if is_s3(uri):
        bucket = uri[len("s3://"):].split("/", 1)[0]
        if not bucket:
            raise StorageError(f"{what} {uri} names no bucket; use s3://bucket/prefix")
        fs, _ = filesystem(uri)
        try:
            found = fs.get_file_info(bucket).type == pafs.FileType.Directory
        except Exception as exc:
            raise StorageError(f"cannot check bucket {bucket!r} of {what} {uri}: {exc}") from exc
        if not found:
            raise StorageError(f"{what} {uri}: bucket {bucket!r} does not exist (or these credentials cannot see it); create it or use another bucket")
        return
    path = Path(uri)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise StorageError(f"{what} {uri}: {parent} is a file, not a folder; choose a folder")
            if not os.access(parent, os.W_OK):
                raise StorageError(f"{what} {uri}: cannot write under {parent}; choose a folder you can write to")
            return


def download(uri: str, dest: Path) -> None:
    """Copy `uri` to local file `dest` (pyarrow streams it), appearing only complete."""
    fs, path = filesystem(uri)
    try:
        if fs.get_file_info(path).type != pafs.FileType.File:
            raise StorageError(f"{uri} does not exist")
        with _appearing_whole(Path(dest)) as tmp:
            pafs.copy_files(path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot read {uri}: {exc}") from exc


def local_copy(uri: str, dest: Path) -> Path:
    """A local path holding `uri`'s bytes: the file itself when it is local, else a download
    to `dest`."""
    uri = local_or_uri(uri)
    if "://" not in uri:
        if not Path(uri).is_file():
            raise StorageError(f"{uri} does not exist")
        return Path(uri)
    download(uri, dest)
    return Path(dest)


def upload_file(src: Path, uri: str) -> None:
    """Put local file `src` at `uri` whole: an S3 object appears when its upload completes, a
    local file by rename of a temporary copy."""
    fs, path = filesystem(uri)
    local = pafs.LocalFileSystem()
    try:
        if not isinstance(fs, pafs.LocalFileSystem):
            pafs.copy_files(str(src), path, source_filesystem=local, destination_filesystem=fs)
            return
        with _appearing_whole(Path(path)) as tmp:
            pafs.copy_files(str(src), str(tmp), source_filesystem=local, destination_filesystem=local)
    except Exception as exc:
        raise StorageError(f"cannot write {uri}: {exc}") from exc


def remove_partials(root_uri: str) -> int:
    """Delete the temporary `.name.<id>.partial` files an interrupted local write left under
    `root_uri` (S3 writes leave none: an unfinished upload never becomes an object)."""
    uri = local_or_uri(root_uri)
    if "://" in uri or not Path(uri).is_dir():
        return 0
    stale = [p for p in Path(uri).rglob(".*.partial") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)

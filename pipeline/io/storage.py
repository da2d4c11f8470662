"""Paths the pipeline reads and writes: local folders, ``s3://bucket/prefix`` and ``samples://``.

S3 goes through pyarrow's S3FileSystem built with ``FileSystem.from_uri``, which takes the
endpoint, region and credentials from the standard AWS settings (``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, instance roles).
Every S3 call goes through ``pipeline.s3.call``, which retries while the endpoint does not
answer (see there); writes still appear whole or not at all. Credentials are never read or
logged here. ``samples://photos`` (or ``medical``, ``satellite``, nothing for all) names the
bundled sample images, written to a local cache on first use.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from pipeline.errors import StorageError
from pipeline.io import s3

SAMPLES_SCHEME = "samples://"


@dataclass(frozen=True)
class StoredFile:
    uri: str  # how to name it again: s3://bucket/key or an absolute local path
    path: str  # the path inside `filesystem` (bucket/key or the local path)
    key: str  # relative to the listed root, '/'-separated
    size: int


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def local_or_uri(uri: str) -> str:
    """`uri` with samples:// resolved to its local folder and local paths made absolute."""
    if uri.startswith(SAMPLES_SCHEME):
        from pipeline.io.samples import resolve

        return resolve(uri)
    if "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path, s3:// URI or samples:// name.

    An S3 URI is split at the bucket by hand and only ``s3://<bucket>`` goes through
    pyarrow's URI parser: the rest is a key, taken byte for byte (``%6F``, spaces, ``?``,
    ``#`` and non-ASCII characters are part of the name, as in the AWS CLI)."""
    uri = local_or_uri(uri)
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    if not is_s3(uri):
        raise StorageError(f"unsupported URI scheme in {uri!r}; use a local path or s3://bucket/prefix")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{uri} names no bucket; use s3://bucket/prefix")
    if any(part in (".", "..") for part in key.split("/")):
        # pyarrow would resolve them and address another key than the one named
        raise StorageError(f"{uri}: '.' and '..' are not folders in S3; name the prefix or key without them")
    try:
        fs, _ = pafs.FileSystem.from_uri(f"s3://{bucket}")
    except Exception as exc:
        raise StorageError(f"cannot open {uri}: {exc}") from exc
    return fs, f"{bucket}/{key}".rstrip("/")


def _within(path: str, root: str) -> bool:
    """Whether `path` is `root` or lies under it, '/'-separated (both already resolved)."""
    root = root.rstrip("/")
    return path.rstrip("/") == root or path.startswith(root + "/")


def overlaps(a: str, b: str) -> bool:
    """Whether two folders or prefixes are the same or one lies inside the other: local paths
    after resolving symbolic links, S3 by bucket and '/'-separated prefix."""
    a, b = local_or_uri(a), local_or_uri(b)
    if is_s3(a) != is_s3(b):
        return False
    if is_s3(a):
        filesystem(a), filesystem(b)  # refuses '.' and '..' segments, which S3 clients resolve
        a, b = a[len("s3://") :], b[len("s3://") :]
    else:
        a, b = os.path.realpath(a), os.path.realpath(b)
    return _within(a, b) or _within(b, a)


def check_inside(root: str, uri: str, what: str) -> None:
    """Refuse a local `uri` whose real location (symbolic links followed) is not under the
    real location of `root`: a link must not lead a read or write out of the job's folders.
    For a file to be written, the folder it goes into is checked (the name itself is
    replaced by rename, never written through). S3 has no links: nothing to check."""
    root, uri = local_or_uri(root), local_or_uri(uri)
    if is_s3(uri):
        return
    real = os.path.realpath(uri if what == "input" else os.path.dirname(uri))
    if not _within(real, os.path.realpath(root)):
        raise StorageError(
            f"{what} {uri} leads outside {root} through a symbolic link; not {'read' if what == 'input' else 'written'}"
        )


def list_files(root_uri: str, extensions: list[str] | tuple[str, ...] | None = None) -> list[StoredFile]:
    """Every file under `root_uri` (recursive), filtered by extension, sorted by key. Locally,
    symbolic links that lead outside `root_uri` are left out (see `list_inputs`)."""
    return list_inputs(root_uri, extensions)[0]


def list_inputs(
    root_uri: str, extensions: list[str] | tuple[str, ...] | None = None
) -> tuple[list[StoredFile], list[StoredFile]]:
    """(files under `root_uri`, sorted by key; local links that lead outside it, which are
    not to be read). A local folder is walked without following linked folders: a linked
    folder that leads outside is reported as one refused entry, one that leads inside adds
    nothing (its files are listed where they really are)."""
    uri = local_or_uri(root_uri)
    exts = tuple(e.lower() for e in extensions) if extensions else None
    wanted = (lambda name: name.lower().endswith(exts)) if exts else (lambda name: True)
    if "://" not in uri:
        return _walk_local(uri, wanted)
    fs, root = filesystem(uri)
    try:
        info = s3.call("list", uri, lambda: fs.get_file_info(root))
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"{root_uri} does not exist")
        if info.type == pafs.FileType.File:
            entries = [info]
            root = str(PurePosixPath(root).parent)
        else:
            entries = s3.call("list", uri, lambda: fs.get_file_info(pafs.FileSelector(root, recursive=True)))
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot list {root_uri}: {exc}") from exc
    out = [
        StoredFile(uri=f"s3://{e.path}", path=e.path, key=e.path[len(root) + 1 :], size=e.size or 0)
        for e in entries
        if e.type == pafs.FileType.File and wanted(e.path)
    ]
    return sorted(out, key=lambda f: f.key), []


def _walk_local(root: str, wanted) -> tuple[list[StoredFile], list[StoredFile]]:
    path = Path(root)
    if not path.exists():
        raise StorageError(f"{root} does not exist")
    if path.is_file():
        return [StoredFile(uri=root, path=root, key=path.name, size=path.stat().st_size)], []
    real_root = os.path.realpath(root)
    files, outside = [], []
    for folder, dirs, names in os.walk(root, followlinks=False, onerror=_raise_storage_error):
        for name in sorted(names) + sorted(d for d in dirs if os.path.islink(os.path.join(folder, d))):
            full = os.path.join(folder, name)
            key = os.path.relpath(full, root).replace(os.sep, "/")
            is_dir = os.path.isdir(full)
            if not is_dir and not wanted(name):
                continue
            if os.path.islink(full) and not _within(os.path.realpath(full), real_root):
                outside.append(StoredFile(uri=full, path=full, key=key, size=0))
            elif not is_dir and os.path.isfile(full):
                files.append(StoredFile(uri=full, path=full, key=key, size=os.path.getsize(full)))
    return sorted(files, key=lambda f: f.key), sorted(outside, key=lambda f: f.key)


def _raise_storage_error(exc: OSError) -> None:
    raise StorageError(f"cannot list {exc.filename}: {exc.strerror}") from exc


def join(root_uri: str, *parts: str) -> str:
    """Append '/'-separated parts to a local path or URI."""
    if "://" in root_uri:
        return "/".join([root_uri.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(root_uri, *parts))


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)

    def read() -> bytes:
        with fs.open_input_stream(path) as fh:
            return fh.read()

    try:
        return read() if isinstance(fs, pafs.LocalFileSystem) else s3.call("read", uri, read)
    except StorageError:
        raise
    except FileNotFoundError as exc:
        raise StorageError(f"{uri} does not exist") from exc
    except Exception as exc:
        raise StorageError(f"cannot read {uri}: {exc}") from exc


PARTIAL = re.compile(r"^\..+\.srgan-(?P<owner>.+)-[0-9a-f]{12}\.partial$")


@contextlib.contextmanager
def _appearing_whole(target: Path, owner: str = "write"):
    """A temporary path beside local file `target` (`.name.srgan-<owner>-<id>.partial`) that
    becomes `target` by rename when the block completes, and is removed when it does not.
    `owner` (e.g. a job's run id) lets that job find what an interrupted run of its own left."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name[:120]}.srgan-{owner}-{uuid.uuid4().hex[:12]}.partial")  # within NAME_MAX
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_whole(uri: str, fill, owner: str = "write") -> None:
    """Call `fill(binary file)` to write `uri` so that it appears only complete: a local file
    by temp + rename, an S3 object when its PUT (or multipart upload) completes."""
    fs, path = filesystem(uri)
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            with _appearing_whole(Path(path), owner) as tmp:
                with open(tmp, "wb") as fh:
                    fill(fh)
        else:

            def put() -> None:
                with fs.open_output_stream(path) as fh:
                    fill(fh)

            s3.call("write", uri, put)
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot write {uri}: {exc}") from exc


def write_bytes(uri: str, data: bytes, owner: str = "write") -> None:
    """Write `data` to `uri` whole (see `_write_whole`)."""
    _write_whole(uri, lambda fh: fh.write(data), owner)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    try:
        return s3.call("check", uri, lambda: fs.get_file_info(path)).type != pafs.FileType.NotFound
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot check {uri}: {exc}") from exc


def check_destination(uri: str, what: str = "output") -> None:
    """Refuse, before anything is written, a destination that cannot take files: an s3://
    bucket that does not exist (or these credentials cannot see), a local path that is a file."""
    uri = local_or_uri(uri)
    if is_s3(uri):
        bucket = uri[len("s3://") :].split("/", 1)[0]
        if not bucket:
            raise StorageError(f"{what} {uri} names no bucket; use s3://bucket/prefix")
        fs, _ = filesystem(uri)
        try:
            found = (
                s3.call("check the bucket of", uri, lambda: fs.get_file_info(bucket)).type == pafs.FileType.Directory
            )
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot check bucket {bucket!r} of {what} {uri}: {exc}") from exc
        if not found:
            raise StorageError(
                f"{what} {uri}: bucket {bucket!r} does not exist (or these credentials cannot see it); create it or use another bucket"
            )
        return
    path = Path(uri)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise StorageError(f"{what} {uri}: {parent} is a file, not a folder; choose a folder")
            if not os.access(parent, os.W_OK):
                raise StorageError(f"{what} {uri}: cannot write under {parent}; choose a folder you can write to")
            return


def check_writable(uri: str, what: str = "output", folder: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written: an s3:// one as
    `check_destination` does; a local one unless a file can be made where it goes (a probe
    file is made and removed in its folder, or a probe folder where that folder would be
    made). `folder`: `uri` is a folder to write into, else a file to write."""
    uri = local_or_uri(uri)
    if is_s3(uri):
        check_destination(uri, what)
        return
    path = Path(uri)
    if not folder and path.is_dir():
        raise StorageError(f"{what} {uri} is a folder; give a file name")
    home = path if folder else path.parent
    existing = next(p for p in (home, *home.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise StorageError(f"{what} {uri}: {existing} is a file, not a folder; choose another path")
    probe = existing / f".srgan-probe-{uuid.uuid4().hex[:12]}"
    try:
        if existing == home:
            os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            probe.unlink()
        else:
            probe.mkdir()
            probe.rmdir()
    except OSError as exc:
        made = "write a file" if existing == home else "make a folder"
        raise StorageError(f"{what} {uri}: cannot {made} in {existing}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def reporting_write(uri: str | Path, what: str = "output") -> Iterator[None]:
    """Within: an OSError writing local file `uri` or a folder on its way (a full disk, a folder
    gone read-only) becomes a StorageError naming `what`, `uri` and the OS's reason, one line
    instead of a traceback. An OSError about another file is left alone."""
    try:
        yield
    except OSError as exc:
        target = os.path.abspath(uri)
        about = os.path.abspath(os.fsdecode(exc.filename)) if exc.filename is not None else None
        if about is not None and not (_within(target, about) or _within(about, os.path.dirname(target))):
            raise
        raise StorageError(f"cannot write {what} {uri}: {exc.strerror or exc}") from exc


def download(uri: str, dest: Path) -> None:
    """Copy `uri` to local file `dest` (pyarrow streams it), appearing only complete."""
    fs, path = filesystem(uri)
    try:
        if s3.call("read", uri, lambda: fs.get_file_info(path)).type != pafs.FileType.File:
            raise StorageError(f"{uri} does not exist")
        with _appearing_whole(Path(dest)) as tmp:
            s3.call(
                "read",
                uri,
                lambda: pafs.copy_files(
                    path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
                ),
            )
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


def upload_file(src: Path, uri: str, owner: str = "write") -> None:
    """Put local file `src` at `uri` whole: an S3 object appears when its upload completes, a
    local file by rename of a temporary copy."""
    fs, path = filesystem(uri)
    local = pafs.LocalFileSystem()
    try:
        if not isinstance(fs, pafs.LocalFileSystem):
            s3.call(
                "write",
                uri,
                lambda: pafs.copy_files(str(src), path, source_filesystem=local, destination_filesystem=fs),
            )
            return
        with _appearing_whole(Path(path), owner) as tmp:
            pafs.copy_files(str(src), str(tmp), source_filesystem=local, destination_filesystem=local)
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot write {uri}: {exc}") from exc


def remove_partials(root_uri: str, owners: set[str]) -> int:
    """Delete the temporary files (`.name.srgan-<owner>-<id>.partial`) that interrupted local
    writes of `owners` (e.g. the run ids of earlier runs of a job) left under `root_uri`.
    Nothing else is touched: not a user's own `.partial` files, not what another job left,
    not anything behind a linked folder. S3 writes leave none: an unfinished upload never
    becomes an object."""
    uri = local_or_uri(root_uri)
    if "://" in uri or not Path(uri).is_dir():
        return 0
    removed = 0
    for folder, _, names in os.walk(uri, followlinks=False):
        for name in names:
            match = PARTIAL.match(name)
            path = Path(folder, name)
            if match and match["owner"] in owners and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
    return removed

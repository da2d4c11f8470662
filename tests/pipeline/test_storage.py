import boto3
import pytest

from pipeline.io import storage
from tests.helpers import ODD_KEYS


def test_list_read_write_on_s3(bucket):
    s3 = boto3.client("s3")
    for key in ("in/a.png", "in/sub/b.TIF", "in/notes.txt", "other/c.png"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    files = storage.list_files(f"s3://{bucket}/in/", [".png", ".tif"])
    assert [f.key for f in files] == ["a.png", "sub/b.TIF"]
    assert files[1].uri == f"s3://{bucket}/in/sub/b.TIF" and files[1].size == len(b"in/sub/b.TIF")
    assert storage.read_bytes(files[0].uri) == b"in/a.png"
    storage.write_bytes(f"s3://{bucket}/out/x.bin", b"123")
    assert storage.exists(f"s3://{bucket}/out/x.bin") and not storage.exists(f"s3://{bucket}/out/y.bin")


def test_local_writes_are_whole_and_listing_is_recursive(tmp_path):
    storage.write_bytes(str(tmp_path / "d" / "f.png"), b"abc")
    assert (tmp_path / "d" / "f.png").read_bytes() == b"abc"
    assert not list(tmp_path.rglob("*.partial"))
    assert [f.key for f in storage.list_files(str(tmp_path), [".png"])] == ["d/f.png"]


def test_missing_prefix_and_bad_scheme_fail_naming_the_path(bucket, tmp_path):
    with pytest.raises(storage.StorageError, match="does not exist"):
        storage.list_files(str(tmp_path / "nowhere"))
    with pytest.raises(storage.StorageError, match="unsupported URI scheme"):
        storage.filesystem("gs://bucket/x")
    with pytest.raises(storage.StorageError, match=f"s3://{bucket}/missing.png"):
        storage.read_bytes(f"s3://{bucket}/missing.png")


def test_samples_uri_resolves_to_bundled_images():
    files = storage.list_files("samples://photos", [".png"])
    assert len(files) >= 4 and all(f.size > 10_000 for f in files)
    with pytest.raises(storage.StorageError, match="names no bundled samples"):
        storage.list_files("samples://nothing")


def test_copies_in_and_out_of_s3_appear_whole(bucket, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * 40_000)  # 10 MB: more than one part
    storage.upload_file(src, f"s3://{bucket}/a/big.bin")
    storage.download(f"s3://{bucket}/a/big.bin", tmp_path / "back" / "big.bin")
    assert (tmp_path / "back" / "big.bin").read_bytes() == src.read_bytes()
    storage.upload_file(src, str(tmp_path / "local" / "copy.bin"))
    assert (tmp_path / "local" / "copy.bin").read_bytes() == src.read_bytes()
    assert not list(tmp_path.rglob("*.partial"))
    with pytest.raises(storage.StorageError, match=f"s3://{bucket}/a/missing.bin does not exist"):
        storage.download(f"s3://{bucket}/a/missing.bin", tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists()


def test_destinations_that_cannot_take_files_are_refused(bucket, tmp_path):
    storage.check_destination(f"s3://{bucket}/new/prefix")
    storage.check_destination(str(tmp_path / "not" / "yet" / "made"))
    with pytest.raises(storage.StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.check_destination("s3://no-such-bucket/x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(storage.StorageError, match="is a file, not a folder"):
        storage.check_destination(str(tmp_path / "file" / "below"))


def test_s3_keys_are_taken_byte_for_byte_on_list_read_and_write(bucket, tmp_path):
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="in/ok.png", Body=b"the other object")
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=f"in/{key}", Body=key.encode())
    files = storage.list_files(f"s3://{bucket}/in/")
    assert sorted(f.key for f in files) == sorted(ODD_KEYS + ["ok.png"])
    for f in files:
        if f.key == "ok.png":
            continue
        assert storage.read_bytes(f.uri) == f.key.encode()
        storage.download(f.uri, tmp_path / "copy")
        assert (tmp_path / "copy").read_bytes() == f.key.encode()
        storage.upload_file(tmp_path / "copy", f"s3://{bucket}/out/up/{f.key}")
        storage.write_bytes(f"s3://{bucket}/out/put/{f.key}", f.key.encode())
    for how in ("up", "put"):
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"out/{how}/")["Contents"]
        assert sorted(o["Key"] for o in listed) == sorted(f"out/{how}/{k}" for k in ODD_KEYS)
        for key in ODD_KEYS:
            assert s3.get_object(Bucket=bucket, Key=f"out/{how}/{key}")["Body"].read() == key.encode()
    assert storage.exists(f"s3://{bucket}/in/%6Fk.png") and not storage.exists(f"s3://{bucket}/in/%6Fk.jpg")


def test_overlap_of_folders_and_prefixes(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "in")
    assert storage.overlaps(str(tmp_path / "in"), str(tmp_path / "in/"))
    assert storage.overlaps(str(tmp_path / "in"), str(tmp_path / "in" / "sub" / "x4"))
    assert storage.overlaps(str(tmp_path / "in" / "sub"), str(tmp_path / "in"))
    assert storage.overlaps(str(tmp_path / "in"), str(tmp_path / "link" / "out"))  # through a link
    assert not storage.overlaps(str(tmp_path / "in"), str(tmp_path / "in2"))
    assert storage.overlaps("s3://b/scenes/", "s3://b/scenes")
    assert storage.overlaps("s3://b/scenes", "s3://b/scenes/x4/")
    assert storage.overlaps("s3://b/scenes/x4", "s3://b/scenes")
    assert storage.overlaps("s3://b", "s3://b/out/")
    assert not storage.overlaps("s3://b/scenes", "s3://b/scenes-x4")
    assert not storage.overlaps("s3://b/scenes", "s3://c/scenes")
    assert not storage.overlaps("s3://b/scenes", str(tmp_path / "scenes"))


def test_links_never_lead_reads_or_writes_outside(tmp_path):
    root, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    (root / "real").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "real" / "a.png").write_bytes(b"a")
    (elsewhere / "secret.png").write_bytes(b"s")
    (root / "leak.png").symlink_to("/etc/hostname")
    (root / "inside.png").symlink_to(root / "real" / "a.png")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    files, outside = storage.list_inputs(str(root), [".png"])
    assert [f.key for f in files] == ["inside.png", "real/a.png"]
    assert [f.key for f in outside] == ["leak.png", "linked"]
    assert [f.key for f in storage.list_files(str(root))] == ["inside.png", "real/a.png"]
    storage.check_inside(str(root), str(root / "inside.png"), "input")
    with pytest.raises(storage.StorageError, match="leads outside"):
        storage.check_inside(str(root), str(root / "leak.png"), "input")
    storage.check_inside(str(root), str(root / "new" / "deeper" / "x.png"), "output")
    with pytest.raises(storage.StorageError, match="leads outside"):
        storage.check_inside(str(root), str(root / "linked" / "x.png"), "output")
    with pytest.raises(storage.StorageError, match="leads outside"):
        storage.check_inside(str(root), str(root / "linked" / "new" / "x.png"), "output")


def test_only_the_named_owners_partial_files_are_removed(tmp_path):
    (tmp_path / "sub").mkdir()
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    mine = [
        tmp_path / ".a.png.srgan-run1-0123456789ab.partial",
        tmp_path / "sub" / ".b.tif.srgan-run-2-abcdefabcdef.partial",
    ]
    kept = [
        tmp_path / ".notes.partial",  # the user's own
        tmp_path / ".a.png.0123456789abcdef.partial",  # not this naming at all
        tmp_path / ".a.png.srgan-other-0123456789ab.partial",  # another job's
        elsewhere / ".c.png.srgan-run1-0123456789ab.partial",  # behind a linked folder
    ]
    for p in mine + kept:
        p.write_bytes(b"x")
    (tmp_path / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert storage.remove_partials(str(tmp_path), {"run1", "run-2"}) == 2
    assert not any(p.exists() for p in mine) and all(p.exists() for p in kept)
    assert storage.remove_partials("s3://bucket/x", {"run1"}) == 0

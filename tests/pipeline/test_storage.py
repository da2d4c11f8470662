import boto3
import pytest

from pipeline import storage


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

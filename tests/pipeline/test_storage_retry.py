"""S3 calls wait out an endpoint that stops answering, within a budget, and say which one."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.errors import StorageError
from pipeline.io import s3, storage

PROXY = Path(__file__).resolve().parents[1] / "faults" / "tcp_proxy.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proxy(listen: int, target: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(PROXY), str(listen), str(target)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the proxy did not start")


@pytest.fixture
def endpoint_via_proxy(s3_server, monkeypatch):
    """The moto server reached through a proxy this test can take away: (endpoint, start, stop)."""
    port, target = _port(), int(s3_server.rsplit(":", 1)[1])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    procs = [_proxy(port, target)]

    def stop():
        procs[-1].kill()
        procs[-1].wait()

    def start():
        procs.append(_proxy(port, target))

    yield f"http://127.0.0.1:{port}", start, stop
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_write_waits_for_the_endpoint_to_come_back(bucket, endpoint_via_proxy, monkeypatch, capsys):
    endpoint, start, stop = endpoint_via_proxy
    monkeypatch.setenv(s3.RETRY_ENV, "30")
    stop()
    threading.Timer(6.0, start).start()  # longer than pyarrow's own few attempts
    began = time.monotonic()
    storage.write_bytes(f"s3://{bucket}/out/a.bin", b"whole")
    assert time.monotonic() - began >= 5.5
    assert storage.read_bytes(f"s3://{bucket}/out/a.bin") == b"whole"
    assert (
        f"warning: the S3 endpoint {endpoint} does not answer (write s3://{bucket}/out/a.bin); retrying for up to 30 s"
        in capsys.readouterr().err
    )


def test_an_endpoint_away_longer_than_the_budget_is_an_error_naming_it(bucket, endpoint_via_proxy, monkeypatch):
    endpoint, _, stop = endpoint_via_proxy
    monkeypatch.setenv(s3.RETRY_ENV, "3")
    stop()
    began = time.monotonic()
    with pytest.raises(
        StorageError,
        match=rf"cannot write s3://{bucket}/k: the S3 endpoint {endpoint} has not answered for \d+ s \(\d+ attempts; SRGAN_S3_RETRY_S / s3.retry_s is 3 s\)",
    ):
        storage.write_bytes(f"s3://{bucket}/k", b"x")
    assert time.monotonic() - began < 20
    with pytest.raises(StorageError, match="has not answered"):
        storage.exists(f"s3://{bucket}/k")


def test_an_answer_is_not_retried(s3_server, monkeypatch):
    monkeypatch.setenv(s3.RETRY_ENV, "60")
    began = time.monotonic()
    with pytest.raises(StorageError, match="does not exist"):
        storage.read_bytes("s3://no-such-bucket-here/k")
    assert time.monotonic() - began < 5


def test_a_budget_that_is_not_a_number_is_named(monkeypatch):
    monkeypatch.setenv(s3.RETRY_ENV, "soon")
    with pytest.raises(StorageError, match="SRGAN_S3_RETRY_S='soon' is not a number of seconds"):
        s3.retry_s()

"""`mlflow models serve` on a registered generator, the real server started here: every
malformed payload is a clear 400 and the server goes on answering; concurrent requests and
a client that sends half a request and stalls do not stop it (issue 24, point 11)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.helpers import logged_generator_model

pytestmark = [pytest.mark.servers, pytest.mark.slow]
MAX_PIXELS = 10_000  # the server's SRGAN_PREDICT_MAX_PIXELS: a request over it is refused unread


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    logged = logged_generator_model(tmp_path_factory.mktemp("served"))
    port = _port()
    env = {**os.environ, "SRGAN_PREDICT_MAX_PIXELS": str(MAX_PIXELS), "MLFLOW_TRACKING_URI": logged["uri"]}
    env["PATH"] = (
        os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    )  # the server execs the venv's uvicorn
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(logged["dir"]), "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow models serve did not answer /ping within 120 s")
        yield {"url": url, "port": port, **logged}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # only the server this test started, by its own group
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _post(url: str, body: bytes, timeout: float = 60) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _ping(url: str) -> int:
    with urllib.request.urlopen(f"{url}/ping", timeout=10) as r:
        return r.status


def test_a_good_request_is_upscaled(server):
    x = np.random.default_rng(0).random((1, 3, 6, 5)).astype(np.float32)
    status, text = _post(server["url"], json.dumps({"inputs": x.tolist()}).encode())
    assert status == 200, text
    out = np.asarray(json.loads(text)["predictions"], dtype=np.float32)
    assert out.shape == (1, 3, 12, 10) and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize(
    "payload, message",
    [
        # The logged signature (float32, (-1, C, -1, -1)) is enforced by MLflow before predict.
        ({"inputs": np.zeros((1, 3, 4)).tolist()}, "does not match expected shape (-1, 3, -1, -1)"),
        ({"inputs": np.zeros((1, 2, 4, 4)).tolist()}, "does not match expected shape (-1, 3, -1, -1)"),
        ({"inputs": [[[["a", "b"]]]]}, "could not convert string to float"),
        ({"inputs": [[[[0.5, float("nan")]] * 2] * 3]}, "NaN"),
        ({"inputs": [[[[2.0, 0.5]] * 2] * 3]}, "outside [0, 1]"),
        ({"inputs": [[[[-3, 5]] * 2] * 3]}, "outside [0, 1]"),  # cast to float32 by the signature
        ({"inputs": np.zeros((1, 3, 101, 101)).tolist()}, f"over the {MAX_PIXELS:,} one request may upscale"),
    ],
    ids=["three-d", "two-bands", "strings", "nan", "above-one", "negative", "too-many-pixels"],
)
def test_a_malformed_payload_is_a_clear_400_and_the_server_goes_on(server, payload, message):
    status, text = _post(server["url"], json.dumps(payload).encode())
    assert status == 400, (status, text[:500])
    assert message in json.loads(text)["message"], text[:500]
    assert _ping(server["url"]) == 200


@pytest.mark.parametrize("body", [b"", b"{not json", b'{"inputs": []}', b'{"nothing": 1}'], ids=["empty", "not-json", "no-images", "no-inputs"])  # fmt: skip
def test_an_empty_or_broken_body_is_a_4xx_and_the_server_goes_on(server, body):
    status, text = _post(server["url"], body)
    assert 400 <= status < 500, (status, text[:500])
    assert _ping(server["url"]) == 200


def test_concurrent_requests_and_a_stalled_client_leave_it_answering(server):
    # A client that sends half a request and stalls, held open while others are served.
    stalled = socket.create_connection(("127.0.0.1", server["port"]), timeout=30)
    stalled.sendall(
        b'POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"inputs": [[['
    )
    try:
        x = np.random.default_rng(1).random((1, 3, 8, 8)).astype(np.float32)
        body = json.dumps({"inputs": x.tolist()}).encode()
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: _post(server["url"], body), range(6)))
        assert [status for status, _ in results] == [200] * 6, [t[:200] for _, t in results]
        outs = [np.asarray(json.loads(t)["predictions"]) for _, t in results]
        assert all(np.array_equal(outs[0], o) for o in outs)
        assert _ping(server["url"]) == 200
    finally:
        stalled.close()
    assert _ping(server["url"]) == 200

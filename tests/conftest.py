"""Shared test fixtures: a real S3 API (moto server on 127.0.0.1), one local Ray session,
an MLflow store on sqlite. Everything starts inside the test session and stops after it.

Environment is set at import, before anything starts Ray: AWS settings point at the moto
server (workers inherit them), and the Ray Train settings that make tiny runs fast.
"""

import os
import socket
import uuid

import pytest
import torch

FAST_RAY = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
}
for _k, _v in FAST_RAY.items():
    os.environ.setdefault(_k, _v)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The moto server's address is fixed at import so that it is in the environment before
# any fixture (or Ray worker) reads it; the server itself starts with the session.
S3_PORT = _free_port()
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing-secret",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    AWS_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
)
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _ray_console_to_current_stderr():
    """Ray's console log handler keeps the sys.stderr of the moment Ray set it up; under pytest
    that can be an earlier test's capture, closed since ('Logging error ... closed file' in a
    later test's stderr). Point it at this test's stream."""
    import logging
    import sys

    for logger in list(logging.Logger.manager.loggerDict.values()):
        for handler in getattr(logger, "handlers", ()):
            if type(handler).__name__ == "PlainRayHandler":
                handler.stream = sys.stderr  # not setStream: it flushes the old, closed one


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Keep sample images and weight downloads out of the user's home."""
    os.environ["SRGAN_CACHE"] = str(tmp_path_factory.mktemp("srgan_cache"))


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=S3_PORT, verbose=False)
    server.start()
    yield os.environ["AWS_ENDPOINT_URL"]
    server.stop()


@pytest.fixture
def bucket(s3_server):
    """A fresh, empty bucket on the moto server; yields its name."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def ray_session(s3_server):
    import ray

    from pipeline.cluster import ensure_ray

    ensure_ray(num_cpus=2, object_store_memory=256 * 1024 * 1024)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}"


# `make test-fast` leaves out what needs a Ray session, a server or a subprocess of the whole
# pipeline: tests asking for these fixtures are marked `servers`, tests marked `slow` stay out too.
SERVER_FIXTURES = {"ray_session", "s3_server", "bucket", "mlflow_uri"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)

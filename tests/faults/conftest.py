"""Real faults on real processes: a two-node Ray cluster made with `ray start`, a moto S3
server behind a TCP proxy that can go away, an MLflow tracking server that can be killed.

Everything here is started by the test that uses it and stopped by it, by process id
(never `ray stop`: that would stop every Ray on the machine), also when the test fails.
Drivers run as the users' commands do, `python -m pipeline.<verb>` with RAY_ADDRESS set to
the cluster (what `ray job submit` gives its entrypoint), so a test can SIGKILL one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Fault detection fast enough for tests: node heartbeats (GCS), Train's health checks.
CLUSTER_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "15",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_num_workers_soft_limit": "12",
    "RAY_idle_worker_killing_time_threshold_ms": "600000",
    "RAY_DEDUP_LOGS": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                children.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except OSError:
        return False


def kill_tree(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop `proc` and everything below it: SIGTERM, then SIGKILL what is left, by pid."""
    pids = [proc.pid, *descendants(proc.pid)]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    for pid in pids:
        if alive(pid):
            with _ignore_missing():
                os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(10)


class _ignore_missing:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        return exc_type is ProcessLookupError


def wait_for(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    """Wait for a command the test started to end; its log. One that does not end in time
    is stopped and the test fails with the log's tail."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise AssertionError(
            f"{' '.join(map(str, proc.args[1:4]))} did not finish within {timeout:.0f} s: {log.read_text()[-4000:]}"
        ) from None
    return log.read_text()


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    def up():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except Exception as exc:  # an HTTP error status is an answer too
            return hasattr(exc, "code")

    wait_for(f"{url} answering", up, timeout, 0.3)


class Cluster:
    """A Ray head and one worker node, each a `ray start --block` process with 2 CPUs. Each
    node holds one unit of the custom resource `slot`, so two training workers that ask for
    one each land on different nodes; `node2` marks the worker node."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.temp = Path(tempfile.mkdtemp(prefix="srgf-", dir="/tmp"))  # short: Ray's socket paths are bounded
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    def _start(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.work / log, "ab")
        return subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )

    def start(self) -> Cluster:
        self.head = self._start([
            "--head", "--port", str(self.port), "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--resources", json.dumps({"slot": 1, "head": 1}),
            "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--temp-dir", str(self.temp), "--min-worker-port", "0", "--max-worker-port", "0",
        ], "head.log")  # fmt: skip
        self.wait_nodes(1)
        self.start_worker()
        return self

    def start_worker(self) -> None:
        self.worker = self._start([
            "--address", self.address, "--num-cpus", "2", "--resources", json.dumps({"slot": 1, "node2": 1}),
            "--dashboard-agent-listen-port", str(free_port()), "--min-worker-port", "0", "--max-worker-port", "0",
        ], "worker.log")  # fmt: skip
        self.wait_nodes(2)

    def alive_nodes(self) -> int:
        code = f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
        done = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=60)
        return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else 0

    def wait_nodes(self, n: int, timeout: float = 90) -> None:
        wait_for(f"{n} Ray node(s) alive", lambda: self.alive_nodes() >= n, timeout, 1.0)

    def worker_node_raylet(self) -> int:
        assert self.worker is not None
        return next(p for p in descendants(self.worker.pid) if cmdline(p).split(" ")[0].endswith("raylet"))

    def kill_worker_node(self) -> None:
        """The worker node dies as a machine would: its raylet SIGKILLed (its workers and
        `ray start` follow it)."""
        assert self.worker is not None
        os.kill(self.worker_node_raylet(), signal.SIGKILL)
        self.worker.wait(30)
        for pid in descendants(self.worker.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    def processes(self, name: str) -> list[int]:
        """Pids of this cluster's processes whose command line contains `name` (e.g. a
        worker's title 'ray::RayTrainWorker')."""
        roots = [p.pid for p in (self.head, self.worker) if p is not None]
        return [pid for root in roots for pid in descendants(root) if name in cmdline(pid)]

    def stop(self) -> None:
        for proc in (self.worker, self.head):
            if proc is not None:
                kill_tree(proc)
        shutil.rmtree(self.temp, ignore_errors=True)
        # What `ray stop` would also do: forget this head as the machine's current cluster.
        subprocess.run(
            [sys.executable, "-c", "from pipeline.cluster import forget_dead_cluster; forget_dead_cluster()"],
            cwd=ROOT,
            env=self.env,
            timeout=60,
        )


class Service:
    """A server process the test can kill and start again on the same port."""

    def __init__(self, name: str, cmd: list[str], health_url: str, work: Path, env: dict[str, str]) -> None:
        self.name, self.cmd, self.health_url, self.work, self.env = name, cmd, health_url, work, env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Service:
        out = open(self.work / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.work, start_new_session=True
        )
        wait_http(self.health_url, timeout, self.proc)
        return self

    def kill(self) -> None:
        """Gone at once, as a crashed server or a dropped network: SIGKILL, no goodbye."""
        if self.proc is not None:
            pids = [self.proc.pid, *descendants(self.proc.pid)]
            for pid in pids:
                if alive(pid):
                    with _ignore_missing():
                        os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def outage(self, seconds: float, timeout: float = 60) -> None:
        """Gone (kill) for `seconds`, then back on the same port."""
        self.kill()
        time.sleep(seconds)
        self.start(timeout)

    def stop(self) -> None:
        if self.proc is not None:
            kill_tree(self.proc, grace=5)
            self.proc = None


@pytest.fixture
def fault_env(tmp_path):
    """The environment of every process a fault test starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MLFLOW_"))}
    env.update(CLUSTER_ENV, PYTHONPATH=str(ROOT), PATH=f"{BIN}:{env.get('PATH', '')}")
    return env


@pytest.fixture
def cluster(tmp_path, fault_env, s3):
    """A running two-node cluster (its processes see the S3 endpoint of the `s3` fixture)."""
    c = Cluster(tmp_path, {**fault_env, **s3.env})
    try:
        yield c.start()
    finally:
        c.stop()


# pyarrow retries a request whose connection is refused by itself, every 200 ms for about 6 s
# (seen in its debug log: 31 attempts), and more than one request can be in flight: an
# outage shorter than two of those windows may end before any error reaches pipeline.s3,
# which would then have nothing to retry (and the test nothing to see).
S3_OUTAGE_S = 16


class S3:
    """A moto S3 server and, in front of it, a TCP proxy: the endpoint the pipeline is given.
    Killing the proxy takes the endpoint away (connections refused) while moto keeps every
    object; starting it again on the same port brings it back, as an outage ends."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.moto_port, self.port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {
            "AWS_ACCESS_KEY_ID": "fault-test", "AWS_SECRET_ACCESS_KEY": "fault-test-secret", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint,
        }  # fmt: skip
        moto_cmd = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.moto_port)]
        self.moto = Service("moto", moto_cmd, f"http://127.0.0.1:{self.moto_port}/moto-api/", work, env)
        proxy_cmd = [sys.executable, str(Path(__file__).with_name("tcp_proxy.py")), str(self.port), str(self.moto_port)]
        self.proxy = Service("s3-proxy", proxy_cmd, f"{self.endpoint}/moto-api/", work, env)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            aws_access_key_id="fault-test",
            aws_secret_access_key="fault-test-secret",
            region_name="us-east-1",
        )

    def bucket(self, name: str = "faults") -> str:
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture
def s3(tmp_path, fault_env):
    server = S3(tmp_path, fault_env)
    try:
        server.moto.start()
        server.proxy.start()
        yield server
    finally:
        server.proxy.stop()
        server.moto.stop()


@pytest.fixture
def mlflow_server(tmp_path, fault_env):
    """An MLflow tracking server on sqlite, artifacts served by it; killable and restartable
    with its state kept (the database and artifacts are files)."""
    port = free_port()
    store = tmp_path / "mlflow"
    store.mkdir()
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination", str(store / "artifacts")]  # fmt: skip
    server = Service("mlflow", cmd, f"http://127.0.0.1:{port}/health", tmp_path, fault_env)
    server.uri = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        yield server.start(timeout=120)
    finally:
        server.stop()

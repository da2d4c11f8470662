"""The local stack: an S3 API (moto server) and an MLflow tracking server whose artifacts
live in that S3, both on 127.0.0.1, for running the pipeline the way a cluster does.

    .venv/bin/python infra/local/stack.py up   [--dir .stack]   # prints the env to use them
    .venv/bin/python infra/local/stack.py down [--dir .stack]
    .venv/bin/python infra/local/stack.py wait-http URL --pid PID --log FILE [--timeout S]

`up` starts both servers in the background (pid files, logs and the MLflow sqlite database
under --dir), creates the buckets, and writes <dir>/env.sh with the settings the pipeline
reads: AWS_ENDPOINT_URL, test credentials, AWS_REGION, MLFLOW_TRACKING_URI, SRGAN_BUCKET.
`down` stops them and removes --dir. Nothing listens beyond 127.0.0.1. `wait-http` waits
until URL answers, or fails as soon as process PID (the server behind it) has exited.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DATA_BUCKET = "srgan"
ARTIFACT_BUCKET = "srgan-mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_exited(pid: int) -> bool:
    """True once `pid` is gone or a zombie (exited, not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def wait_http(url: str, timeout: float, pid: int, log: Path) -> None:
    """Wait until `url` answers; fail naming `log` when the server process `pid` exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pid_exited(pid):
            sys.exit(f"stack: the server for {url} exited; see {log}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.5)
    sys.exit(f"stack: {url} did not answer within {timeout:.0f} s; see {log}")


def start(name: str, cmd: list[str], env: dict, state: Path) -> subprocess.Popen:
    log = state / f"{name}.log"
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    (state / f"{name}.pid").write_text(str(proc.pid))
    return proc


def up(state: Path) -> None:
    if (state / "env.json").exists():
        sys.exit(f"stack: already up ({state}/env.json); run `stack.py down --dir {state}` first")
    state.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    s3_port, mlflow_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    settings = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "stack-test",  # moto accepts any; these are not real credentials
        "AWS_SECRET_ACCESS_KEY": "stack-test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "SRGAN_BUCKET": DATA_BUCKET,
    }
    env = {**os.environ, **settings, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    moto = start("s3", [str(bindir / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], env, state)
    wait_http(f"{endpoint}/moto-api/", 60, moto.pid, state / "s3.log")
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="stack-test",
        aws_secret_access_key="stack-test",
    )
    for bucket in (DATA_BUCKET, ARTIFACT_BUCKET):
        s3.create_bucket(Bucket=bucket)
    mlflow = start(
        "mlflow",
        [
            str(bindir / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{state.resolve() / 'mlflow.db'}",
            "--artifacts-destination",
            f"s3://{ARTIFACT_BUCKET}/artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
        ],
        env,
        state,
    )
    wait_http(f"http://127.0.0.1:{mlflow_port}/health", 120, mlflow.pid, state / "mlflow.log")
    (state / "env.json").write_text(json.dumps(settings, indent=1))
    (state / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in settings.items()))
    print(
        f"local stack up: S3 {endpoint} (buckets {DATA_BUCKET}, {ARTIFACT_BUCKET}), MLflow {settings['MLFLOW_TRACKING_URI']}"
    )
    print(f"use it:  source {state / 'env.sh'}")
    for k, v in settings.items():
        print(f"  {k}={v}")


def down(state: Path) -> None:
    for name in ("mlflow", "s3"):
        pid_file = state / f"{name}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(state, ignore_errors=True)
    print(f"local stack down ({state} removed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "wait-http"])
    parser.add_argument("url", nargs="?", help="wait-http: the URL to wait for")
    parser.add_argument(
        "--dir",
        default=os.environ.get("SRGAN_STACK_DIR", ".stack"),
        help="state folder (default .stack or $SRGAN_STACK_DIR)",
    )
    parser.add_argument("--pid", type=int, help="wait-http: the server's process id")
    parser.add_argument("--log", type=Path, help="wait-http: the server's log, shown when it exits")
    parser.add_argument("--timeout", type=float, default=180, help="wait-http: seconds (default 180)")
    args = parser.parse_args()
    if args.action == "wait-http":
        if not (args.url and args.pid and args.log):
            parser.error("wait-http needs URL, --pid and --log")
        wait_http(args.url, args.timeout, args.pid, args.log)
    else:
        (up if args.action == "up" else down)(Path(args.dir))


if __name__ == "__main__":
    main()

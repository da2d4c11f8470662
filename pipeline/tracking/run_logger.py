"""What a training run logs to MLflow while it trains: metrics, validation grids, tags, each
metric step once, kept through a tracking server's outage (see RunLogger)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time

import numpy as np

from pipeline.errors import TrackingError
from pipeline.tracking.store import client, display_uri

# What an MLflow call raises when the server does not answer (refused, reset, timed out,
# a gateway in front of it failing), as opposed to an answer that refuses the request.
UNREACHABLE = ("Max retries exceeded", "Connection refused", "NewConnectionError", "ConnectTimeout", "ReadTimeout", "Read timed out",
               "RemoteDisconnected", "Connection aborted", "Connection reset", "error code 502", "error code 503", "error code 504",
               "Bad Gateway", "Service Unavailable", "Gateway Timeout")  # fmt: skip


def unreachable(exc: BaseException) -> bool:
    return any(token in str(exc) for token in UNREACHABLE)


@contextlib.contextmanager
def _quick_requests(timeout_s: float = 10.0):
    """MLflow calls that fail within seconds when the server does not answer (its client would
    otherwise retry one call for minutes): the caller retries on its own terms."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(int(timeout_s)))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class RunLogger:
    """Metrics and pictures for one run; used by rank 0 only. A metric gets each step once:
    after a restart or --resume from a checkpoint, the steps an earlier attempt logged past
    that checkpoint are not logged again.

    Training does not wait on the tracking server: while it does not answer, what is logged
    is kept in order and sent when it answers again (a line says so both times). Once it has
    not answered for `outage_s` seconds the next call raises TrackingError naming it; the
    run's checkpoints are untouched and --resume continues the run."""

    def __init__(self, tracking_uri: str, run_id: str, outage_s: float = 300.0) -> None:
        self.run_id, self.uri, self.outage_s = run_id, tracking_uri, outage_s
        self._client = client(tracking_uri)
        self._pending: list[
            tuple
        ] = []  # ("metrics", [Metric]) / ("image", picture, name) / ("json", data, name) / ("tag", key, value)
        self._down_since: float | None = None
        self._last_step = self._until_answered(self._logged_steps)

    def _logged_steps(self) -> dict[str, int]:
        """The highest step the run holds, per metric key (what earlier attempts logged)."""
        keys = self._client.get_run(self.run_id).data.metrics
        return {k: max((m.step for m in self._client.get_metric_history(self.run_id, k)), default=-1) for k in keys}

    def _down(self, exc: BaseException) -> None:
        """Note that the server did not answer; TrackingError once that has lasted outage_s."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            print(
                f"warning: MLflow tracking server {display_uri(self.uri)} does not answer ({str(exc).strip().splitlines()[0][:200]}); training goes on and keeps what it logs for up to {self.outage_s:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        elif now - self._down_since > self.outage_s:
            raise TrackingError(
                f"MLflow tracking server {display_uri(self.uri)} has not answered for {now - self._down_since:.0f} s (mlflow.outage_s {self.outage_s:g}); "
                "the run stopped with its checkpoints kept: start the server and continue with `resume`"
            ) from exc

    def _until_answered(self, call):
        with _quick_requests():
            while True:
                try:
                    return call()
                except Exception as exc:
                    if not unreachable(exc):
                        raise
                    self._down(exc)
                    time.sleep(2.0)

    def _send(self, item: tuple) -> None:
        kind, *args = item
        if kind == "metrics":
            self._client.log_batch(self.run_id, metrics=args[0])
        elif kind == "image":
            self._client.log_image(self.run_id, args[0], artifact_file=args[1])
        elif kind == "json":
            self._client.log_dict(self.run_id, args[0], args[1])
        else:
            self._client.set_tag(self.run_id, args[0], args[1])

    def flush(self, wait: bool = False) -> bool:
        """Send what is kept, in order; with `wait`, until it is all sent (or the outage
        budget is spent). Returns whether nothing is left."""
        with _quick_requests():
            while self._pending:
                try:
                    self._send(self._pending[0])
                except Exception as exc:
                    if not unreachable(exc):
                        raise
                    self._down(exc)
                    if not wait:
                        return False
                    time.sleep(2.0)
                    continue
                self._pending.pop(0)
                if self._down_since is not None:
                    print(
                        f"MLflow tracking server {display_uri(self.uri)} answers again after {time.monotonic() - self._down_since:.0f} s; sending what was kept",
                        file=sys.stderr,
                        flush=True,
                    )
                    self._down_since = None
        return True

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        new = {
            k: float(v)
            for k, v in values.items()
            if v is not None and np.isfinite(v) and step > self._last_step.get(k, -1)
        }
        if new:
            self._pending.append(("metrics", [Metric(k, v, now, step) for k, v in new.items()]))
            self._last_step.update(dict.fromkeys(new, step))
        self.flush()

    def image(self, picture, name: str) -> None:
        """Log a PIL image as an artifact file (e.g. grids/step_00001000.png)."""
        self._pending.append(("image", picture, name))
        self.flush()

    def json(self, data, name: str) -> None:
        self._pending.append(("json", data, name))
        self.flush()

    def tag(self, key: str, value: str) -> None:
        self._pending.append(("tag", key, value))
        self.flush()

    def unsent(self) -> list[tuple]:
        """What is kept and not sent yet, as plain values a checkpoint can hold (weights-only
        torch.load reads it back): a run that stops during an outage loses none of it."""
        out = []
        for kind, *args in self._pending:
            if kind == "metrics":
                out.append(("metrics", [(m.key, m.value, m.timestamp, m.step) for m in args[0]]))
            elif kind == "image":
                buf = io.BytesIO()
                args[0].save(buf, format="PNG")
                out.append(("image", buf.getvalue(), args[1]))
            else:
                out.append((kind, *args))
        return out

    def requeue(self, items: list[tuple]) -> None:
        """Keep `items` (from `unsent` in a checkpoint) before what is kept now and send them;
        metric steps the run already holds are left out (sent before the stop)."""
        from mlflow.entities import Metric
        from PIL import Image

        restored = []
        for kind, *args in items:
            if kind == "metrics":
                fresh = [Metric(k, v, t, step) for k, v, t, step in args[0] if step > self._last_step.get(k, -1)]
                if fresh:
                    restored.append(("metrics", fresh))
            elif kind == "image":
                restored.append(("image", Image.open(io.BytesIO(args[0])), args[1]))
            else:
                restored.append((kind, *args))
        for _, metrics in (item for item in restored if item[0] == "metrics"):
            for m in metrics:
                self._last_step[m.key] = max(self._last_step.get(m.key, -1), m.step)
        self._pending[:0] = restored
        self.flush()

    def finish(self, status: str = "FINISHED", wait: bool = True) -> bool:
        """Send what is kept and mark the run ended. Without `wait` (a run already failing),
        one try: False when the server does not answer (the run then stays RUNNING there)."""
        try:
            if not self.flush(wait=wait):
                return False
            with _quick_requests():
                self._client.set_terminated(self.run_id, status=status)
            return True
        except TrackingError:
            if wait:
                raise
            return False
        except Exception as exc:
            if wait or not unreachable(exc):
                raise
            return False

"""S3 settings and resilience: the standard AWS variables a config can set, and calls that wait
out an endpoint that stops answering.

``apply_s3_settings`` exports endpoint/region given in a config as the standard AWS variables
before Ray starts, so every worker sees the same settings. ``call`` retries an S3 call with
backoff (1, 2, 4 ... 15 s) while the endpoint does not answer, for up to ``SRGAN_S3_RETRY_S``
seconds (config ``s3.retry_s``, ``upscale --s3-retry-s``; default 120), then raises a
StorageError naming the endpoint; any other error (a missing key, a denied request) is raised
at once.
"""

from __future__ import annotations

import os
import sys
import time

from pipeline.errors import StorageError


def apply_s3_settings(endpoint_url: str | None = None, region: str | None = None) -> None:
    """Export config-given S3 settings as the standard AWS variables (workers inherit them)."""
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        os.environ["AWS_REGION"] = region
        os.environ.setdefault("AWS_DEFAULT_REGION", region)


RETRY_ENV = "SRGAN_S3_RETRY_S"
DEFAULT_RETRY_S = 120.0
# What pyarrow's S3 client raises when the endpoint does not answer (or answers "try again"),
# as opposed to an answer: a missing key, a denied request.
UNREACHABLE = ("NETWORK_CONNECTION", "curlCode", "Could not connect", "Connection refused", "Connection reset", "timed out",
               "SERVICE_UNAVAILABLE", "SLOW_DOWN", "SlowDown", "INTERNAL_FAILURE", "Unable to connect")  # fmt: skip


ENDPOINT_DOWN = "has not answered for"  # in the message of a call that ran out of retries


def set_retry_s(seconds: float) -> None:
    """How long S3 calls of this process (and the Ray workers it starts) retry while the
    endpoint does not answer (exported as SRGAN_S3_RETRY_S)."""
    os.environ[RETRY_ENV] = f"{float(seconds):g}"


def retry_s() -> float:
    try:
        return float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_S))
    except ValueError:
        raise StorageError(
            f"{RETRY_ENV}={os.environ[RETRY_ENV]!r} is not a number of seconds; unset it or give e.g. 120"
        ) from None


def endpoint() -> str:
    """The S3 endpoint calls go to, for messages (credentials never appear in it)."""
    from pipeline.io.redact import redact_uri

    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return (
        redact_uri(url)
        if url
        else f"AWS S3 ({os.environ.get('AWS_REGION') or os.environ.get('AWS_DEFAULT_REGION') or 'default region'})"
    )


def call(what: str, uri: str, fn):
    """`fn()`, retried with backoff (1, 2, 4 ... 15 s) while the S3 endpoint does not answer,
    for up to retry_s() seconds; then a StorageError naming the endpoint. Any other error is
    raised at once. The first retry is announced on stderr. `what` and `uri` name the call."""
    budget, start, delay, attempts = retry_s(), time.monotonic(), 1.0, 0
    while True:
        attempts += 1
        try:
            return fn()
        except Exception as exc:
            if not any(token in str(exc) for token in UNREACHABLE):
                raise
            waited = time.monotonic() - start
            first = str(exc).strip().splitlines()[0][:300]
            if waited + delay > budget:
                raise StorageError(
                    f"cannot {what} {uri}: the S3 endpoint {endpoint()} {ENDPOINT_DOWN} {waited:.0f} s "
                    f"({attempts} attempts; {RETRY_ENV} / s3.retry_s is {budget:g} s): {first}"
                ) from exc
            if attempts == 1:
                print(
                    f"warning: the S3 endpoint {endpoint()} does not answer ({what} {uri}); retrying for up to {budget:g} s",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(delay)
            delay = min(2 * delay, 15.0)

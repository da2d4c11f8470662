"""Credentials inside URIs (a user:password, a presigned query) never reach MLflow params or
the lines training prints; everything else in a URI stays readable."""

import pytest

from pipeline.config import flatten, parse_config
from pipeline.io.redact import redact_uri
from pipeline.training.driver import TrainOutcome, _print_summary

PRESIGNED = (
    "https://bucket.s3.amazonaws.com/hr/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAUSER%2F20261125"
    "&X-Amz-Date=20261125T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token=s3cr3ttok&X-Amz-Signature=s3cr3tsig"
)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("http://AKIAUSER:s3cr3tpass@127.0.0.1:9000/runs", "http://***@127.0.0.1:9000/runs"),
        ("https://ghp_s3cr3ttok@mlflow.example.com", "https://***@mlflow.example.com"),
        (
            PRESIGNED,
            "https://bucket.s3.amazonaws.com/hr/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
            "&X-Amz-Date=20261125T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token=***&X-Amz-Signature=***",
        ),
        (
            "https://u:p@h:1/p?page=2&access_token=a&API_KEY=b&sig=c&Password=d#top",
            "https://***@h:1/p?page=2&access_token=***&API_KEY=***&sig=***&Password=***#top",
        ),
        ("scanning 8 images under https://u:s3cr3tpass@h/x/ ...", "scanning 8 images under https://***@h/x/ ..."),
    ],
)
def test_credentials_in_a_uri_are_masked(text, expected):
    assert redact_uri(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:9000/runs?page=2&design=a",
        "s3://bucket/prefix/",
        "sqlite:////tmp/mlflow.db",
        "./ray_results",
        "mail me at a@b.org: password hunter2",
        "",
    ],
)
def test_text_without_credentials_is_unchanged(text):
    assert redact_uri(text) == text


def _config_with_secrets() -> object:
    return parse_config(
        {
            "run": {"name": "secrets"},
            "data": {"train": "samples://photos"},
            "mlflow": {"tracking_uri": "https://alice:s3cr3tpass@mlflow.example.com/?access_token=s3cr3ttok"},
            "s3": {"endpoint_url": "http://AKIAUSER:s3cr3tpass@127.0.0.1:9/"},
            "loss": {"vgg_weights": PRESIGNED},
        }
    )


def test_mlflow_params_hold_no_credentials():
    params = flatten(_config_with_secrets())
    assert params["s3.endpoint_url"] == "http://***@127.0.0.1:9/"
    assert params["mlflow.tracking_uri"] == "https://***@mlflow.example.com/?access_token=***"
    assert not [v for v in params.values() if "s3cr3t" in v or "AKIAUSER" in v]


def test_the_training_summary_holds_no_credentials(capsys):
    cfg = _config_with_secrets()
    outcome = TrainOutcome(
        "secrets",
        "/runs/secrets",
        "abc123",
        cfg.mlflow.tracking_uri,
        "/runs/secrets/step_00000008",
        None,
        {"step": 8},
        [],
    )
    _print_summary(outcome, cfg, 60.0)
    out = capsys.readouterr().out
    assert "MLflow run: abc123" in out and "https://***@mlflow.example.com/?access_token=***" in out
    assert "s3cr3t" not in out


@pytest.mark.parametrize(
    "text, secret",
    [
        ("https://h/p?accessToken=tok123&x=1", "tok123"),  # camelCase names
        ("https://h/p?clientSecret=sec123", "sec123"),
        ("https://h/cb#access_token=frag123&state=1", "frag123"),  # an OAuth fragment
        ("http://user:p#ss123@host:5000/x", "p#ss123"),  # '#' in a password
        ("s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY@bucket/key", "wJalrXUtnFEMI"),  # '/' in it
    ],
)
def test_credentials_found_by_a_red_team_pass_are_masked(text, secret):
    assert secret not in redact_uri(text)

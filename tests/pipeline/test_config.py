import json
from pathlib import Path

import pytest

from pipeline.config import flatten, load_config
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_paper_config_holds_the_paper_settings():
    cfg = load_config(ROOT / "configs" / "srgan_x4.yaml")
    g = cfg.model.generator
    assert (g.scale, g.num_blocks, g.num_features, g.batch_norm) == (4, 16, 64, True)
    assert cfg.data.patch_size == 96 and cfg.train.batch_size == 16
    assert cfg.train.adam_betas[0] == 0.9 and cfg.train.pretrain.lr == 1e-4
    assert cfg.train.pretrain.steps == 1_000_000 and cfg.train.gan.steps == 200_000
    assert cfg.train.gan.lr_drop_step == 100_000 and cfg.train.gan.lr_drop_factor == 0.1
    w = cfg.loss.weights
    assert (w.content, w.adversarial) == (1.0, 1e-3) and cfg.loss.vgg_layer == "relu5_4"
    assert cfg.loss.effective_feature_scale == pytest.approx(1 / 12.75)


def test_quickstart_config_is_small_and_download_free():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.loss.content_backbone == "discriminator" and cfg.total_steps <= 1000
    assert cfg.data.train.startswith("samples://")


def test_overrides_are_parsed_as_yaml_values():
    cfg = load_config(
        ROOT / "configs" / "quickstart.yaml", ["train.gan.lr=2e-4", "train.phases=[gan]", "scaling.num_workers=1"]
    )
    assert cfg.train.gan.lr == 2e-4 and cfg.train.phases == ["gan"] and cfg.scaling.num_workers == 1


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.batch_size=7", "train.batch_size 7 must divide evenly among scaling.num_workers 2"),
        ("train.bach_size=8", "train.bach_size: unknown key"),
        ("loss.vgg_layer=relu9_9", "loss.vgg_layer: unknown VGG19 layer 'relu9_9'"),
        ("data.patch_size=30", "data.patch_size 30 must be a multiple of model.generator.scale 4"),
        ("train.phases=[gan, pretrain]", "train.phases: phases must be"),
        ("loss.weights.adversarial=-1", "loss.weights.adversarial: Input should be greater than or equal to 0"),
        ("data.degradation.name=blurry", "data.degradation.name"),
        ("train.batch_size", "expected key.path=value"),
        ("scaling.min_workers=3", "scaling.min_workers 3 is above scaling.num_workers"),
        ("mlflow.outage_s=0", "mlflow.outage_s: Input should be greater than 0"),
        ("s3.retry_s=-5", "s3.retry_s: Input should be greater than 0"),
    ],
)
def test_bad_values_fail_at_load_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs" / "quickstart.yaml", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "..", ".hidden", "", "a..b", "tab\there"])
def test_a_run_name_must_be_one_safe_folder_name(name):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs" / "quickstart.yaml", [f"run.name={json.dumps(name)}"])  # YAML reads JSON strings
    assert "run.name: " in str(err.value) and "e.g. srgan-x4-a" in str(err.value) and "\n" not in str(err.value)


def test_safe_run_and_sweep_names_pass_and_a_sweep_name_is_checked_too():
    from pipeline.config import parse_config
    from pipeline.training.sweep import SweepConfig

    for name in ("srgan-20261123-101500", "x4_a.v2", "T1"):
        assert load_config(ROOT / "configs" / "quickstart.yaml", [f"run.name={name}"]).run.name == name
    with pytest.raises(ConfigError, match="name: '../sweeps' is not"):
        parse_config({"name": "../sweeps", "train_config": "train.yaml", "search": {}}, SweepConfig)


def test_missing_data_source_and_missing_file(tmp_path):
    (tmp_path / "c.yaml").write_text("train: {batch_size: 4}\n")
    with pytest.raises(ConfigError, match="data: required key is missing"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_flattened_params_leave_out_secret_looking_keys():
    from pydantic import BaseModel

    cfg = load_config(ROOT / "configs" / "quickstart.yaml", ["loss.weights.content=0.5"])
    params = flatten(cfg)
    assert params["loss.weights.content"] == "0.5" and params["model.generator.scale"] == "4"

    class Store(BaseModel):
        endpoint_url: str = "http://127.0.0.1:9000"
        aws_secret_access_key: str = "hunter2"
        api_token: str = "abc"

    class WithSecrets(BaseModel):
        s3: Store = Store()

    assert flatten(WithSecrets()) == {"s3.endpoint_url": "http://127.0.0.1:9000"}


def test_lr_schedule_follows_the_paper_and_d_lr_is_separate():
    from pipeline.training.recipe import lr_at

    cfg = load_config(ROOT / "configs" / "srgan_x4.yaml")
    assert lr_at(cfg, 0) == 1e-4 and lr_at(cfg, 999_999) == 1e-4  # SRResNet phase
    assert lr_at(cfg, 1_000_000) == 1e-4 and lr_at(cfg, 1_099_999) == 1e-4  # first 10^5 GAN steps
    assert lr_at(cfg, 1_100_000) == pytest.approx(1e-5) and lr_at(cfg, 1_199_999, "d") == pytest.approx(1e-5)
    cfg = load_config(ROOT / "configs" / "srgan_x4.yaml", ["train.gan.d_lr=4e-4"])
    assert lr_at(cfg, 1_000_000, "d") == 4e-4 and lr_at(cfg, 1_000_000, "g") == 1e-4
    assert lr_at(cfg, 1_100_000, "d") == pytest.approx(4e-5)

"""Config loading: YAML, defaults, dotted overrides, and shape checks (no torch involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from optbench.core.config import apply_overrides, load_config, parse_override
from optbench.core.errors import ConfigError
from tests.helpers import REPO, regression_dict, write_config


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_validates(path: Path) -> None:
    from optbench.experiment.plan import make_plan

    plan = make_plan(load_config(path))
    assert plan.name == path.stem
    assert plan.resolved["optimizer"]["name"] == plan.optimizer.info.name


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    config = regression_dict()
    del config["name"]
    assert load_config(write_config(tmp_path, config, "my-exp.v2.yaml")).name == "my-exp.v2"


def test_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    path = write_config(tmp_path, regression_dict())
    config = load_config(
        path,
        [
            "optimizer.lr=0.1",
            "epochs=3",
            "optimizer.name=Adam",
            "optimizer.betas=[0.8, 0.9]",
            "data.normalize=null",
        ],
    )
    assert config.optimizer.name == "Adam"
    assert config.optimizer.options == {"lr": 0.1, "betas": [0.8, 0.9]}
    assert config.epochs == 3


def test_override_reaches_into_param_group_lists() -> None:
    config = {"optimizer": {"param_groups": [{"params": "a", "lr": 1}]}}
    apply_overrides(config, ["optimizer.param_groups.0.lr=0.5"])
    assert config["optimizer"]["param_groups"][0]["lr"] == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs", "is not KEY=VALUE"),
        ("=3", "is not KEY=VALUE"),
        ("a..b=1", "is not a dotted key"),
        ("lr=[1, 2", "invalid YAML"),
    ],
)
def test_bad_override_text(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_override(text)


def test_strings_are_not_coerced_to_numbers(tmp_path: Path) -> None:
    path = write_config(tmp_path, regression_dict(epochs="3"))
    with pytest.raises(ConfigError, match="epochs: Input should be a valid integer"):
        load_config(path)


def test_unknown_key_suggests_the_close_name(tmp_path: Path) -> None:
    config = regression_dict()
    config["data"]["batchsize"] = 8
    with pytest.raises(
        ConfigError, match=r"data.batchsize: unknown key \(did you mean 'batch_size'\?\)"
    ):
        from optbench.experiment.plan import make_plan

        make_plan(load_config(write_config(tmp_path, config)))


def test_yaml_tags_do_not_construct_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\nepochs: 1\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_config(path)


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_reads_the_same_with_libyaml_as_with_pyyamls_own_parser(
    path: Path,
) -> None:
    """parse_yaml takes libyaml's parser where PyYAML has it; every config the project ships
    reads as PyYAML's pure-Python SafeLoader (with the same rules) reads it."""
    import yaml

    from optbench.core.config import _FastUniqueKeyLoader, _UniqueKeyLoader, parse_yaml

    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML built without libyaml")
    assert issubclass(_FastUniqueKeyLoader, yaml.CSafeLoader)
    text = path.read_text(encoding="utf-8")
    assert parse_yaml(text, str(path)) == yaml.load(text, Loader=_UniqueKeyLoader)

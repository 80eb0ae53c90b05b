"""The one config system: presets, YAML files and dotted overrides, validated by name."""

from __future__ import annotations

import pytest

from texscribe.config import load_config
from texscribe.errors import ConfigError


@pytest.mark.parametrize(
    "raw, expected", [("1e-4", 1e-4), ("7E-4", 7e-4), ("2.5e-3", 2.5e-3), ("0.001", 0.001), ("3", 3.0)]
)
def test_learning_rate_overrides_in_any_float_spelling(raw, expected):
    config = load_config("tiny", [f"optim.lr={raw}"])
    assert config.optim.lr == pytest.approx(expected)
    assert isinstance(config.optim.lr, float)


def test_scientific_notation_in_a_yaml_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: mine\noptim:\n  lr: 3e-4\n", encoding="utf-8")
    assert load_config(path).optim.lr == pytest.approx(3e-4)


def test_unknown_key_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"optim\.learning_rate.*valid keys here: .*lr"):
        load_config("tiny", ["optim.learning_rate=1e-4"])


@pytest.mark.parametrize(
    "override, field", [("optim.lr=fast", "optim.lr"), ("train.max_epochs=ten", "train.max_epochs")]
)
def test_wrong_type_names_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("tiny", [override])


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config("tiny", ["optim.lr"])

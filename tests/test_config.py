"""The one config system: presets, YAML files and dotted overrides, validated by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from texscribe.config import Config, from_dict, load_config, stored_config, upgrade_stored
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


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=-1", r"optim\.lr: must be > 0, got -1\.0"),
        ("data.batch_max_size=0", r"data\.batch_max_size: must be >= 1, got 0"),
        ("train.precision=fp8", r"train\.precision: got 'fp8'; valid: auto, .*bf16-mixed.*32-true"),
        ("train.max_epochs=-1", r"train\.max_epochs: the cosine schedule needs a length"),
        ("train.max_epochs=0", r"train\.max_epochs: must be >= 1, or -1 for no limit, got 0"),
        ("train.max_time=8h", r"train\.max_time: must look like DD:HH:MM:SS"),
        ("data.img_max_height=8", r"data\.img_max_height: must be >= data\.img_min_height \(16\)"),
    ],
)
def test_out_of_range_values_name_the_field_and_what_is_valid(override, message):
    """Issue 19 item 6: these reached the trainer and failed there with a traceback or a riddle."""
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


@pytest.mark.parametrize("precision", ["auto", "32-true", "bf16-mixed", "16-mixed", "32", "bf16", "64"])
def test_every_lightning_precision_is_accepted(precision):
    assert load_config("tiny", [f"train.precision={precision}"]).train.precision == precision


def test_epoch_limit_off_is_fine_when_steps_bound_the_run():
    config = load_config("tiny", ["train.max_epochs=-1", "train.max_steps=100"])
    assert (config.train.max_epochs, config.train.max_steps) == (-1, 100)


def test_cli_train_with_a_bad_value_exits_2_with_one_line(tmp_path, capsys):
    from texscribe.cli import main

    rc = main(["train", "--config", "tiny", "--train", str(tmp_path), "--out", str(tmp_path), "optim.lr=-1"])
    assert rc == 2 and capsys.readouterr().err == "texscribe train: error: optim.lr: must be > 0, got -1.0\n"
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


# ------------------------------------------------------------------------------------ retired keys
REPO = Path(__file__).resolve().parents[1]
RUN_CHECKPOINT = Path("/work/runs/base-hw-long/checkpoints/last.ckpt")


@pytest.mark.parametrize(
    "override, replacement",
    [("train.teacher_forcing=0.5", r"model\.decoder\.teacher_forcing"), ("train.val_beam=1", r"delete it")],
)
def test_a_retired_key_in_an_override_names_its_replacement(override, replacement):
    key = override.split("=")[0].replace(".", r"\.")
    with pytest.raises(ConfigError, match=rf"config key '{key}' was retired: .*{replacement}"):
        load_config("tiny", [override])


def test_a_retired_key_in_a_yaml_file_names_its_replacement(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("name: old\ntrain:\n  teacher_forcing: 0.8\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"'train\.teacher_forcing' was retired: use model\.decoder\.teacher_forcing"
    ):
        load_config(path)


def test_a_stored_config_drops_retired_keys_and_keeps_what_they_meant():
    stored = load_config("model1").to_dict()
    stored["train"].update(teacher_forcing=1.0, val_beam=3)
    config = stored_config(stored)
    assert config == load_config("model1")  # at its default the old key changed nothing
    stored["train"]["teacher_forcing"] = 0.7  # below 1 it overrode the decoder's ratio in training
    assert stored_config(stored).model.decoder["teacher_forcing"] == 0.7
    assert "teacher_forcing" in stored["train"]  # the caller's dict is left as it was


def test_the_decoder_ratio_is_range_checked_and_reaches_the_trained_decoder():
    with pytest.raises(
        ConfigError, match=r"model\.decoder\.teacher_forcing: must be between 0 and 1, got 1\.5"
    ):
        load_config("tiny", ["model.decoder.teacher_forcing=1.5"])
    from texscribe.training.lit_module import LitImageToLatex

    config = load_config("tiny", ["model.decoder.teacher_forcing=0.25"])
    module = LitImageToLatex(config.to_dict(), ["<pad>", "<sos>", "<eos>", "<unk>", "x"])
    assert module.model.decoder.teacher_forcing == 0.25


def test_a_model_file_with_retired_keys_still_loads(tmp_path):
    """Model files saved before `train.teacher_forcing` and `train.val_beam` were retired (the `small` default
    of 2026-11-22 was one) load: the keys are upgraded, a decoder ratio below 1 moves to the decoder."""
    import torch

    from texscribe.checkpoint import read_model_file, save_model_file
    from texscribe.latex import Vocab
    from texscribe.models.registry import build_model

    config = load_config("tiny")
    vocab = Vocab(["x", "y"])
    path = save_model_file(
        tmp_path / "old.pt", config, vocab, build_model(config.model, len(vocab)).state_dict()
    )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    raw["config"]["train"].update(teacher_forcing=0.5, val_beam=3)  # as an old file stored them
    raw["config"]["model"]["decoder"].pop("teacher_forcing", None)
    torch.save(raw, path)
    loaded = read_model_file(path).config
    assert "teacher_forcing" not in loaded.train.__dict__ and "val_beam" not in loaded.train.__dict__
    assert loaded.model.decoder["teacher_forcing"] == 0.5
    assert loaded.model == stored_config(raw["config"]).model


@pytest.mark.skipif(
    not RUN_CHECKPOINT.is_file(), reason="the base-hw-long training run is not on this machine"
)
def test_the_running_training_checkpoints_config_still_loads():
    import torch

    ckpt = torch.load(RUN_CHECKPOINT, map_location="cpu", weights_only=True, mmap=True)
    stored = ckpt["hyper_parameters"]["config"]
    config = stored_config(stored)
    assert config.train.run_name == stored["train"]["run_name"]
    assert dataclasses.asdict(config.model) == upgrade_stored(stored)["model"]
    assert {"teacher_forcing", "val_beam"} <= set(stored["train"])  # written before the keys were retired
    with pytest.raises(ConfigError, match="was retired"):
        from_dict(Config, stored)  # read as if a user had written it

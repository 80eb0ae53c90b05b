"""Model files and training checkpoints (`texscribe.checkpoint`): the shipped model, a Lightning-shaped
checkpoint of the tiny preset (model and mean-teacher weights), conversion to a model file (library and
`texscribe export --format pt`), and the long training run's real `last.ckpt` where it exists."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from texscribe.checkpoint import (
    checkpoint_weights,
    export_checkpoint,
    read_checkpoint,
    read_model_file,
    read_weights,
    save_model_file,
)
from texscribe.config import load_config
from texscribe.errors import ConfigError, ModelLoadError
from texscribe.latex import Vocab
from texscribe.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = Vocab(["x", "y", "2", "+", "=", "\\frac", "{", "}", "^", "_"])
RUN_CHECKPOINT = Path("/work/runs/base-hw-long/checkpoints/last.ckpt")  # read only, never written


def fake_training_checkpoint(path: Path, teacher: bool = False) -> tuple[Path, dict[str, torch.Tensor]]:
    """A checkpoint shaped as Lightning writes `LitImageToLatex`'s: module state under `model.` (and an
    EMA `teacher.` copy), config + vocab in `hyper_parameters`. Returns it and the evaluated weights."""
    torch.manual_seed(0)
    config = load_config("tiny")
    model = build_model(config.model, len(VOCAB))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    evaluated = model.state_dict()
    if teacher:
        evaluated = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
        state.update({f"teacher.{k}": v for k, v in evaluated.items()})
    ckpt = {
        "epoch": 1,
        "global_step": 7,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "hyper_parameters": {"config": config.to_dict(), "vocab": list(VOCAB.itos)},
    }
    torch.save(ckpt, path)
    return path, evaluated


def test_shipped_model_loads_as_torch_backend():
    from texscribe.inference import load_model, resolve_model_path

    mf = read_model_file(resolve_model_path("default"))
    assert mf.state_dict and len(mf.vocab) > 10
    loaded = load_model("default", num_threads=1).models[0]
    assert loaded.backend == "torch" and isinstance(loaded.model, torch.nn.Module)
    assert loaded.model.state_dict().keys() == mf.state_dict.keys()
    assert loaded.vocab.itos == mf.vocab.itos and loaded.path.name == "default.pt"


def test_model_file_round_trip_keeps_fp16_weights_and_meta(tmp_path: Path):
    config = load_config("tiny")
    model = build_model(config.model, len(VOCAB))
    path = save_model_file(tmp_path / "m.pt", config, VOCAB, model.state_dict(), {"note": "x"})
    mf = read_model_file(path)
    assert mf.config == config and mf.vocab.itos == VOCAB.itos and mf.meta == {"note": "x"}
    for key, value in model.state_dict().items():
        stored = mf.state_dict[key]
        assert stored.dtype == (torch.float16 if value.is_floating_point() else value.dtype)
        assert torch.equal(stored, value.to(stored.dtype))


def test_checkpoint_weights_are_the_evaluated_model(tmp_path: Path):
    path, evaluated = fake_training_checkpoint(tmp_path / "last.ckpt")
    weights = checkpoint_weights(read_checkpoint(path))
    assert weights.state_dict.keys() == evaluated.keys()
    assert all(torch.equal(weights.state_dict[k], v) for k, v in evaluated.items())
    assert weights.vocab.itos == VOCAB.itos
    assert weights.model_config == asdict(load_config("tiny").model)
    mt_path, teacher = fake_training_checkpoint(tmp_path / "mt.ckpt", teacher=True)
    mt = checkpoint_weights(read_checkpoint(mt_path))  # the mean teacher's EMA weights, not the student's
    assert all(torch.equal(mt.state_dict[k], v) for k, v in teacher.items())


def test_read_weights_takes_a_model_file_or_a_checkpoint(tmp_path: Path):
    ckpt, evaluated = fake_training_checkpoint(tmp_path / "last.ckpt")
    model_file = export_checkpoint(ckpt, tmp_path / "model.pt", meta={"why": "test"})
    from_ckpt, from_file = read_weights(ckpt), read_weights(model_file)
    assert from_ckpt.model_config == from_file.model_config
    assert from_ckpt.vocab.itos == from_file.vocab.itos
    assert from_file.state_dict.keys() == from_ckpt.state_dict.keys() == evaluated.keys()
    for key, stored in from_file.state_dict.items():  # fp16 in the model file
        assert torch.equal(stored, from_ckpt.state_dict[key].to(stored.dtype))
    meta = read_model_file(model_file).meta
    assert meta == {"checkpoint": "last.ckpt", "checkpoint_step": 7, "checkpoint_epoch": 1, "why": "test"}


def test_several_checkpoints_average_into_one_model_file(tmp_path: Path):
    """Snapshots of one run -> one model file holding their mean weights (float tensors; integer buffers
    from the last), with the snapshots named in its meta; the CLI takes them as several --model values;
    checkpoints of different vocabularies refuse to average."""
    from texscribe.cli import main

    a, wa = fake_training_checkpoint(tmp_path / "a.ckpt")
    b, wb = fake_training_checkpoint(tmp_path / "b.ckpt", teacher=True)  # its evaluated weights: a's + 1
    mf = read_model_file(export_checkpoint([a, b], tmp_path / "avg.pt"))
    for key, value in wa.items():
        if value.is_floating_point():
            assert torch.allclose(mf.state_dict[key].float(), (value + wb[key]) / 2, atol=2e-3, rtol=1e-3), (
                key
            )
    assert [m["file"] for m in mf.meta["averaged_checkpoints"]] == ["a.ckpt", "b.ckpt"]
    out = tmp_path / "cli.pt"
    assert main(["export", "--model", str(a), str(b), "--format", "pt", "--out", str(out)]) == 0
    assert read_model_file(out).meta["averaged_checkpoints"][1]["step"] == 7
    other = torch.load(b, weights_only=False)
    other["hyper_parameters"]["vocab"] = [*other["hyper_parameters"]["vocab"][:-1], "z"]
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(ModelLoadError, match="other.ckpt: cannot average"):
        export_checkpoint([a, tmp_path / "other.ckpt"], tmp_path / "bad.pt")


def test_export_sets_how_the_model_file_reads_images(tmp_path: Path):
    """`export --set data.ink_height=34` changes the reading size in the model file and records it; a model
    key, an unknown data key or a bad value is refused by name."""
    from texscribe.cli import main

    ckpt, _ = fake_training_checkpoint(tmp_path / "last.ckpt")
    out = tmp_path / "read34.pt"
    assert main(["export", "--model", str(ckpt), "--format", "pt", "--out", str(out),
                 "--set", "data.ink_height=34"]) == 0  # fmt: skip
    mf = read_model_file(out)
    assert mf.config.data.ink_height == 34.0 and mf.meta["export_overrides"] == ["data.ink_height=34"]
    assert mf.config.model == load_config("tiny").model
    with pytest.raises(ConfigError, match="only data.. settings"):
        export_checkpoint(ckpt, tmp_path / "bad.pt", overrides=["model.d_model=64"])
    with pytest.raises(ConfigError, match="data.ink_hieght"):
        export_checkpoint(ckpt, tmp_path / "bad.pt", overrides=["data.ink_hieght=34"])
    with pytest.raises(ConfigError, match="data.ink_height"):
        export_checkpoint(ckpt, tmp_path / "bad.pt", overrides=["data.ink_height=-3"])


def test_export_sets_how_an_existing_model_file_reads_keeping_its_weights(tmp_path: Path, capsys):  # noqa: ANN001
    """`export --model m.pt --format pt --set ...`: a copy with new reading settings, the same weights and
    vocabulary, the overrides appended to its meta; without --set, or averaged with another, it is refused."""
    from texscribe.cli import main

    ckpt, _ = fake_training_checkpoint(tmp_path / "last.ckpt")
    first = tmp_path / "m.pt"
    assert main(["export", "--model", str(ckpt), "--format", "pt", "--out", str(first),
                 "--set", "data.ink_height=34"]) == 0  # fmt: skip
    out = tmp_path / "multi.pt"
    assert main(["export", "--model", str(first), "--format", "pt", "--out", str(out),
                 "--set", "data.read_ink_heights=[28,42]"]) == 0  # fmt: skip
    before, after = read_model_file(first), read_model_file(out)
    assert after.config.data.read_ink_heights == [28.0, 42.0] and after.config.data.ink_height == 34.0
    assert after.meta["export_overrides"] == ["data.ink_height=34", "data.read_ink_heights=[28,42]"]
    assert after.vocab.itos == before.vocab.itos
    assert all(torch.equal(after.state_dict[k], v) for k, v in before.state_dict.items())
    assert main(["export", "--model", str(first), "--format", "pt", "--out", str(out)]) == 2
    assert "already a model file; give --set" in capsys.readouterr().err
    both = [str(first), str(out)]
    assert (
        main(["export", "--model", *both, "--format", "pt", "--out", str(out), "--set", "data.scale=1"]) == 2
    )
    assert "not model files" in capsys.readouterr().err


def test_a_checkpoint_is_not_a_model_file_and_the_message_names_the_command(tmp_path: Path):
    from texscribe.cli import main
    from texscribe.inference import load_model

    ckpt, _ = fake_training_checkpoint(tmp_path / "last.ckpt")
    with pytest.raises(ModelLoadError, match=r"training checkpoint.*texscribe export --format pt"):
        read_model_file(ckpt)
    with pytest.raises(ModelLoadError, match="texscribe export --format pt"):
        load_model(ckpt)
    out = tmp_path / "converted.pt"
    assert main(["export", "--model", str(ckpt), "--format", "pt", "--out", str(out)]) == 0
    assert load_model(out, num_threads=1).models[0].vocab.itos == VOCAB.itos
    junk = tmp_path / "junk.pt"
    torch.save({"something": "else"}, junk)
    with pytest.raises(ModelLoadError, match="not a texscribe model file"):
        read_model_file(junk)
    with pytest.raises(ModelLoadError, match="not a texscribe training checkpoint"):
        read_checkpoint(junk)
    with pytest.raises(ModelLoadError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.skipif(not RUN_CHECKPOINT.is_file(), reason=f"{RUN_CHECKPOINT} not present (training run)")
def test_the_running_training_checkpoint_still_reads():
    """The long run's last.ckpt (written by the code before this module held checkpoint reading): the same
    state dict keys as a plain torch.load, and evaluated weights that fit the model its config builds."""
    raw = torch.load(RUN_CHECKPOINT, map_location="cpu", weights_only=True)
    ckpt = read_checkpoint(RUN_CHECKPOINT)
    assert ckpt["state_dict"].keys() == raw["state_dict"].keys()
    prefix = "teacher." if any(k.startswith("teacher.") for k in raw["state_dict"]) else "model."
    before = {
        k.removeprefix(prefix) for k in raw["state_dict"] if k.startswith(prefix)
    }  # the old model_state
    weights = checkpoint_weights(ckpt)
    assert weights.state_dict.keys() == before
    config = load_config_from(ckpt)
    model = build_model(config.model, len(weights.vocab))
    model.load_state_dict(weights.state_dict, strict=True)
    assert read_weights(RUN_CHECKPOINT).state_dict.keys() == before


def load_config_from(ckpt: dict):
    from texscribe.config import stored_config

    return stored_config(ckpt["hyper_parameters"]["config"])

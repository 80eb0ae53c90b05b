"""The CLI shells: flags shared by the model-running subcommands come from one place (commands/common.py)."""

from __future__ import annotations

import pytest

from texscribe.cli import build_parser
from texscribe.commands.common import model_spec
from texscribe.errors import ConfigError


def _parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_predict_and_evaluate_share_model_and_decode_flags() -> None:
    shared = ["--model", "a.pt", "--model", "b.pt", "--backend", "onnx", "--device", "cuda", "--threads", "3",
              "--beam", "4", "--max-len", "50", "--batch-size", "2", "--workers", "0"]  # fmt: skip
    predict = _parse("predict", "x.png", *shared)
    evaluate = _parse("evaluate", "--data", "d", *shared)
    names = ("model", "backend", "device", "threads", "beam", "max_len", "batch_size", "workers")
    assert [getattr(predict, n) for n in names] == [getattr(evaluate, n) for n in names]
    assert model_spec(predict) == ["a.pt", "b.pt"]
    assert model_spec(_parse("evaluate", "--data", "d")) == "default"  # one model: a name, not a list


def test_serve_takes_one_model_and_no_device() -> None:
    args = _parse("serve", "--model", "m.pt", "--backend", "onnx", "--threads", "2")
    assert (args.model, args.backend, args.threads) == ("m.pt", "onnx", 2)
    assert _parse("serve").model == "default" and not hasattr(args, "device")


def test_set_torch_threads_checks_before_setting() -> None:
    import torch

    from texscribe.threads import set_torch_threads

    before = torch.get_num_threads()
    with pytest.raises(ConfigError, match="--threads"):
        set_torch_threads(0, "--threads")
    assert torch.get_num_threads() == before
    set_torch_threads(1, single_interop=True)
    try:
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

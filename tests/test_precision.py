"""Training precision: `train.precision: auto` picks bf16-mixed where the CPU multiplies bf16 natively, the
`base` preset is shaped for that path (channels-last, ~6 M parameters), and a few real bf16 steps on real
CROHME images lower the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from texscribe.config import load_config
from texscribe.models.registry import build_model, count_parameters, state_dict_bytes
from texscribe.training import run


def test_explicit_precision_is_kept() -> None:
    for value in ("32-true", "bf16-mixed", "16-mixed"):
        assert run.resolve_precision(value, "cpu") == value


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_cpu_follows_native_bf16(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(run, "cpu_has_native_bf16", lambda: native)
    assert run.resolve_precision("auto", "auto") == expected
    assert run.resolve_precision("auto", "cpu") == expected


def test_native_bf16_matches_the_cpu_flags() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        assert run.cpu_has_native_bf16() is False  # no flags to read: fp32, the safe choice
        return
    flags = set(cpuinfo.read_text(errors="replace").split())
    assert run.cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


def test_base_preset_is_sized_for_the_matrix_units() -> None:
    cfg = load_config("base")
    model = build_model(cfg.model, vocab_size=120)
    assert 5_000_000 <= count_parameters(model) <= 8_000_000
    assert state_dict_bytes(model) <= 15 * 2**20  # fp16 model file within the shipping limit
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.out_channels % 32 == 0 for c in convs)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert cfg.train.bidirectional and cfg.train.precision == "auto"


def test_loaded_weights_keep_channels_last() -> None:
    cfg = load_config("base")
    source, target = build_model(cfg.model, 50), build_model(cfg.model, 50)
    target.load_state_dict({k: v.contiguous() for k, v in source.state_dict().items()})
    conv = target.encoder.blocks[0].conv1
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(conv.weight, source.encoder.blocks[0].conv1.weight)


@pytest.mark.shared
def test_bf16_steps_on_real_images_lower_the_loss(shared_data: Path, tmp_path: Path) -> None:
    """Overfit one real CROHME batch for a few bf16-autocast AdamW steps of the `base` model (bidirectional)."""
    from texscribe.data.batching import collate
    from texscribe.data.datamodule import LatexDataset
    from texscribe.data.prepare import prepare
    from texscribe.data.prepared import PreparedDataset
    from texscribe.training.lit_module import LitImageToLatex

    prepare(
        [f"{shared_data / 'crohme' / 'crohme_offline.zip'}:train"],
        tmp_path,
        limit=8,
        workers=1,
        progress=False,
    )
    data = PreparedDataset.open(tmp_path)
    cfg = load_config("base", ["data.img_max_height=48", "data.img_max_width=160"])
    torch.manual_seed(0)
    module = LitImageToLatex(cfg.to_dict(), data.vocab.itos)
    module.train()
    dataset = LatexDataset([data], data.vocab, cfg.data)
    batch = collate([dataset[i] for i in range(len(dataset))], bidirectional=True)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3, foreach=True)
    losses = []
    for _ in range(6):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, target = module.logits(batch, both_directions=True)
        assert logits.dtype == torch.bfloat16 and len(logits) == 2 * len(batch)  # L2R and R2L rows
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), target.flatten(), ignore_index=0
        )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0]


def test_bf16_causal_attention_matches_fp32() -> None:
    """The bf16 CPU self-attention path (plain matmuls instead of flash) computes causal attention: same
    output and gradients as fp32 flash attention within bf16 rounding, and no look-ahead."""
    from texscribe.models.decoders.transformer import scaled_dot_product_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 12, 16, requires_grad=True) for _ in range(3))
    ref = scaled_dot_product_attention(q, k, v, None, dropout=0.0, causal=True)
    ref.square().sum().backward()
    ref_grads = [t.grad.clone() for t in (q, k, v)]
    low = [t.detach().bfloat16().requires_grad_(True) for t in (q, k, v)]
    out = scaled_dot_product_attention(*low, None, dropout=0.0, causal=True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)
    out.float().square().sum().backward()
    for got, want in zip((t.grad.float() for t in low), ref_grads):
        assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.99
    changed = low[1].detach().clone()
    changed[:, :, 6:] = 0.0  # keys after position 5 must not change the first six outputs
    again = scaled_dot_product_attention(
        low[0].detach(), changed, low[2].detach(), None, dropout=0.0, causal=True
    )
    torch.testing.assert_close(again[:, :, :6], out.detach()[:, :, :6])

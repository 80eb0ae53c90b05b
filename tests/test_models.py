"""Model families: shapes, gradients, padding exactness, step-vs-forward equivalence, registry, presets."""

from __future__ import annotations

import pytest
import torch

from texscribe.config import ModelConfig, load_config
from texscribe.errors import ConfigError
from texscribe.models import DECODERS, ENCODERS, build_model, count_parameters, state_dict_bytes
from texscribe.models.interface import Decoder, DecodingModel, Encoder

VOCAB = 40

# Small but structurally complete versions of each part, so every combination runs in well under a second.
SMALL_ENCODERS = {
    "vgg": {"name": "vgg", "channels": [8, 16, 16, 32], "pools": [2, [2, 1], 2, 1]},
    "resnet": {"name": "resnet", "layers": [1, 1, 1], "widths": [8, 16, 32], "stem_channels": 8},
    "densenet": {"name": "densenet", "growth": 6, "depth": 3},
    "efficientnet": {
        "name": "efficientnet",
        "width_mult": 0.25,
        "depth_mult": 0.34,
        "num_stages": 5,
        "strides": [1, 2, 2, 2, 1],
        "non_local": [4],
    },
    "satrn": {
        "name": "satrn",
        "channels": [8, 16],
        "pools": [2, [2, 1]],
        "dim": 16,
        "num_layers": 1,
        "num_heads": 2,
        "ff_dim": 32,
    },
}
SMALL_DECODERS = {
    "transformer": {"name": "transformer", "num_layers": 2, "num_heads": 4, "ff_dim": 64, "dropout": 0.1},
    "rnn_attention": {
        "name": "rnn_attention",
        "cell": "lstm",
        "hidden_dim": 32,
        "embed_dim": 16,
        "attn_dim": 24,
        "coverage_channels": 8,
        "coverage_kernel": 5,
        "dropout": 0.1,
    },
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_model(encoder: str, decoder: str, **decoder_overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(
        d_model=32,
        encoder=dict(SMALL_ENCODERS[encoder]),
        decoder={**SMALL_DECODERS[decoder], **decoder_overrides},
    )
    return build_model(config, VOCAB)


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two images of different sizes in one (2, 1, 48, 150) batch, padding filled with junk on purpose."""
    gen = torch.Generator().manual_seed(1)
    images = torch.full((2, 1, 48, 150), 0.5)
    mask = torch.ones(2, 48, 150, dtype=torch.bool)
    images[0, :, :48, :150] = torch.rand(1, 48, 150, generator=gen)
    mask[0, :48, :150] = False
    images[1, :, :33, :97] = torch.rand(1, 33, 97, generator=gen)
    mask[1, :33, :97] = False
    tgt = torch.randint(3, VOCAB, (2, 9), generator=gen)
    tgt[:, 0] = 1  # <sos>
    tgt[1, 6:] = 0  # <pad> after a shorter label
    return images, mask, tgt


def all_pairs() -> list[tuple[str, str]]:
    assert set(SMALL_ENCODERS) == set(ENCODERS) and set(SMALL_DECODERS) == set(DECODERS)
    return [(e, d) for e in ENCODERS for d in DECODERS]


@pytest.mark.parametrize(("encoder", "decoder"), all_pairs())
def test_forward_backward_shapes_and_grads(encoder: str, decoder: str) -> None:
    model = small_model(encoder, decoder).train()
    images, mask, tgt = padded_batch()
    logits = model(images, mask, tgt)
    assert logits.shape == (2, tgt.shape[1], VOCAB)
    target = torch.cat((tgt[:, 1:], torch.full((2, 1), 2)), dim=1)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=0)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without finite gradients: {missing}"
    memory = model.encode(images, mask)
    assert memory.features.shape == (2, memory.height * memory.width, 32)
    assert memory.mask.shape == (2, memory.height * memory.width)
    # the smaller image has padding cells, the full-size one none
    assert not memory.mask[0].any() and memory.mask[1].any()


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_feature_mask_is_exact(encoder: str) -> None:
    """The feature mask marks exactly the stride blocks that hold no image pixel."""
    model = small_model(encoder, "transformer").eval()
    images, mask, _ = padded_batch()
    features, feature_mask = model.encoder(images, mask)
    sh, sw = model.stride
    assert features.shape[-2:] == feature_mask.shape[-2:] == (-(-48 // sh), -(-150 // sw))
    rows, cols = -(-33 // sh), -(-97 // sw)  # cells touching the 33×97 image
    expected = torch.ones_like(feature_mask[1])
    expected[:rows, :cols] = False
    assert torch.equal(feature_mask[1], expected)
    assert features.shape[1] == model.encoder.out_channels


@pytest.mark.parametrize(("encoder", "decoder"), all_pairs())
def test_padding_does_not_change_the_output(encoder: str, decoder: str) -> None:
    model = small_model(encoder, decoder).eval()
    images, mask, tgt = padded_batch()
    batched = model(images, mask, tgt)
    alone = model(images[1:, :, :33, :97], mask[1:, :33, :97], tgt[1:])
    torch.testing.assert_close(alone, batched[1:], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("encoder", "decoder"), [("densenet", d) for d in DECODERS])
def test_step_matches_teacher_forced_forward(encoder: str, decoder: str) -> None:
    model = small_model(encoder, decoder).eval()
    images, mask, tgt = padded_batch()
    with torch.no_grad():
        expected = model(images, mask, tgt)
        memory = model.encode(images, mask)
        cache = model.decoder.init_cache(memory)
        steps = []
        for t in range(tgt.shape[1]):
            logits, cache = model.decoder.step(memory, tgt[:, t], cache)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_reorder_cache_follows_the_batch(decoder: str) -> None:
    """Reordering the cache and memory is the same as decoding the reordered batch."""
    model = small_model("resnet", decoder).eval()
    images, mask, tgt = padded_batch()
    index = torch.tensor([1, 1, 0])
    with torch.no_grad():
        memory = model.encode(images, mask)
        cache = model.decoder.init_cache(memory)
        for t in range(3):
            _, cache = model.decoder.step(memory, tgt[:, t], cache)
        cache = model.decoder.reorder_cache(cache, index)
        logits, _ = model.decoder.step(memory.index_select(index), tgt[index, 3], cache)
        expected = model(images[index], mask[index], tgt[index, :4])[:, -1]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("encoder", "decoder"), all_pairs())
def test_parts_declare_the_interface(encoder: str, decoder: str) -> None:
    """Every registered part subclasses the interface: the encoder states its stride, the decoder whether
    its teacher-forced pass takes k*B target rows for B memory rows (`Decoder.repeats_memory`)."""
    model = small_model(encoder, decoder).eval()
    assert isinstance(model.encoder, Encoder) and isinstance(model.decoder, Decoder)
    assert isinstance(model, DecodingModel)  # explicitly: ImageToLatex is what decoding is written against
    sh, sw = model.encoder.stride
    assert isinstance(sh, int) and isinstance(sw, int) and model.stride == (sh, sw)
    assert isinstance(model.decoder.repeats_memory, bool)
    images, mask, tgt = padded_batch()
    memory = model.encode(images, mask)
    twice = torch.cat([tgt, tgt.flip(0)])  # rows [2, 4) read memories 0, 1 in the repeated layout
    with torch.no_grad():
        expected = model.decoder(memory.index_select(torch.tensor([0, 1, 0, 1])), twice)
        if model.decoder.repeats_memory:
            torch.testing.assert_close(model.decoder(memory, twice), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_teacher_forcing_below_one_feeds_back_predictions(decoder: str) -> None:
    model = small_model("resnet", decoder).train()
    images, mask, tgt = padded_batch()
    torch.manual_seed(3)
    full = model(images, mask, tgt, teacher_forcing=1.0)
    torch.manual_seed(3)
    sampled = model(images, mask, tgt, teacher_forcing=0.0)
    assert sampled.shape == full.shape
    assert torch.isfinite(sampled).all()
    assert not torch.allclose(sampled[:, 2:], full[:, 2:])
    sampled.sum().backward()


def test_registry_rejects_unknown_names_and_keys() -> None:
    with pytest.raises(ConfigError, match=r"model\.encoder\.name.*densenet"):
        build_model(ModelConfig(encoder={"name": "alexnet"}), VOCAB)
    with pytest.raises(ConfigError, match=r"model\.decoder\.name.*transformer"):
        build_model(ModelConfig(decoder={"name": "mamba"}), VOCAB)
    with pytest.raises(ConfigError, match=r"model\.encoder\.grwoth.*valid keys:.*growth"):
        build_model(ModelConfig(encoder={"name": "densenet", "grwoth": 12}), VOCAB)
    with pytest.raises(ConfigError, match=r"model\.decoder\.d_model"):
        build_model(ModelConfig(decoder={"name": "transformer", "d_model": 64}), VOCAB)
    with pytest.raises(ConfigError, match=r"model\.decoder.*num_heads"):
        build_model(ModelConfig(d_model=64, decoder={"name": "transformer", "num_heads": 5}), VOCAB)
    with pytest.raises(ConfigError, match=r"model\.encoder.*stages"):
        build_model(ModelConfig(encoder={"name": "resnet", "stages": [1, 3]}), VOCAB)


@pytest.mark.parametrize(
    ("preset", "max_params"),
    [("tiny", 300_000), ("default", 7_500_000), ("model1", 15_000_000), ("model2", 5_000_000)],
)
def test_presets_build(preset: str, max_params: int) -> None:
    config = load_config(preset)
    assert config.data.train == [] and config.data.val is None  # no machine paths in shipped presets
    model = build_model(config.model, vocab_size=120)
    params = count_parameters(model)
    print(f"{preset}: {params:,} parameters, fp16 {state_dict_bytes(model) / 1e6:.2f} MB")
    assert 0 < params < max_params
    if preset == "default":  # the shipped model must stay small even with an im2latex-sized vocabulary
        assert state_dict_bytes(build_model(config.model, vocab_size=1000), torch.float16) <= 15_000_000
    if preset == "tiny":
        images, mask, tgt = padded_batch()
        assert model.eval()(images, mask, tgt).shape == (2, tgt.shape[1], 120)


def test_rnn_variants_gru_and_row_encoder_stay_exact() -> None:
    """GRU cell + BiLSTM row encoder: padding-exact and step == forward like the default LSTM."""
    model = small_model("densenet", "rnn_attention", cell="gru", row_encoder=True).eval()
    images, mask, tgt = padded_batch()
    with torch.no_grad():
        batched = model(images, mask, tgt)
        alone = model(images[1:, :, :33, :97], mask[1:, :33, :97], tgt[1:])
        memory = model.encode(images, mask)
        cache = model.decoder.init_cache(memory)
        assert set(cache) == {"h", "coverage", "memory", "memory_proj"}
        steps = []
        for t in range(tgt.shape[1]):
            logits, cache = model.decoder.step(memory, tgt[:, t], cache)
            steps.append(logits)
    torch.testing.assert_close(alone, batched[1:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.stack(steps, dim=1), batched, atol=1e-5, rtol=1e-5)
    # coverage accumulates one attention map (summing to 1) per step
    torch.testing.assert_close(cache["coverage"].sum((1, 2)), torch.full((2,), float(tgt.shape[1])))

"""The study's architectures and methods: EfficientNet(+non-local) and SATRN encoders, the BiLSTM row
encoder preset, mean teacher (EMA math, consistency loss, a real training run exporting the teacher),
and ensembles across architectures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from texscribe.config import ModelConfig, load_config
from texscribe.data.batching import collate
from texscribe.errors import ConfigError, ModelLoadError
from texscribe.models import build_model, count_parameters
from texscribe.models.encoders import EfficientNetEncoder, SATRNEncoder

VOCAB = 30
STUDY_PRESETS = ("effnet_nl", "satrn", "rnn_bilstm")

# Width overrides that keep each preset's structure (non-local blocks, A2DPE, BiLSTM rows) but make a
# training step take milliseconds.
TINY = {
    "effnet_nl": {
        "width_mult": 0.25,
        "depth_mult": 0.3,
        "num_stages": 4,
        "strides": [1, 2, 2, 1],
        "non_local": [3, 4],
    },  # fmt: skip
    "satrn": {"channels": [8, 16, 16], "dim": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 32},
    "rnn_bilstm": {"channels": [8, 16, 16, 16, 16]},
}
TINY_DECODER = {
    "transformer": {"num_layers": 1, "num_heads": 2, "ff_dim": 32},
    "rnn_attention": {"hidden_dim": 24, "embed_dim": 16, "attn_dim": 16, "coverage_channels": 4},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model_config(preset: str) -> ModelConfig:
    model = load_config(preset).model
    model.d_model = 16
    model.encoder = {**model.encoder, **TINY[preset]}
    model.decoder = {**model.decoder, **TINY_DECODER[model.decoder["name"]]}
    return model


def padded_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(2, 1, 40, 120) images, the second only 27×70 with junk in its padding; targets (2, 8)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.full((2, 1, 40, 120), 0.7)
    mask = torch.ones(2, 40, 120, dtype=torch.bool)
    images[0] = torch.rand(1, 40, 120, generator=gen)
    mask[0] = False
    images[1, :, :27, :70] = torch.rand(1, 27, 70, generator=gen)
    mask[1, :27, :70] = False
    tgt = torch.randint(3, VOCAB, (2, 8), generator=gen)
    tgt[:, 0] = 1
    tgt[1, 5:] = 0
    return images, mask, tgt


# ---------------------------------------------------------------------------------------------- encoders
@pytest.mark.parametrize(
    "encoder",
    [
        EfficientNetEncoder(width_mult=0.25, depth_mult=0.3, num_stages=5, non_local=[2, 5], drop_path=0.2),
        EfficientNetEncoder(width_mult=0.25, depth_mult=0.3, num_stages=4, strides=[1, [2, 1], 2, 2]),
        SATRNEncoder(channels=[8, 16], pools=[2, [2, 1]], dim=16, num_layers=2, num_heads=2, ff_dim=32),
    ],
    ids=["effnet_nonlocal", "effnet_rect_stride", "satrn"],
)
def test_encoder_shapes_masks_and_padding_invariance(encoder: torch.nn.Module) -> None:
    encoder.eval()
    images, mask, _ = padded_batch()
    features, feature_mask = encoder(images, mask)
    sh, sw = encoder.stride
    assert features.shape == (2, encoder.out_channels, -(-40 // sh), -(-120 // sw))
    expected = torch.ones_like(feature_mask[1])
    expected[: -(-27 // sh), : -(-70 // sw)] = False
    assert torch.equal(feature_mask[1], expected) and not feature_mask[0].any()
    assert (features[1][:, expected] == 0).all()  # padding cells are zeroed
    alone, alone_mask = encoder(images[1:, :, :27, :70], mask[1:, :27, :70])
    h, w = alone.shape[-2:]
    assert not alone_mask.any()
    torch.testing.assert_close(alone[0], features[1, :, :h, :w], atol=1e-5, rtol=1e-4)


def test_efficientnet_b0_scaling_and_strides() -> None:
    full = EfficientNetEncoder(head_channels=1280)
    assert full.stride == (16, 16)  # formula default: stage 6 kept at stride 1
    assert 3.9e6 < count_parameters(full) < 4.1e6  # EfficientNet-b0 features: about 4.0 M
    slim = EfficientNetEncoder(width_mult=0.5, depth_mult=0.5)
    assert count_parameters(slim) < count_parameters(full) / 3
    assert EfficientNetEncoder(strides=[1, 2, 2, 2, 1, 2, 1]).stride == (32, 32)  # the ImageNet layout


def test_non_local_block_starts_as_identity_and_then_mixes_far_cells() -> None:
    torch.manual_seed(0)
    plain = EfficientNetEncoder(width_mult=0.25, depth_mult=0.3, num_stages=3).eval()
    with_nl = EfficientNetEncoder(width_mult=0.25, depth_mult=0.3, num_stages=3, non_local=[3]).eval()
    state = {k: v for k, v in with_nl.state_dict().items() if not k.startswith("non_local")}
    plain.load_state_dict(state)
    images, mask, _ = padded_batch()
    torch.testing.assert_close(plain(images, mask)[0], with_nl(images, mask)[0])  # zero-init output BN
    torch.nn.init.ones_(next(iter(with_nl.non_local.values())).norm.weight)
    changed = images.clone()
    changed[0, :, :, 100:] = 0.0  # far right only
    before, _ = with_nl(images, mask)
    after, _ = with_nl(changed, mask)
    assert not torch.allclose(before[0, :, :, 0], after[0, :, :, 0])  # the left column sees it


def test_drop_path_is_random_in_training_only() -> None:
    enc = EfficientNetEncoder(width_mult=0.25, depth_mult=2.0, num_stages=3, drop_path=0.5)
    images, mask, _ = padded_batch()
    enc.train()
    outputs = []
    for seed in range(4):  # 2 images x 7 residual blocks: the same drop pattern 4 times is ~impossible
        torch.manual_seed(seed)
        outputs.append(enc(images, mask)[0])
    assert any(not torch.allclose(outputs[0], o) for o in outputs[1:])
    enc.eval()
    torch.testing.assert_close(enc(images, mask)[0], enc(images, mask)[0])


def test_satrn_positions_adapt_to_the_image() -> None:
    enc = SATRNEncoder(channels=[8], pools=[4], dim=16, num_layers=1, num_heads=2, ff_dim=16).eval()
    images, mask, _ = padded_batch()
    x = torch.randn(2, 16, 5, 7)
    valid = torch.ones(2, 1, 5, 7)
    pos = enc.positions(x, valid)
    assert pos.shape == (2, 16, 5, 7)
    assert not torch.allclose(pos[0], pos[1])  # α, β depend on each image's features
    with pytest.raises(ConfigError, match=r"model\.encoder.*non_local"):
        build_model(ModelConfig(encoder={"name": "efficientnet", "num_stages": 3, "non_local": [5]}), VOCAB)
    with pytest.raises(ConfigError, match=r"model\.encoder.*num_heads"):
        build_model(ModelConfig(encoder={"name": "satrn", "dim": 30, "num_heads": 4}), VOCAB)


# ------------------------------------------------------------------------------------ presets train
@pytest.mark.parametrize("preset", STUDY_PRESETS)
def test_preset_builds_and_a_tiny_version_learns_a_fixed_batch(preset: str) -> None:
    config = load_config(preset)
    assert config.data.train == [] and config.data.val is None
    full = build_model(config.model, vocab_size=120)
    assert 0.5e6 < count_parameters(full) < 3e6  # `small`-sized: trainable on a 2-core CPU
    if preset == "rnn_bilstm":
        assert full.decoder.row_encoder is not None  # the BiLSTM over encoder rows
    torch.manual_seed(0)
    model = build_model(tiny_model_config(preset), VOCAB).train()
    images, mask, tgt = padded_batch()
    target = torch.cat((tgt[:, 1:], torch.full((2, 1), 2)), dim=1)
    target[1, 4] = 2
    target[1, 5:] = 0
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        logits = model(images, mask, tgt)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=0)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses


# ---------------------------------------------------------------------------------------- mean teacher
def test_ema_update_decay_and_rampup_math() -> None:
    from texscribe.training.mean_teacher import effective_decay, ema_update, make_teacher, rampup

    student = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student[1].running_mean.fill_(0.5)
    ema_update(teacher, student, 0.9)
    for old, new, s in zip(before, teacher.parameters(), student.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * s)
    torch.testing.assert_close(teacher[1].running_mean, torch.full((2,), 0.5))  # buffers copied
    assert effective_decay(0.999, 0) == pytest.approx(0.1)
    assert effective_decay(0.999, 90) == pytest.approx(0.91)
    assert effective_decay(0.999, 10**6) == 0.999
    assert rampup(0, 100) == pytest.approx(np.exp(-5)) and rampup(50, 100) == pytest.approx(np.exp(-1.25))
    assert rampup(100, 100) == rampup(500, 100) == rampup(0, 0) == 1.0


def test_consistency_loss_is_zero_for_identical_models_and_views_and_trains_the_student() -> None:
    from texscribe.data.batching import Item
    from texscribe.training.mean_teacher import consistency_loss, make_teacher

    torch.manual_seed(0)
    student = build_model(tiny_model_config("effnet_nl"), VOCAB).eval()
    teacher = make_teacher(student)
    rng = np.random.default_rng(0)
    items = [Item(f"i{k}", rng.random((24, 40 + 10 * k)).astype(np.float32), []) for k in range(2)]
    view = collate(items)
    zero = consistency_loss(student, teacher, view, view, max_len=6)
    assert zero.item() == pytest.approx(0.0, abs=1e-6)
    other = collate([Item(it.id, np.flip(it.image, 1).copy(), []) for it in items])
    loss = consistency_loss(student, teacher, other, view, max_len=6)
    assert loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    with pytest.raises(ConfigError, match=r"train\.mean_teacher\.ema_decay"):
        from texscribe.training.mean_teacher import MeanTeacher

        MeanTeacher(load_config("effnet_nl", ["train.mean_teacher.ema_decay=1.5"]))


def synthetic_prepared(root: Path, n: int = 12, seed: int = 0) -> Path:
    """A prepared dataset of stroke images with short labels, in the real prepared layout."""
    import cv2

    from texscribe.data.prepared import PreparedRecord, write_prepared_manifest
    from texscribe.images import save_png
    from texscribe.latex import Vocab

    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        h, w = int(rng.integers(30, 48)), int(rng.integers(60, 140))
        img = np.zeros((h, w), np.uint8)
        for _ in range(3):
            pts = rng.integers([0, 0], [w, h], size=(3, 2)).astype(np.int32)
            cv2.polylines(img, [pts], False, 255, 2)
        path = root / "images" / f"s{i}.png"
        save_png(img.astype(np.float32) / 255, path)
        tokens = [str(t) for t in rng.choice(list("xy12+="), size=int(rng.integers(2, 6)))]
        records.append(PreparedRecord(f"s{i}", path, tokens, "synthetic", h, w))
    write_prepared_manifest(root, records)
    Vocab.build(r.tokens for r in records).save(root / "vocab.json")
    return root


@pytest.mark.slow
def test_mean_teacher_trains_through_the_real_path_and_exports_the_teacher(tmp_path: Path) -> None:
    from texscribe.checkpoint import checkpoint_weights, read_checkpoint, read_model_file
    from texscribe.training import train

    train_dir = synthetic_prepared(tmp_path / "train")
    unlabelled = synthetic_prepared(tmp_path / "unlabelled", n=6, seed=1)
    model = tiny_model_config("effnet_nl")
    overrides = [
        f"data.train=[{train_dir}]", f"data.val={train_dir}", f"train.out_dir={tmp_path / 'runs'}",
        f"model.encoder={model.encoder}", f"model.decoder={model.decoder}", "model.d_model=16",
        "data.scale=1.0", "data.img_max_height=48", "data.img_max_width=160", "data.batch_max_size=4",
        "data.batch_max_pixels=40000", "data.num_workers=0", "train.max_steps=4", "train.max_epochs=10",
        "optim.warmup_steps=1", f"train.mean_teacher.unlabelled=[{unlabelled}]", "train.mean_teacher.batch_size=3",
        "train.mean_teacher.max_len=5", "train.mean_teacher.rampup_steps=2", "train.mean_teacher.ema_decay=0.5",
        "train.val_limit=4", "train.log_every_n_steps=1", "train.checkpoint_every_minutes=null",
    ]  # fmt: skip
    result = train(load_config("effnet_nl", overrides), resume="never")
    assert result.global_step == 4 and result.model_file is not None
    ckpt = read_checkpoint(result.last_checkpoint)
    teacher, student = (
        checkpoint_weights(ckpt).state_dict,
        {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")},
    )
    assert teacher.keys() == student.keys()
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)  # EMA lags the student
    exported = read_model_file(result.model_file).state_dict
    key = next(k for k, v in teacher.items() if v.is_floating_point() and v.numel() > 10)
    torch.testing.assert_close(exported[key].float(), teacher[key].float(), atol=2e-3, rtol=2e-3)
    metrics = (result.run_dir / "logs" / "csv").glob("segment-*/metrics.csv")
    assert "train/consistency_step" in next(iter(metrics)).read_text().splitlines()[0]


# ------------------------------------------------------------------------------------------ ensembles
def test_ensemble_across_architectures_averages_step_logprobs(tmp_path: Path) -> None:
    from texscribe.checkpoint import save_model_file
    from texscribe.decoding import decode, greedy_decode
    from texscribe.inference import load_model
    from texscribe.latex import Vocab

    torch.manual_seed(0)
    a = build_model(tiny_model_config("effnet_nl"), VOCAB).eval()
    b = build_model(tiny_model_config("rnn_bilstm"), VOCAB).eval()
    images, mask, _ = padded_batch()
    hyps = decode([a, b], images, mask, beam=1, max_len=6)
    # reference: greedy over the mean of the two models' log-probs, stepping each model by hand
    with torch.no_grad():
        mems = [m.encode(images, mask) for m in (a, b)]
        caches = [m.decoder.init_cache(mem) for m, mem in zip((a, b), mems)]
        token = torch.ones(2, dtype=torch.long)
        for t in range(3):
            logps = []
            for j, m in enumerate((a, b)):
                logits, caches[j] = m.decoder.step(mems[j], token, caches[j])
                logits[:, :2] = float("-inf")  # <pad>, <sos> never emitted
                logps.append(torch.log_softmax(logits, -1))
            mean = (logps[0] + logps[1]) / 2
            token = mean.argmax(-1)
            for i in range(2):
                if len(hyps[i].tokens) > t:
                    assert hyps[i].tokens[t] == int(token[i])
                    assert hyps[i].token_logprobs[t] == pytest.approx(float(mean[i, token[i]]), abs=1e-5)
    single = greedy_decode(a, images, mask, max_len=6)
    assert [h.tokens for h in decode([a], images, mask, max_len=6)] == single

    vocab = Vocab([str(i) for i in range(VOCAB - 4)])
    files = []
    for name, model in (("effnet_nl", a), ("rnn_bilstm", b)):
        cfg = load_config(name)
        cfg.model = tiny_model_config(name)
        files.append(save_model_file(tmp_path / f"{name}.pt", cfg, vocab, model.state_dict()))
    rec = load_model(files, num_threads=1)
    img = (np.random.default_rng(0).random((30, 90)) > 0.8).astype(np.float32)
    assert isinstance(rec.predict(img, max_len=6).tokens, list)

    c = build_model(tiny_model_config("satrn"), VOCAB + 3).eval()
    with pytest.raises(ModelLoadError, match="different vocabularies"):
        decode([a, c], images, mask, max_len=3)
    other = Vocab([str(i) for i in range(VOCAB - 1)])
    cfg = load_config("satrn")
    cfg.model = tiny_model_config("satrn")
    bad = save_model_file(tmp_path / "satrn.pt", cfg, other, c.state_dict())
    with pytest.raises(ModelLoadError, match="different vocabularies"):
        load_model([files[0], bad], num_threads=1)

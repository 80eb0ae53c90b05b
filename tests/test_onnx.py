"""ONNX export + onnxruntime backend: the exported tiny model decodes exactly like torch.

One export (through the real `texscribe export` command) is shared by the module; the model is the
`tiny` preset with seeded untrained weights, so outputs are long and arbitrary — a strict test of
token-by-token agreement over many decoding steps.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from serving_helpers import formula_png, make_tiny_model  # noqa: E402

from texscribe.cli import main as cli_main  # noqa: E402
from texscribe.decoding import decode, greedy_decode  # noqa: E402
from texscribe.errors import ModelLoadError  # noqa: E402
from texscribe.inference import load_model  # noqa: E402
from texscribe.onnx_export import export_model_file  # noqa: E402
from texscribe.onnx_runtime import (  # noqa: E402
    ENCODER_FILE,
    INIT_FILE,
    STEP_FILE,
    OnnxModel,
    read_export_info,
)

MAX_LEN = 25


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("onnx_model") / "tiny.pt")


@pytest.fixture(scope="module")
def export_dir(model_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_export")
    args = ["export", "--model", str(model_file), "--format", "onnx", "--out", str(out), "--no-check"]
    assert cli_main(args) == 0  # the check is its own test below
    return out


@pytest.fixture(scope="module")
def torch_model(model_file):
    return load_model(str(model_file), num_threads=1).models[0].model


def random_batch(sizes: list[tuple[int, int]], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images of different sizes padded into one batch, with the padding mask."""
    g = torch.Generator().manual_seed(seed)
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    images = torch.zeros(len(sizes), 1, height, width)
    mask = torch.ones(len(sizes), height, width, dtype=torch.bool)
    for i, (h, w) in enumerate(sizes):
        images[i, 0, :h, :w] = torch.rand(h, w, generator=g)
        mask[i, :h, :w] = False
    return images, mask


def test_export_writes_the_documented_files(export_dir):
    names = {p.name for p in export_dir.iterdir()}
    assert {ENCODER_FILE, INIT_FILE, STEP_FILE, "model.json", "vocab.json"} <= names
    info = read_export_info(export_dir)
    assert info["config"]["name"] == "tiny"
    assert info["cache_names"] == sorted(info["cache_names"]) and "k0" in info["cache_names"]
    assert json.loads((export_dir / "vocab.json").read_text())["tokens"][:4] == [
        "<pad>",
        "<sos>",
        "<eos>",
        "<unk>",
    ]


@pytest.mark.parametrize(
    "sizes",
    [[(48, 160)], [(64, 256), (40, 96), (90, 300)], [(17, 333), (128, 64)]],
    ids=["one", "three", "odd"],
)
def test_greedy_tokens_equal_torch(export_dir, torch_model, sizes):
    backend = OnnxModel(export_dir, threads=1)
    images, mask = random_batch(sizes, seed=len(sizes))
    expected = greedy_decode(torch_model, images, mask, max_len=MAX_LEN)
    assert greedy_decode(backend, images, mask, max_len=MAX_LEN) == expected
    with torch.inference_mode():
        a, b = torch_model.encode(images, mask), backend.encode(images, mask)
    assert (a.height, a.width) == (b.height, b.width)
    assert torch.equal(a.mask, b.mask)
    assert float((a.features - b.features).abs().max()) < 1e-4


def test_beam_search_equals_torch(export_dir, torch_model):
    backend = OnnxModel(export_dir, threads=1)
    images, mask = random_batch([(50, 170), (64, 128)], seed=7)
    ours = decode(backend, images, mask, beam=3, max_len=MAX_LEN)
    ref = decode(torch_model, images, mask, beam=3, max_len=MAX_LEN)
    assert [h.tokens for h in ours] == [h.tokens for h in ref]
    assert [h.score for h in ours] == pytest.approx([h.score for h in ref], abs=1e-3)


def test_load_model_onnx_backend_predicts_like_torch(export_dir, model_file):
    png = formula_png("y=2")
    via_onnx = load_model(str(export_dir), backend="onnx", num_threads=1).predict(png, max_len=MAX_LEN)
    via_torch = load_model(str(model_file), num_threads=1).predict(png, max_len=MAX_LEN)
    assert via_onnx.tokens == via_torch.tokens
    assert via_onnx.min_prob == pytest.approx(via_torch.min_prob, abs=1e-4)


def test_int8_quantised_export(model_file, export_dir, tmp_path):
    result = export_model_file(str(model_file), tmp_path / "int8", quantize="int8")
    assert result.quantized and read_export_info(result.out_dir)["quantized"] == "int8"
    assert result.files[STEP_FILE] < 0.6 * (export_dir / STEP_FILE).stat().st_size  # int8 matmul weights
    backend = OnnxModel(result.out_dir, threads=1)
    assert backend.quantized
    images, mask = random_batch([(64, 200)], seed=3)
    (tokens,) = greedy_decode(backend, images, mask, max_len=MAX_LEN)
    assert len(tokens) > 0 and all(4 <= t < len(backend.vocab) for t in tokens)


def test_bad_export_dirs_raise_model_load_error(tmp_path, model_file, export_dir):
    with pytest.raises(ModelLoadError, match="not found"):
        OnnxModel(tmp_path / "missing")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / ENCODER_FILE).write_bytes((export_dir / ENCODER_FILE).read_bytes())
    with pytest.raises(ModelLoadError, match="decoder_step.onnx"):
        OnnxModel(partial)
    with pytest.raises(ModelLoadError, match="not an ONNX export"):
        load_model(str(model_file), backend="onnx")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for p in export_dir.iterdir():
        (corrupt / p.name).write_bytes(p.read_bytes())
    (corrupt / STEP_FILE).write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        OnnxModel(corrupt)


def test_server_on_onnx_backend_matches_torch_server(export_dir, model_file):
    from fastapi.testclient import TestClient

    from texscribe.server import ServerSettings, create_app

    png = formula_png("x+1")
    bodies = []
    for model, backend in ((export_dir, "onnx"), (model_file, "torch")):
        settings = ServerSettings(model=str(model), backend=backend, workers=1, threads=1, max_tokens=MAX_LEN)
        with TestClient(create_app(settings)) as client:
            r = client.post("/v1/predict", files={"file": ("f.png", png, "image/png")})
            assert r.status_code == 200, r.text
            bodies.append(r.json())
            assert client.get("/healthz").json()["backend"] == backend
    assert bodies[0]["tokens"] == bodies[1]["tokens"]


def test_export_check_reports_agreement(model_file, export_dir):
    from texscribe.onnx_export import check_export

    report = check_export(str(model_file), export_dir, images=2, max_len=10)
    assert "greedy tokens identical for 2/2" in report


def test_uint8_canvas_image_through_both_backends(export_dir, model_file):
    """A drawn-canvas-like RGBA PNG (white strokes, transparent background) is accepted by both paths."""
    rgba = np.zeros((80, 240, 4), np.uint8)
    cv2.line(rgba, (20, 60), (80, 20), (255, 255, 255, 255), 4)
    cv2.circle(rgba, (150, 40), 20, (255, 255, 255, 255), 4)
    png = cv2.imencode(".png", rgba)[1].tobytes()
    a = load_model(str(export_dir), backend="onnx", num_threads=1).predict(png, max_len=10)
    b = load_model(str(model_file), num_threads=1).predict(png, max_len=10)
    assert a.tokens == b.tokens


@pytest.mark.parametrize(
    "decoder",
    [
        {"name": "rnn_attention", "cell": "lstm", "hidden_dim": 48, "embed_dim": 32, "attn_dim": 32,
         "coverage_channels": 8, "coverage_kernel": 5},
        {"name": "rnn_attention", "cell": "gru", "hidden_dim": 48, "embed_dim": 32, "attn_dim": 32,
         "coverage_channels": 8, "coverage_kernel": 5, "row_encoder": True},
    ],
    ids=["lstm-coverage", "gru-row-encoder"],
)  # fmt: skip
def test_other_decoder_families_export_exactly(decoder, tmp_path):
    """The export is generic over the Cache dict: WAP-style coverage decoders (cache axes that follow the
    feature grid, fixed hidden sizes) decode like torch too, greedy and beam."""
    from texscribe.config import ModelConfig
    from texscribe.latex import Vocab
    from texscribe.models.registry import build_model
    from texscribe.onnx_export import export_onnx

    torch.manual_seed(0)
    vocab = Vocab([f"t{i}" for i in range(30)])
    config = ModelConfig(d_model=48, encoder={"name": "vgg", "channels": [16, 32, 32], "pools": [2, 2, 2]},
                         decoder=decoder)  # fmt: skip
    model = build_model(config, len(vocab)).eval()
    export_onnx(model, vocab, tmp_path)
    info = read_export_info(tmp_path)
    assert {"memory", "memory_proj"} <= set(info["static_cache_names"]) and "coverage" in info["cache_names"]
    backend = OnnxModel(tmp_path, threads=1)
    images, mask = random_batch([(48, 160), (33, 250)], seed=11)
    assert greedy_decode(backend, images, mask, max_len=MAX_LEN) == greedy_decode(
        model, images, mask, max_len=MAX_LEN
    )
    ours = decode(backend, images, mask, beam=3, max_len=MAX_LEN)
    ref = decode(model, images, mask, beam=3, max_len=MAX_LEN)
    assert [h.tokens for h in ours] == [h.tokens for h in ref]


def test_static_cache_entries_come_back_as_the_same_tensors(export_dir):
    """Memory keys/values are not step outputs; the backend returns the input tensors, as torch does."""
    backend = OnnxModel(export_dir, threads=1)
    info = read_export_info(export_dir)
    assert info["static_cache_names"] and all(n.startswith("mem_") for n in info["static_cache_names"])
    images, mask = random_batch([(64, 200)], seed=5)
    memory = backend.encode(images, mask)
    cache = backend.decoder.init_cache(memory)
    _, new = backend.decoder.step(memory, torch.tensor([1]), cache)
    for name in info["cache_names"]:
        assert (new[name] is cache[name]) == (name in info["static_cache_names"])

"""prepare -> prepared dataset: outputs, drop reasons, idempotency/resume, vocab reuse, report, CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from texscribe.cli import main
from texscribe.data.prepare import prepare
from texscribe.data.prepared import MANIFEST_COLUMNS, PreparedDataset, image_filename
from texscribe.errors import InputError
from texscribe.latex import Vocab

REPO = Path(__file__).resolve().parents[1]


def strokes(seed: int, shape=(60, 160)) -> np.ndarray:
    """uint8 image, white strokes on black, ink away from the borders."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.uint8)
    for _ in range(3):
        pts = rng.integers([20, 15], [shape[1] - 20, shape[0] - 15], size=(5, 2)).astype(np.int32)
        cv2.polylines(img, [pts], False, 255, 3)
    return img


def bmp(img: np.ndarray) -> bytes:
    return cv2.imencode(".bmp", img)[1].tobytes()


CAPTIONS = {
    "e1": "x + 1",
    "e2": "\\frac { a } { b }",
    "e3": "y ^ { 2 } - 3",
    "e4": "\\sqrt { x }",
    "e5": "a = b",
    "broken": "x",  # corrupt image bytes
    "blank": "y",  # no ink at all
    "rows": "\\begin{matrix} a \\\\ b \\end{matrix}",
    "ghost": "z",  # no image
}


def comer_tree(root: Path, captions: dict[str, str] = CAPTIONS) -> Path:
    img = root / "data" / "train" / "img"
    img.mkdir(parents=True, exist_ok=True)
    (root / "data/train/caption.txt").write_text(
        "".join(f"{k}\t{v}\n" for k, v in captions.items()), encoding="utf-8"
    )
    for i, key in enumerate(captions):
        if key == "ghost":
            continue
        data = (
            b"BM\x00garbage"
            if key == "broken"
            else bmp(np.zeros((30, 40), np.uint8) if key == "blank" else strokes(i))
        )
        (img / f"{key}.bmp").write_bytes(data)
    (img / "lonely.bmp").write_bytes(bmp(strokes(99)))
    return root


def test_prepare_outputs_and_drop_reasons(tmp_path):
    src = comer_tree(tmp_path / "src")
    out = tmp_path / "out"
    result = prepare([f"{src}:train"], out, workers=1, progress=False)
    assert (result.n_in, result.kept) == (10, 5)
    assert dict(result.dropped) == {
        "bad_image": 1, "no_ink": 1, "multiline": 1, "missing_image": 1, "missing_label": 1,
    }  # fmt: skip

    header = (out / "manifest.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert tuple(header.split("\t")) == MANIFEST_COLUMNS
    ds = PreparedDataset.open(out)
    assert [r.id for r in ds.records] == ["e1", "e2", "e3", "e4", "e5"]
    assert ds.records[1].tokens == ["\\frac", "{", "a", "}", "{", "b", "}"]
    assert all(t in ds.vocab for r in ds for t in r.tokens)
    rec = ds.records[0]
    raw = cv2.imread(str(rec.image_path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.ndim == 2 and raw.shape == (rec.height, rec.width)
    img = ds.load_image(rec)
    assert img.dtype == np.float32 and img.max() == pytest.approx(1.0)
    ink = np.argwhere(img > 0.5)
    assert ink.min(axis=0).tolist() == [4, 4]  # cropped to ink, 4 px margin
    assert ink.max(axis=0).tolist() == [rec.height - 5, rec.width - 5]

    skipped = (out / "skipped.tsv").read_text(encoding="utf-8").splitlines()
    assert skipped[0] == "id\tsource\treason\tdetail"
    rows = {line.split("\t")[0]: line.split("\t")[2] for line in skipped[1:]}
    assert rows == {"broken": "bad_image", "blank": "no_ink", "rows": "multiline", "ghost": "missing_image",
                    "lonely": "missing_label"}  # fmt: skip

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["counts"] == {
        "in": 10,
        "kept": 5,
        "dropped": 5,
        "by_reason": dict(result.dropped.most_common()),
    }
    assert report["per_source"]["src:train"]["kept"] == 5
    assert report["label_length"]["max"] == 7 and report["vocab"]["size"] == len(ds.vocab)
    assert "broken" in report["examples"]["bad_image"][0]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| kept | 5 |" in md and "`no_ink`" in md
    for plot in ("label_length.png", "image_size.png"):
        assert cv2.imread(str(out / "plots" / plot)) is not None


def test_multiline_keep_and_only(tmp_path, capsys):
    """`--multiline keep` keeps the matrix the default drops, its row and cell tokens in the vocabulary;
    `--multiline only` keeps it alone and names why the one-line formulas went."""
    src = comer_tree(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["data", "prepare", f"{src}:train", "--out", str(out), "--multiline", "keep", "--workers",
                 "1", "--no-progress"]) == 0  # fmt: skip
    assert "dropped: multiline" not in capsys.readouterr().out
    ds = PreparedDataset.open(out)
    rows = next(r for r in ds.records if r.id == "rows")
    assert rows.tokens == ["\\begin{matrix}", "a", "\\\\", "b", "\\end{matrix}"]
    assert "\\\\" in ds.vocab and "\\begin{matrix}" in ds.vocab
    assert [r.id for r in ds.records] == ["e1", "e2", "e3", "e4", "e5", "rows"]

    only = prepare([f"{src}:train"], tmp_path / "only", multiline="only", workers=1, progress=False)
    assert [r.id for r in PreparedDataset.open(tmp_path / "only").records] == ["rows"]
    assert only.dropped["one_line"] == 7  # labels are checked before images: `broken` and `blank` too
    with pytest.raises(InputError, match="multiline must be one of drop, keep, only"):
        prepare([f"{src}:train"], tmp_path / "bad", multiline="all", progress=False)


def test_a_line_in_a_wrong_encoding_does_not_stop_prepare(tmp_path, capsys):
    """Issue 19 item 4: one Latin-1 caption line in one source and a UTF-16 manifest beside it: the CLI
    writes everything else, exit 0, and the skipped line names its file and line."""
    src = comer_tree(tmp_path / "src")
    captions = (src / "data/train/caption.txt").read_bytes()
    (src / "data/train/caption.txt").write_bytes(
        captions.replace(b"e5\ta = b", "e5\ta \u00b7 b".encode("latin-1"))
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "q.bmp").write_bytes(bmp(strokes(7)))
    (other / "list.tsv").write_bytes("image\tlatex\nq.bmp\t\\sqrt{2}\n".encode("utf-16"))
    out = tmp_path / "out"
    sources = [f"{src}:train", str(other / "list.tsv")]
    code = main(["data", "prepare", *sources, "--out", str(out), "--workers", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    ids = [r.id for r in PreparedDataset.open(out).records]
    assert ids == ["e1", "e2", "e3", "e4", "q"]
    skipped = (out / "skipped.tsv").read_text(encoding="utf-8")
    assert "e5\tsrc:train\twrong_encoding\t" in skipped and "caption.txt:5: not UTF-8" in skipped


def test_prepare_is_idempotent_and_resumes(tmp_path):
    src = comer_tree(tmp_path / "src")
    out = tmp_path / "out"
    first = prepare([f"{src}:train"], out, workers=1, progress=False)
    manifest = (out / "manifest.tsv").read_bytes()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}

    again = prepare([f"{src}:train"], out, workers=1, progress=False)
    assert (again.written, again.reused, again.kept) == (0, first.kept, first.kept)
    assert (out / "manifest.tsv").read_bytes() == manifest
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == stamps

    (src / "data/train/img/e2.bmp").write_bytes(bmp(strokes(42)))  # one source image changed
    changed = prepare([f"{src}:train"], out, workers=1, progress=False)
    assert (changed.written, changed.reused) == (1, first.kept - 1)

    captions = dict(CAPTIONS)
    del captions["e3"]
    comer_tree(src, captions)
    shrunk = prepare([f"{src}:train"], out, workers=1, progress=False)
    assert shrunk.kept == first.kept - 1
    assert not (out / "images" / "e3.png").exists()  # stale image of a dropped id removed
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"e{i}.png" for i in (1, 2, 4, 5)]


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    import texscribe.data.prepare as prep

    src = comer_tree(tmp_path / "src")
    real_decode, calls = prep._decode_and_crop, []

    def flaky(job, settings):
        calls.append(job.id)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the third image was being written
        return real_decode(job, settings)

    monkeypatch.setattr(prep, "_decode_and_crop", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare([f"{src}:train"], tmp_path / "out", workers=1, progress=False)
    monkeypatch.setattr(prep, "_decode_and_crop", real_decode)
    resumed = prepare([f"{src}:train"], tmp_path / "out", workers=1, progress=False)
    assert resumed.reused == 2 and resumed.kept == 5 and resumed.written == 3


def test_parallel_workers_match_serial(tmp_path):
    files = {f"data/train/img/p{i}.bmp": bmp(strokes(i)) for i in range(40)}
    files["data/train/caption.txt"] = "".join(f"p{i}\tx + {i % 10}\n" for i in range(40))
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    serial = prepare([f"{archive}:train"], tmp_path / "a", workers=1, progress=False)
    parallel = prepare([f"{archive}:train"], tmp_path / "b", workers=2, chunksize=4, progress=False)
    assert serial.kept == parallel.kept == 40
    a, b = PreparedDataset.open(tmp_path / "a"), PreparedDataset.open(tmp_path / "b")
    assert [(r.id, r.tokens, r.height, r.width) for r in a] == [
        (r.id, r.tokens, r.height, r.width) for r in b
    ]
    assert all((r.image_path.read_bytes() == s.image_path.read_bytes()) for r, s in zip(a, b))


def test_vocab_from_keeps_and_counts_unknown_tokens(tmp_path):
    train = prepare(
        [f"{comer_tree(tmp_path / 'train')}:train"], tmp_path / "ptrain", workers=1, progress=False
    )
    test_src = comer_tree(tmp_path / "test", {"t1": "x + 1", "t2": "\\alpha + \\beta"})
    test = prepare(
        [f"{test_src}:train"], tmp_path / "ptest", vocab_from=tmp_path / "ptrain", workers=1, progress=False
    )
    assert test.kept == 2  # the sample with unseen tokens is kept
    assert dict(test.unknown_tokens) == {"\\alpha": 1, "\\beta": 1}
    assert test.vocab_size == train.vocab_size
    assert Vocab.load(tmp_path / "ptest/vocab.json").itos == Vocab.load(tmp_path / "ptrain/vocab.json").itos
    report = json.loads((tmp_path / "ptest/report.json").read_text(encoding="utf-8"))
    assert report["vocab"]["unknown_tokens"] == {"\\alpha": 1, "\\beta": 1}
    assert report["vocab"]["samples_with_unknown"] == 1
    with pytest.raises(InputError, match="vocab-from"):
        prepare(
            [f"{test_src}:train"], tmp_path / "x", vocab_from=tmp_path / "nowhere", workers=1, progress=False
        )


def test_label_folder_ids_with_unsafe_characters(tmp_path):
    src = tmp_path / "labels"
    (src / "sub dir").mkdir(parents=True)
    cv2.imwrite(str(src / "sub dir" / "a:b?.png"), 255 - strokes(1))  # dark ink on white, odd name
    (src / "sub dir" / "a:b?.txt").write_text("$x^2$", encoding="utf-8")
    result = prepare([str(src)], tmp_path / "out", workers=1, progress=False)
    assert result.kept == 1
    (rec,) = PreparedDataset.open(tmp_path / "out").records
    assert rec.id == "sub dir/a:b?"  # id kept verbatim
    assert rec.image_path.name == image_filename(rec.id) and rec.image_path.is_file()
    assert all(ch.isalnum() or ch in "._-" for ch in rec.image_path.stem)
    assert rec.tokens == ["x", "^", "{", "2", "}"]
    img = PreparedDataset.open(tmp_path / "out").load_image(rec)
    assert img[0, 0] == 0.0 and img.max() == pytest.approx(1.0)  # polarity normalised: ink bright


def test_image_filenames_are_unique_and_safe():
    names = {image_filename(i) for i in ("a/b", "a_b", "a b", "a:b", "A_B", "x" * 300)}
    assert len(names) == 6 and all(len(n) < 120 for n in names)
    assert image_filename("plain-id_1.2") == "plain-id_1.2.png"


def test_max_height_downscales(tmp_path):
    src = comer_tree(tmp_path / "src", {"tall": "x"})
    (src / "data/train/img/tall.bmp").write_bytes(bmp(strokes(3, shape=(300, 200))))
    prepare([f"{src}:train"], tmp_path / "out", max_height=64, workers=1, progress=False)
    (rec,) = PreparedDataset.open(tmp_path / "out").records
    assert rec.height == 64 and rec.width < 200


def test_out_dir_guard_and_open_errors(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious", encoding="utf-8")
    src = comer_tree(tmp_path / "src")
    with pytest.raises(InputError, match="not a prepared dataset"):
        prepare([f"{src}:train"], tmp_path / "busy", workers=1, progress=False)
    with pytest.raises(InputError, match="missing manifest.tsv, vocab.json"):
        PreparedDataset.open(tmp_path / "busy")
    with pytest.raises(InputError, match="not found"):
        PreparedDataset.open(tmp_path / "nothing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.tsv").write_text("image\tlatex\n", encoding="utf-8")
    Vocab(["x"]).save(bad / "vocab.json")
    with pytest.raises(InputError, match="manifest.tsv:1: not a texscribe manifest"):
        PreparedDataset.open(bad)


def test_cli_prepare_and_info(tmp_path, capsys):
    out = tmp_path / "out"
    src = REPO / "examples" / "sample_crohme"
    code = main(["data", "prepare", f"{src}:train", "--out", str(out), "--workers", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "kept" in printed and " 8" in printed
    assert len(PreparedDataset.open(out)) == 8
    assert main(["data", "info", str(out)]) == 0
    assert "records" in capsys.readouterr().out
    assert main(["data", "info", str(tmp_path / "nope")]) == 2  # a clean error, not a traceback


@pytest.mark.shared
def test_prepare_real_crohme_sample(shared_data, tmp_path):
    zip_path = shared_data / "crohme" / "crohme_offline.zip"
    result = prepare([f"{zip_path}:train"], tmp_path / "out", limit=50, workers=2, progress=False)
    assert result.n_in == 50 and result.kept == 50 and not result.dropped
    ds = PreparedDataset.open(tmp_path / "out")
    assert ds.records[0].id == "formulaire004-equation047"
    heights = [r.height for r in ds]
    assert min(heights) > 30 and max(heights) < 500
    img = ds.load_image(ds.records[0])
    assert img.dtype == np.float32 and (img > 0.5).mean() < 0.5  # ink bright and sparse

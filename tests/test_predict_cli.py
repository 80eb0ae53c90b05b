"""`texscribe predict`: input expansion, order, skipped files, output formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from texscribe.checkpoint import save_model_file
from texscribe.cli import main
from texscribe.commands.predict import expand_inputs
from texscribe.config import load_config
from texscribe.latex import Vocab
from texscribe.models.registry import build_model

MAX_LEN = ["--max-len", "6"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    cfg = load_config("tiny")
    vocab = Vocab(["x", "y", "1", "2", "+", "="])
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    return save_model_file(path, cfg, vocab, build_model(cfg.model, len(vocab)).state_dict())


@pytest.fixture()
def folder(tmp_path) -> Path:
    """img0..img4.png of different widths, with img2.png corrupt (a PNG signature and garbage)."""
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(5):
        img = np.full((50, 90 + 30 * i), 255, np.uint8)
        cv2.putText(img, f"x+{i}", (4, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2)
        cv2.imwrite(str(root / f"img{i}.png"), img)
    (root / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_with_corrupt_file_keeps_order_and_reports_it(model_path, folder, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    rc = main(["predict", str(folder), "--model", str(model_path), "--format", "jsonl", "-o", str(out),
               "--batch-size", "2", "--workers", "2", *MAX_LEN])  # fmt: skip
    assert rc == 1  # some input skipped
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["source"]).name for r in records] == ["img0.png", "img1.png", "img3.png", "img4.png"]
    for r in records:
        assert set(r) >= {"latex", "score", "min_prob", "seconds"}
        assert 0 < r["min_prob"] <= r["score"] <= 1
    err = capsys.readouterr().err
    assert "img2.png" in err and "skipped" in err
    assert "notes.txt" not in err  # folders contribute image files only


def test_order_follows_arguments_and_list_files(model_path, folder, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\nimgs/img4.png\n\nimgs/img0.png\n")
    out = tmp_path / "out.tsv"
    args = [
        "predict",
        str(folder / "img3.png"),
        f"@{listing}",
        str(folder / "img1*.png"),
        str(tmp_path / "nope.png"),
    ]
    rc = main([*args, "--model", str(model_path), "--format", "tsv", "-o", str(out), *MAX_LEN])
    assert rc == 1
    lines = out.read_text().splitlines()
    assert lines[0] == "source\tlatex\tscore\tmin_prob\tseconds"
    assert [Path(line.split("\t")[0]).name for line in lines[1:]] == [
        "img3.png",
        "img4.png",
        "img0.png",
        "img1.png",
    ]
    assert "nope.png: no such file or folder" in capsys.readouterr().err


def test_single_image_prints_bare_latex_and_succeeds(model_path, folder, capsys):
    rc = main(["predict", str(folder / "img0.png"), "--model", str(model_path), *MAX_LEN])
    assert rc == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1 and "\t" not in lines[0]
    assert "%|" not in captured.err  # no progress bar for a single image


def test_batch_results_equal_single_image_results(model_path, folder, capsys):
    main(["predict", str(folder), "--model", str(model_path), "--format", "tsv", "--no-progress", *MAX_LEN])
    batched = {
        Path(r.split("\t")[0]).name: r.split("\t")[1] for r in capsys.readouterr().out.splitlines()[1:]
    }
    for name in ("img0.png", "img4.png"):
        main(["predict", str(folder / name), "--model", str(model_path), *MAX_LEN])
        assert capsys.readouterr().out.strip() == batched[name]


def test_expand_inputs(folder, tmp_path):
    (folder / "sub").mkdir()
    cv2.imwrite(str(folder / "sub" / "deep.bmp"), np.zeros((5, 5), np.uint8))
    paths, problems = expand_inputs(
        [str(folder), str(tmp_path / "missing"), "@" + str(tmp_path / "none.txt")]
    )
    assert [Path(p).name for p in paths] == [
        "img0.png",
        "img1.png",
        "img2.png",
        "img3.png",
        "img4.png",
        "deep.bmp",
    ]
    assert [reason for _, reason in problems][0] == "no such file or folder"
    assert problems[1][1].startswith("cannot read list file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert expand_inputs([str(empty), str(tmp_path / "*.nothing")])[1] == [
        (str(empty), "folder holds no image files"),
        (str(tmp_path / "*.nothing"), "pattern matches no files"),
    ]


def test_set_changes_how_the_model_reads_and_wrong_keys_are_named(model_path, folder, capsys):
    """`--set data.KEY=VALUE` reads with other settings than the model file's; a wrong key is one line."""
    image = str(folder / "img0.png")
    sets = ["--set", "data.ink_height=12", "data.read_ink_heights=[8,16]"]
    assert main(["predict", image, "--model", str(model_path), *sets, *MAX_LEN]) == 0
    capsys.readouterr()
    assert main(["predict", image, "--model", str(model_path), "--set", "data.ink_hieght=12", *MAX_LEN]) == 2
    assert "data.ink_hieght" in capsys.readouterr().err


def test_missing_model_is_a_clean_error(folder, capsys):
    rc = main(["predict", str(folder / "img0.png"), "--model", "/nonexistent/model.pt"])
    assert rc == 2
    assert "no model named" in capsys.readouterr().err


def test_help_documents_the_confidence_score(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert "NOT the probability that the LaTeX is correct" in out and "CONFIDENCE.md" in out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--beam", "0"], "--beam must be >= 1 (1 = greedy), got 0"),
        (
            ["--threads", "-1"],
            "--threads must be >= 1 (torch CPU threads; leave it out to use all available), got -1",
        ),
        (["--max-len", "0"], "--max-len must be >= 1 (tokens), got 0"),
        (
            ["--threads", "100000"],
            "--threads must be <= 1024 (torch CPU threads; leave it out to use all available), got 100000",
        ),
        (["--beam", "101"], "--beam must be <= 100 (1 = greedy), got 101"),
        (
            ["--max-len", "5000"],
            "--max-len must be <= 1024 (tokens), got 5000",
        ),
        (["--batch-size", "0"], "--batch-size must be >= 1 (images per batch), got 0"),
        (
            ["-o", "/missing/dir/x"],
            "--output /missing/dir/x: folder /missing/dir does not exist; create it first",
        ),
    ],
)
def test_out_of_range_flags_are_one_line_errors(folder, flags, message, capsys):
    """Issue 19 item 6: these gave tracebacks (or, --max-len 0, empty outputs with exit 0)."""
    rc = main(["predict", str(folder / "img0.png"), "--model", "/nonexistent/model.pt", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"texscribe predict: error: {message}\n"


def test_output_that_is_a_folder_is_a_clean_error(folder, capsys):
    assert main(["predict", str(folder / "img0.png"), "-o", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_named_devices_and_fifos_reach_the_loader(model_path, folder, capsys):
    # issue 19 leftover: /dev/zero and FIFOs were reported as "no such file or folder", which they are not
    fifo = folder / "pipe.png"
    os.mkfifo(fifo)
    specials = [str(fifo)] + (["/dev/zero"] if os.path.exists("/dev/zero") else [])
    assert expand_inputs(specials) == (specials, [])
    rc = main(["predict", *specials, str(folder / "img0.png"), "--model", str(model_path), *MAX_LEN])
    err = capsys.readouterr().err
    assert rc == 1
    for path in specials:
        assert f"skipped {path}: not a regular file" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_unreadable_names_and_list_files_are_skipped_not_tracebacks(model_path, folder, capsys):
    """Found by benchmarks/fuzz_inputs.py: a 300-character file name made expand_inputs raise OSError
    (ENAMETOOLONG); an @list that is a FIFO blocked, and @/dev/zero read until memory ran out."""
    long_name = str(folder / ("n" * 300 + ".png"))
    fifo = folder / "list.txt"
    os.mkfifo(fifo)
    specs = [long_name, f"@{fifo}", "@/dev/zero", str(folder / "img0.png")]
    assert main(["predict", *specs, "--model", str(model_path), *MAX_LEN]) == 1
    err = capsys.readouterr().err
    assert f"skipped {long_name}: cannot read image file: File name too long" in err
    assert f"skipped @{fifo}: cannot read list file: {fifo} is not a regular file" in err
    assert "skipped @/dev/zero: cannot read list file: /dev/zero is not a regular file" in err


def test_manifest_rows_keyed_by_id(model_path, folder, tmp_path, capsys):
    """--manifest: image paths relative to the manifest, results keyed by its id column, in file order;
    a row without an image and a repeated id are reported, a corrupt image is skipped by the loader."""
    manifest = folder / "batch.csv"
    manifest.write_text(
        "id,image,note\nb,img1.png,\na,img0.png,\nc,,no image\nd,img2.png,corrupt\na,img3.png,\n"
    )
    rc = main(["predict", "--manifest", str(manifest), "--model", str(model_path), "--format", "tsv",
               "--no-progress", *MAX_LEN])  # fmt: skip
    assert rc == 1
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == ["source", "b", "a"]
    assert f"{manifest}:4: row has no image path" in captured.err
    assert f"{manifest}:6: id 'a' appears twice" in captured.err
    assert "skipped d:" in captured.err  # the corrupt image, reported under its id
    # without a header the first column is the image; a prepared dataset's manifest.tsv reads as it is
    (folder / "plain.tsv").write_text("img4.png\timg4 label\n")
    assert (
        main(["predict", "--manifest", str(folder / "plain.tsv"), "--model", str(model_path), *MAX_LEN]) == 0
    )
    assert capsys.readouterr().out.count("\n") == 1


def test_no_inputs_at_all_is_a_usage_error(capsys):
    assert main(["predict"]) == 2
    assert "no INPUT and no --manifest" in capsys.readouterr().err

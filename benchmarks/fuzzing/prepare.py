"""`texscribe data prepare` on sources assembled from fuzzed items: label folders, CoMER captions,
im2markup lists, manifests and InkML folders (100 items of one kind per source, some as zips), and
whole sources that are odd in themselves. Each item has the id `s<index>`, so its line in the output's
manifest.tsv (kept) or skipped.tsv (dropped, with a reason) can be found."""

from __future__ import annotations

import csv
import itertools
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from fuzzing import cases
from fuzzing.batch import STARTUP_CPU, Attempt, Item, Report, Settings, call_failure, cli, run_call, settle

KINDS = {"labels": 0.25, "comer": 0.18, "im2markup": 0.12, "manifest": 0.18, "inkml": 0.22, "source": 0.05}
PER_CALL = 100
IMAGE_SUFFIXES = {".png", ".jpg", ".bmp", ".tif", ".gif", ".webp"}
ODD_SOURCES = ["empty_folder", "junk_folder", "truncated_zip", "traversal_zip", "zip_bomb_caption", "fifo_manifest",
               "dev_zero", "utf16_caption", "binary_manifest", "header_only_manifest", "two_splits",
               "missing_split", "missing_path", "link_loop", "special_files", "huge_manifest_field"]  # fmt: skip


def item_id(index: int) -> str:
    return f"s{index:05d}"


def make_item(kind: str, rng: np.random.Generator, index: int) -> tuple[dict, str]:
    """The payload of one item of `kind` and a description."""
    if kind == "source":
        odd = cases.pick(rng, ODD_SOURCES)
        return {"odd": odd}, odd
    if kind == "inkml":
        doc, what = cases.inkml_document(rng)
        return {"doc": doc}, what
    image, suffix, image_what = cases.image_file(rng) if rng.random() < 0.9 else (None, ".png", "no image")
    suffix = suffix if suffix in IMAGE_SUFFIXES else ".png"
    label, encoding = cases.encode_text(rng, cases.latex_text(rng))
    if kind == "labels":
        label = None if rng.random() < 0.05 and image is not None else label
        return {"image": image, "suffix": suffix, "label": label}, f"{image_what}; label {encoding}"
    if encoding in ("utf-16", "utf-16-le", "utf-32"):  # one line of a UTF-8 file: only byte-level damage
        label = label.decode(encoding).encode("utf-8", "surrogatepass")
    label = label.replace(b"\n", b" ")
    sid = item_id(index).encode()
    variant = cases.pick(rng, ["plain"] * 6 + ["no_tab", "extra_tab", "empty_label", "odd_path", "odd_index"])
    if kind == "comer":
        line = {"no_tab": sid + b" " + label, "extra_tab": sid + b"\t" + label + b"\tx",
                "empty_label": sid + b"\t"}.get(variant, sid + b"\t" + label)  # fmt: skip
    elif kind == "im2markup":
        index_text = (
            cases.pick(rng, ["²", "-1", "1e3", "٣", "9" * 30, "0x1", "", "1 2"])
            if variant == "odd_index"
            else None
        )
        line = {"no_tab": sid + suffix.encode()}.get(variant, b"")
        return {"image": image, "suffix": suffix, "formula": label, "index": index_text,
                "line": line}, f"{image_what}; formula {encoding}; {variant}"  # fmt: skip
    else:
        path = sid + suffix.encode()
        if variant == "odd_path":
            path = cases.pick(rng, [b"/dev/zero", b"/etc/hostname", b"../outside.png", b"sub", b"",
                                    b"n" * 300 + b".png", b"a\x00b.png", b'"q".png'])  # fmt: skip
        line = {"no_tab": sid + b"\t" + path + b" " + label, "extra_tab": sid + b"\t" + path + b"\t" + label + b"\tx",
                "empty_label": sid + b"\t" + path + b"\t"}.get(variant, sid + b"\t" + path + b"\t" + label)  # fmt: skip
    return {"image": image, "suffix": suffix, "line": line}, f"{image_what}; label {encoding}; {variant}"


def build_source(kind: str, batch: list[Item], root: Path, as_zip: bool) -> tuple[str, str | None]:
    """Write the source for `batch` under `root`: (source spec, --format or None to let prepare detect it)."""
    src = root / "src"
    src.mkdir(parents=True)
    if kind == "source":
        return build_odd_source(batch[0].data["odd"], root), None
    for it in batch:
        p, sid = it.data, item_id(it.index)
        if kind == "inkml":
            (src / f"{sid}.inkml").write_bytes(p["doc"])
            continue
        folder = {"comer": src / "data" / "train" / "img", "im2markup": src / "formula_images_processed"}.get(
            kind, src
        )
        folder.mkdir(parents=True, exist_ok=True)
        if p["image"] is not None:
            (folder / f"{sid}{p['suffix']}").write_bytes(p["image"])
        if kind == "labels" and p["label"] is not None:
            (src / f"{sid}.txt").write_bytes(p["label"])
    if kind == "comer":
        (src / "data" / "train" / "caption.txt").write_bytes(
            b"\n".join(it.data["line"] for it in batch) + b"\n"
        )
    if kind == "im2markup":
        (src / "im2latex_formulas.norm.lst").write_bytes(
            b"\n".join(it.data["formula"] for it in batch) + b"\n"
        )
        rows = [it.data["line"] or f"{item_id(it.index)}{it.data['suffix']} {n if it.data['index'] is None else it.data['index']}".encode()
                for n, it in enumerate(batch)]  # fmt: skip
        (src / "im2latex_train_filter.lst").write_bytes(b"\n".join(rows) + b"\n")
    if kind == "manifest":
        (src / "sub").mkdir()
        (src / "manifest.tsv").write_bytes(
            b"id\timage\tlatex\n" + b"\n".join(it.data["line"] for it in batch) + b"\n"
        )
        return str(src / "manifest.tsv"), "manifest"
    if as_zip:
        return str(zip_folder(src, root / "src.zip")), kind
    return str(src), kind


def build_odd_source(odd: str, root: Path) -> str:
    """A source that is odd as a whole (see ODD_SOURCES); returns the spec passed to `data prepare`."""
    src = root / "src"
    comer = src / "data" / "train"
    if odd in ("truncated_zip", "traversal_zip", "zip_bomb_caption", "utf16_caption", "two_splits"):
        (comer / "img").mkdir(parents=True)
        (comer / "img" / "a.png").write_bytes(_ink_png())
        caption = "a\tx ^ { 2 }\n" if odd != "zip_bomb_caption" else "a\t" + "x " * 25_000_000
        (comer / "caption.txt").write_bytes(
            caption.encode("utf-16-le" if odd == "utf16_caption" else "utf-8")
        )
        if odd == "two_splits":
            shutil.copytree(comer, src / "data" / "test")
        if odd in ("truncated_zip", "traversal_zip", "zip_bomb_caption"):
            archive = zip_folder(src, root / "src.zip")
            if odd == "traversal_zip":
                with zipfile.ZipFile(archive, "a") as zf:
                    zf.writestr("../../evil/caption.txt", "b\tx\n")
            if odd == "truncated_zip":
                archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
            return str(archive)
        return str(src)
    if odd == "junk_folder":
        (src / "junk.bin").write_bytes(os.urandom(100))
    if odd == "fifo_manifest":
        os.mkfifo(src / "manifest.tsv")
        return str(src / "manifest.tsv")
    if odd == "dev_zero":
        return "/dev/zero"
    if odd in ("binary_manifest", "header_only_manifest", "huge_manifest_field"):
        body = {"binary_manifest": os.urandom(2000), "header_only_manifest": b"image\tlatex\n",
                "huge_manifest_field": b"a.png\t" + b"x" * 300_000 + b"\nb.png\ty\n"}[odd]  # fmt: skip
        (src / "manifest.tsv").write_bytes(body)
        return str(src / "manifest.tsv")
    if odd == "missing_split":
        return str(src) + ":nosuchsplit"
    if odd == "missing_path":
        return str(root / "nowhere")
    if odd == "link_loop":
        (src / "a.png").write_bytes(_ink_png())
        (src / "a.txt").write_text("x")
        (src / "loop").symlink_to(src)
    if odd == "special_files":
        os.mkfifo(src / "b.png")
        (src / "b.txt").write_text("x")
        (src / "c.png").symlink_to("/dev/zero")
        (src / "c.txt").write_text("y")
        os.mkfifo(src / "d.txt")
        (src / "d.png").write_bytes(_ink_png())
    return str(src)


def _ink_png() -> bytes:
    img = np.full((40, 120), 255, np.uint8)
    img[15:25, 10:110] = 0
    return cases.encode(Image.fromarray(img), "PNG")


def zip_folder(folder: Path, dest: Path) -> Path:
    """The files under `folder` in a zip at `dest`, named relative to `folder`."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return dest


def read_outcomes(out: Path, batch: list[Item], first_line: int) -> dict[int, tuple[str, str]]:
    """Each item's outcome from `out`'s manifest.tsv (handled) and skipped.tsv (clean error); an item named
    `line<n>` (no readable id) is the one written on source line n (`first_line` for the first item)."""
    by_id = {item_id(it.index): it for it in batch}
    by_line = {f"line{first_line + n}": it for n, it in enumerate(batch)}
    answers: dict[int, tuple[str, str]] = {}
    for name, outcome in (("skipped.tsv", "clean error"), ("manifest.tsv", "handled")):
        path = out / name
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", newline="") as f:
            for row in itertools.islice(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1, None):
                it = by_id.get(row[0]) or by_line.get(row[0])
                if it is not None:
                    answers[it.index] = (
                        outcome,
                        " ".join(row[2:])[:300] if outcome == "clean error" else row[2][:80],
                    )
    return answers


def fuzz_prepare(n: int, settings: Settings, report: Report) -> None:
    groups: dict[str, list[Item]] = {k: [] for k in KINDS}
    for i in range(n):
        rng = cases.case_rng(settings.seed, "prepare", i)
        kind = str(rng.choice(list(KINDS), p=list(KINDS.values())))
        payload, what = make_item(kind, rng, i)
        groups[kind].append(Item(i, f"{kind}: {what}", payload))
    calls = itertools.count()

    def attempt_for(kind: str, as_zip: bool) -> Callable[[list[Item]], Attempt]:
        def attempt(batch: list[Item]) -> Attempt:
            root = settings.folder / f"call{next(calls):05d}"
            source, fmt = build_source(kind, batch, root, as_zip)
            budget = STARTUP_CPU + settings.time_limit * len(batch)
            args = ["data", "prepare", source, "--out", str(root / "out"), "--workers", "1", "--no-progress"]
            command = cli(*args, *(["--format", fmt] if fmt else []))
            rc, _, err, why = run_call(command, budget, settings.time_limit, cwd=root)
            failure = call_failure(rc, err, why)
            if kind == "source":  # one odd source per call
                ok = ("handled", f"exit {rc}") if rc == 0 else ("clean error", err.strip()[-300:])
                return Attempt({batch[0].index: failure or ok})
            answers = read_outcomes(root / "out", batch, 2 if kind == "manifest" else 1) if rc == 0 else {}
            if failure is None and rc != 0:  # refused as a whole: which item made it refuse?
                failure = ("clean error", f"the whole run refused: {err.strip()[-300:]}")
            if failure is None:
                shutil.rmtree(root, ignore_errors=True)
            return Attempt(answers, failure)

        return attempt

    for kind, items in groups.items():
        size = 1 if kind == "source" else PER_CALL
        for start in range(0, len(items), size):
            as_zip = kind in ("labels", "comer", "inkml") and (start // size) % 3 == 1
            settle(items[start : start + size], attempt_for(kind, as_zip), report)

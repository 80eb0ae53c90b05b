"""The report of a decompose-inkml run: the prepared-dataset report (`texscribe.data.report`) plus a
`decompose` section: files read / passing the MathML check / skipped by reason (with mismatch examples),
parts found and kept per kind, parts dropped by reason, images written and reused, times."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from texscribe.data.prepared import REPORT_JSON, REPORT_MD, PreparedRecord
from texscribe.data.report import DatasetCounts, render_markdown, write_report
from texscribe.data.sample import Skipped

if TYPE_CHECKING:
    from texscribe.render.decompose_dataset import DecomposeResult

FILE_REASONS = {
    "malformed_inkml": "the InkML file cannot be parsed",
    "bad_traces": "no drawable ink, or stray points (see `render_strokes.ink_problem`)",
    "mathml_mismatch": "the MathML tree does not convert to the file's own truth label (tree or label wrong)",
    "no_parts": "no sub-expression with two or more drawn symbols (the expression is too small)",
}
PART_REASONS = {
    "crohme_2014_formula": "same tokens as a CROHME 2014 test caption (test formulas are never used)",
    "over_cap": "not among the --max-per-file parts chosen for its file",
    "bad_image": "the part's traces could not be drawn",
}


def write_decompose_report(
    out: Path,
    records: Sequence[PreparedRecord],
    skipped: Sequence[Skipped],
    result: DecomposeResult,
    seed: int,
    max_per_file: int,
    workers: int,
    inkml: str,
) -> dict[str, Any]:
    """Write report.json / report.md / plots under `out`; returns the report dict. Items of the generic
    report are parts (source `decompose:<kind>`) and skipped files (source `decompose:file`)."""
    prep = DatasetCounts(out=out, sources=sorted({r.source for r in records} | {s.source for s in skipped}))
    prep.tally(records, skipped)
    prep.written, prep.reused = result.generated - result.dropped["bad_image"], result.reused
    prep.wall_s = result.wall_s
    report = write_report(out, prep, records, skipped)
    reasons = {**FILE_REASONS, **PART_REASONS}
    report["reasons"] = {k: reasons.get(k, "") for k in prep.dropped}
    report["decompose"] = {
        "inkml": inkml,
        "split": "train",
        "seed": seed,
        "max_per_file": max_per_file,
        "workers": workers,
        "files": {
            "read": result.files,
            "passing": result.files_passing,
            "pass_rate": round(result.files_passing / result.files, 4) if result.files else 0.0,
            "skipped": dict(result.files_skipped.most_common()),
            "mismatch_examples": result.mismatch_examples,
        },
        "parts": {
            "found": dict(result.found.most_common()),
            "kept": dict(result.kept.most_common()),
            "dropped": dict(result.dropped.most_common()),
        },
        "images": {"kept": len(records), "generated_now": result.generated, "reused": result.reused},
        "time": {"wall_s": round(result.wall_s, 1), "cpu_s": round(result.cpu_s, 1)},
        "reasons": reasons,
    }
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / REPORT_MD).write_text(
        render_markdown(report) + "\n" + _markdown(report["decompose"]), encoding="utf-8"
    )
    return report


def _markdown(d: dict[str, Any]) -> str:
    f, p, i, t = d["files"], d["parts"], d["images"], d["time"]
    lines = [
        "## Sub-expression decomposition",
        "",
        f"InkML `{d['inkml']}` ({d['split']} split), seed {d['seed']}, at most {d['max_per_file']} parts per "
        f"file, {d['workers']} worker(s).  ",
        f"Files: {f['read']:,} read, **{f['passing']:,} pass the MathML check** ({100 * f['pass_rate']:.1f} %)"
        + "".join(f", `{k}` {n:,}" for k, n in f["skipped"].items())
        + ".  ",
        f"Images: **{i['kept']:,} kept**, {i['generated_now']:,} drawn in this run, {i['reused']:,} reused; "
        f"wall {t['wall_s']} s, CPU {t['cpu_s']} s.",
        "",
        "| part kind | found | kept |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {n:,} | {p['kept'].get(k, 0):,} |" for k, n in p["found"].items()]
    lines += ["", "| parts dropped | count | meaning |", "|---|---:|---|"]
    lines += [f"| `{k}` | {n:,} | {d['reasons'].get(k, '')} |" for k, n in p["dropped"].items()]
    if f["mismatch_examples"]:
        lines += ["", "MathML mismatches (examples):", ""]
        lines += [f"- `{e}`" for e in f["mismatch_examples"][:10]]
    return "\n".join(lines) + "\n"

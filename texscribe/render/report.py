"""The report of a render run: the prepared-dataset report (`texscribe.data.report`) plus a `render`
section — renderer, style mix, compile failures by cause (with examples), corpus counts, throughput."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from texscribe.data.cleaning import REASONS
from texscribe.data.prepared import REPORT_JSON, REPORT_MD, PreparedRecord
from texscribe.data.report import DatasetCounts, render_markdown, write_report
from texscribe.data.sample import Skipped
from texscribe.render.style import FAILURE_CAUSES, StyleSpace

if TYPE_CHECKING:
    from texscribe.render.corpus import Corpus
    from texscribe.render.render_dataset import RenderResult

CORPUS_REASONS = {"duplicate_formula": "same tokens as an earlier formula (kept once)"}
EXAMPLES = 5


def write_render_report(
    root: Path,
    prep: DatasetCounts,
    records: Sequence[PreparedRecord],
    skipped: Sequence[Skipped],
    result: RenderResult,
    styles: StyleSpace,
    corpus: Corpus,
    style_counts: dict[str, Counter],
    held_out: bool,
) -> dict[str, Any]:
    """Write report.json / report.md / plots under `root` for one split; returns the report dict."""
    report = write_report(root, prep, records, skipped)
    report["reasons"] = {k: {**REASONS, **CORPUS_REASONS, **FAILURE_CAUSES}.get(k, "") for k in prep.dropped}
    failures = Counter(s.reason for s in skipped if s.reason in FAILURE_CAUSES)
    examples: dict[str, list[str]] = {}
    for item in skipped:
        if item.reason in FAILURE_CAUSES and len(examples.setdefault(item.reason, [])) < EXAMPLES:
            examples[item.reason].append(f"{item.id}: {item.detail}")
    report["render"] = {
        "split": "held_out" if held_out else "train",
        "renderer": result.renderer,
        "style_space": {
            "fonts": list(styles.fonts),
            "sizes_pt": list(styles.sizes),
            "dpi": list(styles.dpis),
            "degrade_probability": styles.degrade,
            "display_probability": styles.display,
            "seed": styles.seed,
        },
        "styles_kept": {k: dict(sorted(v.items())) for k, v in style_counts.items()},
        "compile_failures": dict(failures.most_common()),
        "failure_examples": examples,
        "corpus": {
            "read": dict(corpus.read),
            "distinct_formulas": len(corpus.formulas),
            "held_out_formulas": len(corpus.held_out),
            "dropped": dict(Counter(s.reason for s in corpus.skipped).most_common()),
        },
        "throughput": {
            "attempted": result.attempted,
            "rendered": result.rendered,
            "reused": result.reused,
            "render_s": round(result.render_s, 2),
            "formulas_per_s": round(result.formulas_per_s, 2),
            "cpu_s": round(result.cpu_s, 2),
            "formulas_per_cpu_s": round(result.formulas_per_cpu_s, 2),
        },
    }
    (root / REPORT_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    (root / REPORT_MD).write_text(
        render_markdown(report) + "\n" + _markdown(report["render"]), encoding="utf-8"
    )
    return report


def _markdown(r: dict[str, Any]) -> str:
    s, t, c = r["style_space"], r["throughput"], r["corpus"]
    lines = [
        "## Rendering",
        "",
        f"Split `{r['split']}`, renderer `{r['renderer']}`; fonts {', '.join(s['fonts'])}, sizes "
        f"{', '.join(f'{x:g}' for x in s['sizes_pt'])} pt, {', '.join(map(str, s['dpi']))} dpi, "
        f"degradation p={s['degrade_probability']}, display style p={s['display_probability']}.  ",
        f"Corpus: {sum(c['read'].values())} items read, {c['distinct_formulas']} distinct formulas, "
        f"{c['held_out_formulas']} held out.  ",
        f"Throughput (whole run): {t['attempted']} renderings in {t['render_s']} s = "
        f"**{t['formulas_per_s']} formulas/s**, {t['formulas_per_cpu_s']} per CPU second "
        f"({t['reused']} reused from the cache).",
        "",
        "| compile failure | count | meaning |",
        "|---|---:|---|",
    ]
    lines += [f"| `{k}` | {n} | {FAILURE_CAUSES.get(k, '')} |" for k, n in r["compile_failures"].items()]
    if not r["compile_failures"]:
        lines.append("| (none) | 0 | |")
    for kind, counts in r["styles_kept"].items():
        lines.append("")
        lines.append(f"Kept by {kind}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return "\n".join(lines) + "\n"

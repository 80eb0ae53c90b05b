"""report.md for an evaluation: overall metrics, breakdowns, the worst errors with their images, a plot
(drawn by `texscribe.evaluation.plots`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from texscribe.data.prepared import image_filename
from texscribe.evaluation.plots import plot_accuracy_by_length
from texscribe.latex import latex_string

PLOT = "plots/accuracy_by_length.png"
ERRORS_DIR = "errors"

# (key in compute_all, heading, is a percentage)
OVERALL = [
    ("exp_rate", "ExpRate", True),
    ("le1", "≤1 error", True),
    ("le2", "≤2 errors", True),
    ("bleu4", "BLEU-4", True),
    ("edit_score", "Edit score", True),
    ("course_average", "Course average (BLEU-4, ExpRate, edit)", True),
    ("cer", "CER", True),
    ("wer", "WER (token)", True),
]
GROUP_COLUMNS = [("exp_rate", "ExpRate"), ("le1", "≤1"), ("le2", "≤2"), ("edit_score", "Edit score")]


def summary_rows(metrics: dict[str, float]) -> list[tuple[str, str]]:
    """(name, formatted value) pairs for the overall table (also printed by the CLI)."""
    rows = [("samples", str(int(metrics.get("n", 0))))]
    rows += [(title, f"{100 * metrics[key]:.2f} %") for key, title, _ in OVERALL if key in metrics]
    return rows


def write_report(result: Any, summary: dict[str, Any], n_worst: int = 20) -> Path:
    """Write report.md, the length plot and the error thumbnails into `result.out_dir`; returns report.md."""
    out: Path = result.out_dir
    run = summary["run"]
    lines = [
        "# Evaluation report",
        "",
        f"- model: {', '.join(f'`{m}`' for m in run['model'])}",
        f"- data: `{run['data']}` ({run['records']} records, {len(result.skipped)} skipped)",
        f"- decoding: beam {run['beam']}, max {run['max_len']} tokens; {run['seconds']:.1f} s "
        f"({run['images_per_second'] or 0:.2f} images/s on {run['device']})",
        "",
        "Predictions and references are compared after the same `texscribe.latex.normalize`.",
        "",
        "## Overall",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in summary_rows(result.metrics)],
        "",
        "## By reference length (tokens)",
        "",
        *_group_table(summary["by_length"]),
        "",
        f"![accuracy by length]({PLOT})",
        "",
        "## By structure",
        "",
        "A formula counts in every structure it contains; `plain` has none of them.",
        "",
        *_group_table(summary["by_structure"]),
        "",
        "## By confidence",
        "",
        "Bins of the prediction score (mean token probability, see docs/CONFIDENCE.md): a useful score has",
        "ExpRate rising with the bin.",
        "",
        *_group_table(summary["by_confidence"]),
        "",
        *_worst_errors(result.rows, out, n_worst),
    ]
    if result.skipped:
        lines += ["", "## Skipped records", "", "| id | reason |", "|---|---|"]
        lines += [f"| {_cell(i)} | {_cell(reason)} |" for i, reason in result.skipped]
    plot_accuracy_by_length(summary["by_length"], out / PLOT, GROUP_COLUMNS[:3])
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _group_table(groups: dict[str, dict[str, float]]) -> list[str]:
    if not groups:
        return ["(no samples)"]
    head = "| group | n | " + " | ".join(title for _, title in GROUP_COLUMNS) + " |"
    lines = [head, "|---|---|" + "---|" * len(GROUP_COLUMNS)]
    for name, m in groups.items():
        values = " | ".join(f"{100 * m[key]:.1f} %" for key, _ in GROUP_COLUMNS)
        lines.append(f"| {name} | {int(m['n'])} | {values} |")
    return lines


def _worst_errors(rows: list[Any], out: Path, n_worst: int) -> list[str]:
    """The rows with most token edits (ties: the more confident first), images copied into errors/."""
    wrong = [(r.errors, r) for r in rows]
    wrong = [(e, r) for e, r in wrong if e > 0]
    wrong.sort(key=lambda er: (-er[0], -er[1].score))
    lines = [f"## Worst errors ({min(n_worst, len(wrong))} of {len(wrong)} wrong)", ""]
    if not wrong:
        return [*lines, "None: every prediction matches its reference."]
    errors_dir = out / ERRORS_DIR
    errors_dir.mkdir(exist_ok=True)
    lines += ["| image | reference | prediction | edits | score |", "|---|---|---|---|---|"]
    for edits, row in wrong[:n_worst]:
        image = "(missing)"
        if row.image_path is not None and Path(row.image_path).is_file():
            name = image_filename(row.id)
            shutil.copyfile(row.image_path, errors_dir / name)
            image = f"![{_cell(row.id)}]({ERRORS_DIR}/{name})<br>{_cell(row.id)}"
        ref, pred = _code(latex_string(row.ref)), _code(latex_string(row.pred))
        lines.append(f"| {image} | {ref} | {pred} | {edits} | {row.score:.3f} |")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(latex: str) -> str:
    return f"`{_cell(latex)}`" if latex else "(empty)"

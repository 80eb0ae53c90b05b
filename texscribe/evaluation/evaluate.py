"""Run a recogniser over a prepared dataset and write predictions.tsv, metrics.json and the report.

Out folder:
    predictions.tsv   id, ref, pred (space-separated tokens), score, min_prob, errors (token edits)
    metrics.json      {"metrics": compute_all(...), "by_length": ..., "by_structure": ..., "run": ...}
    report.md, plots/accuracy_by_length.png, errors/<image>.png   (see `texscribe.evaluation.report`)
`recompute(predictions.tsv)` recomputes the metrics from the predictions file alone.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from texscribe.errors import InputError
from texscribe.evaluation.breakdown import by_confidence, by_length, by_structure
from texscribe.metrics import compute_all, normalize_all, token_distance

PREDICTIONS = "predictions.tsv"
METRICS = "metrics.json"
COLUMNS = ("id", "ref", "pred", "score", "min_prob", "errors")


@dataclass
class Row:
    """One evaluated record: tokens as written (metrics normalise both sides the same way)."""

    id: str
    ref: list[str]
    pred: list[str]
    score: float
    min_prob: float
    image_path: Path | None = None

    @property
    def errors(self) -> int:
        """Token edit distance after normalisation."""
        (p,), (r,) = normalize_all([self.pred]), normalize_all([self.ref])
        return token_distance(p, r)


@dataclass
class EvaluationResult:
    metrics: dict[str, float]
    out_dir: Path
    rows: list[Row]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    seconds: float = 0.0


def evaluate(
    recognizer: Any,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    beam: int = 1,
    limit: int | None = None,
    batch_size: int = 8,
    max_len: int = 200,
    workers: int = 2,
    progress: bool = True,
    n_worst: int = 20,
) -> EvaluationResult:
    """Predict every record of the prepared dataset `data_dir` (first `limit`), write all outputs to `out_dir`.

    Images are read as training reads them (`PreparedDataset.load_image` + `images.preprocess`), at each of
    the model's reading heights (`inference.model_input`).
    Records whose image cannot be read are listed in metrics.json and the report, not scored.
    """
    from texscribe.data.prepared import PreparedDataset
    from texscribe.evaluation.report import write_report

    dataset = PreparedDataset.open(data_dir)
    records = dataset.records[:limit] if limit is not None else dataset.records
    if not records:
        raise InputError("the prepared dataset has no records to evaluate", source=str(data_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    decode = {"beam": beam, "batch_size": batch_size, "max_len": max_len}
    start = time.perf_counter()
    rows, skipped = _predict_records(recognizer, dataset, records, decode, workers=workers, progress=progress)
    seconds = time.perf_counter() - start

    write_predictions(out / PREDICTIONS, rows)
    metrics = compute_all([r.pred for r in rows], [r.ref for r in rows])
    summary = {
        "metrics": metrics,
        **_breakdowns(rows),
        "skipped": [{"id": i, "reason": reason} for i, reason in skipped],
        "run": _run_info(recognizer, data_dir, len(records), len(rows), decode, seconds),
    }
    (out / METRICS).write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    result = EvaluationResult(metrics, out, rows, skipped, seconds)
    write_report(result, summary, n_worst=n_worst)
    return result


def _predict_records(
    recognizer: Any, dataset: Any, records: list[Any], decode: dict[str, int], *, workers: int, progress: bool
) -> tuple[list[Row], list[tuple[str, str]]]:
    """Scored rows, and (id, reason) of the records whose image could not be read; a progress bar on stderr."""
    from tqdm import tqdm

    from texscribe.inference import iter_predictions, model_input

    def load(record: Any, source: str) -> Any:
        return model_input(dataset.load_image(record), recognizer.config.data, origin=source)

    rows: list[Row] = []
    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(records), unit="img", disable=not progress, desc="evaluate")
    outcomes = iter_predictions(
        recognizer,
        [(r.id, r) for r in records],
        load=load,
        workers=workers,
        chunk_size=max(32, decode["batch_size"] * 4),
        **decode,
    )
    for outcome in outcomes:
        bar.update(1)
        record = records[outcome.index]
        if outcome.prediction is None:
            skipped.append((record.id, outcome.error or "unknown error"))
            continue
        pred = outcome.prediction
        rows.append(Row(record.id, record.tokens, pred.tokens, pred.score, pred.min_prob, record.image_path))
    bar.close()
    return rows, skipped


def _breakdowns(rows: list[Row]) -> dict[str, dict[str, dict[str, float]]]:
    """metrics.json's by_length, by_structure and by_confidence: group name -> that group's metrics."""
    preds, refs = [r.pred for r in rows], [r.ref for r in rows]
    return {
        "by_length": {g.name: g.metrics for g in by_length(preds, refs)},
        "by_structure": {g.name: g.metrics for g in by_structure(preds, refs)},
        "by_confidence": {g.name: g.metrics for g in by_confidence(preds, refs, [r.score for r in rows])},
    }


def _run_info(
    recognizer: Any, data_dir: str | Path, records: int, scored: int, decode: dict[str, int], seconds: float
) -> dict[str, Any]:
    """metrics.json's "run": what was evaluated, how (the reading settings included: `--set` changes them
    without changing the model file), on which machine, how fast."""
    data = recognizer.config.data
    return {
        "model": [str(m.path) for m in recognizer.models],
        "reading": {
            "ink_height": data.ink_height,
            "read_ink_heights": list(data.read_ink_heights),
            "ink_height_tolerance": data.ink_height_tolerance,
            "scale": data.scale,
        },
        "data": str(Path(data_dir).resolve()),
        "records": records,
        "beam": decode["beam"],
        "max_len": decode["max_len"],
        "batch_size": decode["batch_size"],
        "seconds": round(seconds, 3),
        "images_per_second": round(scored / seconds, 3) if seconds > 0 else None,
        "device": recognizer.device,
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_predictions(path: Path, rows: list[Row]) -> None:
    """predictions.tsv with a header; token lists space-separated (tokens never contain white space)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("\t".join(COLUMNS) + "\n")
        for r in rows:
            cells = [
                r.id,
                " ".join(r.ref),
                " ".join(r.pred),
                f"{r.score:.6f}",
                f"{r.min_prob:.6f}",
                str(r.errors),
            ]
            fh.write("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells) + "\n")
    tmp.replace(path)


def read_predictions(path: str | Path) -> list[Row]:
    """Parse a predictions.tsv written by `evaluate`; `InputError` naming the line when malformed."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise InputError(f"cannot read predictions file: {exc}", source=str(path)) from exc
    header = tuple(lines[0].split("\t"))
    if header[:4] != COLUMNS[:4]:
        raise InputError(f"not a predictions file: header {header!r}, expected {COLUMNS!r}", str(path), 1)
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) < 4:
            raise InputError(
                f"expected at least 4 tab-separated columns, got {len(cells)}", str(path), lineno
            )
        try:
            score = float(cells[3])
            min_prob = float(cells[4]) if len(cells) > 4 else float("nan")
        except ValueError as exc:
            raise InputError(f"score is not a number: {exc}", str(path), lineno) from exc
        rows.append(Row(cells[0], cells[1].split(), cells[2].split(), score, min_prob))
    return rows


def recompute(predictions_tsv: str | Path) -> dict[str, float]:
    """The overall metrics from a predictions.tsv alone (must equal metrics.json's "metrics")."""
    rows = read_predictions(predictions_tsv)
    return compute_all([r.pred for r in rows], [r.ref for r in rows])

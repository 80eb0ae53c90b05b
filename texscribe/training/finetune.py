"""`finetune(settings)`: adapt a trained model to a new domain in one call, with a before/after report.

Steps, all under `settings.out` (re-running the same call resumes training and reuses the "before" scores):

    data/new/        raw --data sources prepared by `texscribe.data.prepare` (prepared folders are used as they are)
    data/train/      the new domain's training records          (subset manifests: images stay where they are)
    data/held_out/   its held-out split, by formula (unless --val) -- no formula is on both sides
    data/replay/     a seeded slice of the original training data (all --replay folders pooled), `replay_fraction`
                     of each epoch
    start.pt         the base model with its vocabulary grown by the new tokens (`models.vocab_growth`)
    train/           the run of `texscribe.training.train` (checkpoints, logs, curves, model.pt)
    eval/{before,after}/<set>/   `texscribe.evaluation.evaluate` outputs on the held-out split and each --eval set
    finetune_report.md, finetune_report.json

Training is the ordinary training path: `train(config, weights_only_from=start.pt)` with the base model's
config (same preprocessing and augmentation), a lower learning rate, a short warmup (`RECIPE`) and a fresh
optimizer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np

from texscribe.checkpoint import save_model_file
from texscribe.config import Config, apply_overrides, check_values, from_dict
from texscribe.data.prepared import MANIFEST, PreparedDataset, PreparedRecord, write_subset
from texscribe.errors import ConfigError, InputError, ModelLoadError
from texscribe.latex import Vocab
from texscribe.training.run import train

if TYPE_CHECKING:
    from texscribe.inference import LoadedModel

log = logging.getLogger(__name__)

REPORT_MD, REPORT_JSON = "finetune_report.md", "finetune_report.json"
START_MODEL = "start.pt"
RUN_NAME = "train"
HELD_OUT = "held_out"
METRICS = (("exp_rate", "ExpRate"), ("le1", "<=1 err"), ("bleu4", "BLEU-4"), ("edit_score", "edit score"))


# The fine-tuning recipe: keys set on the base model's config before `FinetuneSettings.overrides` (the
# `--lr`, `--warmup-steps` and `--seed` flags are overrides of these keys). A fresh optimizer on trained
# weights: a short warmup to a lower peak learning rate than a run from scratch. `train.seed` also draws
# the held-out split, the replay slice, the `--sample` subset and the new vocabulary rows.
RECIPE = ["optim.lr=3e-4", "optim.warmup_steps=30", "train.seed=7"]


@dataclass
class FinetuneSettings:
    """What `texscribe finetune` takes. `data`/`val`: prepared folders or raw sources (`PATH[:SPLIT]`).

    Learning rate, warmup and seed are not settings of their own: they are the fine-tuning config's
    `optim.lr`, `optim.warmup_steps` and `train.seed` (`RECIPE`), changed like any key by `overrides`."""

    base: str  # "default" or a model file
    data: list[str]
    out: str = "runs/finetune"
    val: str | None = None
    held_out_fraction: float = 0.1  # of the new formulas, when no `val`
    epochs: int | None = 3
    max_time: str | None = None  # DD:HH:MM:SS; alone (no epochs) it means a constant LR after warmup
    freeze_encoder: bool = False
    replay: list[str] = field(default_factory=list)  # prepared folders of the original training data, pooled
    replay_fraction: float = 0.3  # share of each epoch's samples drawn from `replay`
    sample: int | None = None  # train on a seeded sample of this many new records (large rendered corpora)
    eval_sets: list[str] = field(default_factory=list)  # prepared folders scored before and after
    eval_limit: int | None = None  # first N records of each evaluation set
    beam: int = 1
    max_len: int = 200  # longest prediction in tokens while scoring
    overrides: list[str] = field(default_factory=list)  # key=value on the fine-tuning config, after RECIPE
    progress: bool = True


@dataclass
class FinetuneResult:
    out: Path
    model_file: Path | None
    added_tokens: list[str]
    scores: dict[str, dict[str, dict[str, float]]]  # set -> {"before": metrics, "after": metrics}
    report: dict[str, Any]


@dataclass
class FinetuneData:
    """The new domain's records as split for fine-tuning (written under `<out>/data`), and the counts
    the report gives (what prepare kept/dropped, formulas per side, where the held-out split came from)."""

    train: list[PreparedRecord]
    held_out: list[PreparedRecord]
    replay: list[PreparedRecord]
    held_out_dir: Path
    counts: dict[str, Any]


def finetune(s: FinetuneSettings) -> FinetuneResult:
    """Prepare the data, grow the vocabulary, train, score before/after and write the report."""
    import torch

    from texscribe.inference import load_model

    started = time.perf_counter()
    _check(s)
    # the one model loader; the current thread count leaves torch's threads as training had them
    base = load_model(s.base, backend="torch", num_threads=torch.get_num_threads()).models[0]
    out = Path(s.out)
    config = finetune_config(base.config, s, out)
    seed = config.train.seed
    data = prepare_data(s, out / "data", seed)
    eval_sets = {HELD_OUT: data.held_out_dir, **_named(s.eval_sets)}
    vocab, added = write_start_model(
        base, [r.tokens for r in data.train + data.replay], out / START_MODEL, seed
    )

    train_started, cpu_started = time.perf_counter(), _cpu_seconds()
    result = train(
        config,
        resume="auto",
        weights_only_from=str(out / START_MODEL),
        callbacks=[FreezeEncoder()] if s.freeze_encoder else [],
    )
    train_wall, train_cpu = time.perf_counter() - train_started, _cpu_seconds() - cpu_started
    if result.model_file is None:
        raise ModelLoadError(f"training in {result.run_dir} did not finish; run the same command to resume")

    scores = score_before_after(base.path, result.model_file, eval_sets, out / "eval", s)
    report = {
        "base": str(base.path),
        "model": str(result.model_file),
        "settings": {
            **{k: v for k, v in asdict(s).items() if k != "progress"},
            "lr": config.optim.lr,
            "warmup_steps": config.optim.warmup_steps,
            "seed": seed,
        },
        "added_tokens": added,
        "vocab": {"before": len(base.vocab), "after": len(vocab)},
        "data": data.counts,
        "training": {
            "steps": result.global_step,
            "epochs": result.epochs,
            "train_seconds": result.train_seconds,
            "wall_seconds": round(train_wall, 1),
            # CPU time of this process and its finished loader workers: sizes a run on idle cores
            "cpu_seconds": round(train_cpu, 1),
            "images_seen": round(result.epochs * (len(data.train) + len(data.replay))),
        },
        "eval_sets": {name: str(path) for name, path in eval_sets.items()},
        "scores": scores,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    write_report(out, report)
    return FinetuneResult(out, result.model_file, added, scores, report)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and of its waited-for children."""
    try:
        import resource
    except ImportError:  # Windows: this process only
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _check(s: FinetuneSettings) -> None:
    """The settings' own ranges; the config's keys (`optim.lr`, ...) are checked with the config."""
    if not s.data:
        raise ConfigError("finetune needs at least one --data source")
    if not 0.0 < s.held_out_fraction < 1.0:
        raise ConfigError(f"--held-out-fraction must be in (0, 1), got {s.held_out_fraction}")
    if not 0.0 <= s.replay_fraction < 1.0:
        raise ConfigError(f"--replay-fraction must be in [0, 1), got {s.replay_fraction}")
    if s.epochs is not None and s.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {s.epochs}")
    if s.epochs is None and s.max_time is None:
        raise ConfigError("give --epochs N or --max-time DD:HH:MM:SS")
    if s.sample is not None and s.sample < 1:
        raise ConfigError(f"--sample must be >= 1, got {s.sample}")


# ------------------------------------------------------------------------------------------ data
def prepare_data(s: FinetuneSettings, data_dir: Path, seed: int) -> FinetuneData:
    """Open (or prepare) the new data, hold out formulas (or take --val), sample, add the replay slice,
    and write the subsets `training_dirs` names plus `data_dir/held_out`."""
    counts: dict[str, Any] = {}
    train_records, held_records = _split_new_data(s, data_dir, seed, counts)
    if s.sample is not None and s.sample < len(train_records):
        counts["sampled_from"] = len(train_records)
        train_records = seeded_sample(train_records, s.sample, seed)
    elif s.sample is not None:
        print(f"note: --sample {s.sample} >= the {len(train_records)} new training records; training on all")
    train_dir, *replay_dir = training_dirs(data_dir, s)
    write_subset(train_dir, train_records)
    held_dir = write_subset(data_dir / HELD_OUT, held_records)
    replay_records = []
    if replay_dir:
        pool = [r for d in s.replay for r in PreparedDataset.open(d).records]
        replay_records = replay_slice(pool, len(train_records), s.replay_fraction, seed)
        write_subset(replay_dir[0], replay_records)
    counts.update(train=len(train_records), held_out=len(held_records), replay=len(replay_records))
    counts["train_formulas"] = len({tuple(r.tokens) for r in train_records})
    counts["held_out_formulas"] = len({tuple(r.tokens) for r in held_records})
    counts["held_out_source"] = s.val or f"{s.held_out_fraction:.0%} of the new formulas (seed {seed})"
    print(
        f"new domain: {len(train_records)} training records ({counts['train_formulas']} formulas), "
        f"{len(held_records)} held out ({counts['held_out_formulas']} formulas; {counts['held_out_source']}), "
        f"{len(replay_records)} replayed from {', '.join(s.replay) or '(none)'}"
    )
    return FinetuneData(train_records, held_records, replay_records, held_dir, counts)


def training_dirs(data_dir: Path, s: FinetuneSettings) -> list[Path]:
    """The prepared folders the fine-tuning run trains on: the new records, then the replay slice (if any)."""
    return [data_dir / "train", *([data_dir / "replay"] if s.replay else [])]


def _split_new_data(
    s: FinetuneSettings, data_dir: Path, seed: int, counts: dict[str, Any]
) -> tuple[list[PreparedRecord], list[PreparedRecord]]:
    """(train, held out) records of the new domain: all of --data and --val's records, or --data split
    by formula. What prepare kept/dropped goes into `counts`."""
    new_sets, counts["prepare"] = open_sources(s.data, data_dir / "new", s.progress)
    records = [r for ds in new_sets for r in ds.records]
    if s.val is not None:
        (val_set,), counts["prepare_val"] = open_sources([s.val], data_dir / "val", s.progress)
        train_records, held_records = records, val_set.records
    else:
        train_records, held_records = split_by_formula(records, s.held_out_fraction, seed)
        for spec in s.data:
            if (Path(spec) / HELD_OUT / MANIFEST).is_file():
                print(
                    f"note: {spec}/{HELD_OUT} (from `texscribe data render`) is not used; pass --val to score on it"
                )
    if not train_records or not held_records:
        raise InputError(
            f"need new training and held-out records, got {len(train_records)} and {len(held_records)}; "
            "add data or pass --val",
            source=", ".join(s.data),
        )
    return train_records, held_records


def open_sources(
    specs: Sequence[str], prepare_dir: Path, progress: bool = True
) -> tuple[list[PreparedDataset], dict[str, Any]]:
    """Prepared folders open as they are; raw sources (label folder, CoMER zip, manifest...) are prepared
    together into `prepare_dir`. Returns the datasets and what prepare kept/dropped (reasons -> counts)."""
    from texscribe.data.prepare import prepare

    for spec in specs:
        path = Path(spec)
        if path.is_dir() and not any(f.is_file() for f in path.rglob("*")):
            raise InputError("the data folder is empty; put image + same-named .txt pairs in it", source=spec)
    prepared = [PreparedDataset.open(p) for p in specs if _is_prepared(p)]
    raw = [p for p in specs if not _is_prepared(p)]
    info: dict[str, Any] = {"prepared_folders": [str(ds.root) for ds in prepared]}
    if raw:
        res = prepare(raw, prepare_dir, workers=2, progress=progress)
        info.update(sources=raw, read=res.n_in, kept=res.kept, dropped=dict(res.dropped))
        print(f"prepared {res.kept} of {res.n_in} samples into {prepare_dir}" + _dropped_text(res.dropped))
        if res.kept == 0:
            raise InputError(
                f"no usable image+label pairs (dropped: {_dropped_text(res.dropped) or 'none read'}); "
                f"see {prepare_dir / 'skipped.tsv'}",
                source=", ".join(raw),
            )
        prepared.append(PreparedDataset.open(prepare_dir))
    return prepared, info


def _is_prepared(spec: str) -> bool:
    return (Path(spec) / MANIFEST).is_file()


def _dropped_text(dropped: Counter | dict) -> str:
    return "".join(f"; dropped {n} ({reason})" for reason, n in Counter(dropped).most_common())


def formula_hash(tokens: Sequence[str], seed: int) -> float:
    """A stable number in [0, 1) per formula (its tokens) and seed: the held-out draw."""
    digest = hashlib.sha1(f"{seed}\t{' '.join(tokens)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_formula(
    records: Sequence[PreparedRecord], fraction: float, seed: int
) -> tuple[list[PreparedRecord], list[PreparedRecord]]:
    """(train, held out): every rendering of one formula lands on the same side. With few formulas
    and none drawn, the formula with the lowest hash is held out so the split is never empty."""
    formulas = {tuple(r.tokens) for r in records}
    held = {f for f in formulas if formula_hash(f, seed) < fraction}
    if not held and len(formulas) > 1:
        held = {min(formulas, key=lambda f: formula_hash(f, seed))}
    return [r for r in records if tuple(r.tokens) not in held], [
        r for r in records if tuple(r.tokens) in held
    ]


def seeded_sample(records: Sequence[PreparedRecord], n: int, seed: int) -> list[PreparedRecord]:
    """`n` records drawn without replacement, kept in their original order."""
    keep = np.sort(np.random.default_rng(seed).choice(len(records), size=n, replace=False))
    return [records[i] for i in keep]


def replay_slice(
    records: Sequence[PreparedRecord], n_new: int, fraction: float, seed: int
) -> list[PreparedRecord]:
    """A seeded sample of the original data sized so it is `fraction` of each epoch's samples."""
    want = round(n_new * fraction / (1.0 - fraction))
    if want <= 0 or not records:
        return []
    if want > len(records):
        log.warning(
            "replay: wanted %d records but the --replay folders hold %d; using all", want, len(records)
        )
        return list(records)
    return seeded_sample(records, want, seed)


def _named(dirs: Sequence[str]) -> dict[str, Path]:
    """Evaluation folders keyed by their folder name (made unique)."""
    out: dict[str, Path] = {}
    for d in dirs:
        PreparedDataset.open(d)  # fail before training, not after
        name, n = Path(d).resolve().name, 1
        while name in out or name == HELD_OUT:
            n += 1
            name = f"{Path(d).resolve().name}-{n}"
        out[name] = Path(d)
    return out


# ------------------------------------------------------------------------------------ vocabulary
def write_start_model(
    base: LoadedModel, sequences: Sequence[Sequence[str]], path: Path, seed: int
) -> tuple[Vocab, list[str]]:
    """Grow `base`'s vocabulary by the tokens of `sequences` it lacks (new rows seeded) and save the grown
    model as the run's starting weights at `path`. Returns (new vocab, added tokens)."""
    from texscribe.models.vocab_growth import extended_vocab, grow_vocab

    vocab, added = extended_vocab(base.vocab, sequences)
    print(f"vocabulary: {len(base.vocab)} -> {len(vocab)} tokens; added: {' '.join(added) or '(none)'}")
    grow_vocab(base.model, len(vocab), seed=seed)
    meta = {"finetune_base": str(base.path), "added_tokens": added, "base_meta": base.meta}
    save_model_file(path, base.config, vocab, base.model.state_dict(), meta)
    return vocab, added


# -------------------------------------------------------------------------------------- training
def finetune_config(base_config: Config, s: FinetuneSettings, out: Path) -> Config:
    """The base model's config (model, preprocessing, augmentation) with the fine-tuning data, `RECIPE`,
    limits and `s.overrides`, range-checked (a bad override fails before any data is prepared)."""
    data = base_config.to_dict()
    data["name"] = f"{base_config.name}-finetune"
    data["data"].update(train=[str(d) for d in training_dirs(out / "data", s)], val=None)
    apply_overrides(data, RECIPE)
    if s.epochs is None:  # a time budget alone: no known schedule length, so hold the LR after warmup
        data["optim"]["scheduler"] = "constant"
    data["train"].update(
        out_dir=str(out), run_name=RUN_NAME, max_epochs=s.epochs or 10_000, max_steps=-1,
        max_time=s.max_time, early_stop_patience=None, val_every_n_steps=None, progress_bar=s.progress,
    )  # fmt: skip
    config = from_dict(Config, apply_overrides(data, list(s.overrides)))
    check_values(config)
    return config


class FreezeEncoder(L.Callback):
    """Keep the CNN encoder fixed: no gradients (so no optimizer state, and a cheaper backward pass) and
    its batch-norm statistics frozen (eval mode on every training batch; Lightning switches modes)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        for p in pl_module.model.encoder.parameters():
            p.requires_grad_(False)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        pl_module.model.encoder.eval()


# ------------------------------------------------------------------------------------ evaluation
def score_before_after(
    base_path: Path, tuned_path: Path, sets: dict[str, Path], eval_dir: Path, s: FinetuneSettings
) -> dict[str, dict[str, dict[str, float]]]:
    """Evaluate both models on every set; a "before" score already on disk for the same model file (not
    changed since), data and limit is reused (re-runs and resumes do not pay for it twice)."""
    from texscribe.inference import load_model

    models = {"before": base_path, "after": tuned_path}
    scores: dict[str, dict[str, dict[str, float]]] = {name: {} for name in sets}
    for when, path in models.items():
        recognizer = None
        for name, data in sets.items():
            target = eval_dir / when / name
            cached = _cached_metrics(target, path, data, s) if when == "before" else None
            if cached is None:
                recognizer = recognizer or load_model(path)
                print(f"evaluate {when}: {name} ({data})")
                from texscribe.evaluation import evaluate

                res = evaluate(
                    recognizer, data, target, beam=s.beam, limit=s.eval_limit, max_len=s.max_len,
                    progress=s.progress,
                )  # fmt: skip
                cached = {**res.metrics, "seconds": round(res.seconds, 1)}
            scores[name][when] = cached
    return scores


def _cached_metrics(target: Path, model: Path, data: Path, s: FinetuneSettings) -> dict[str, float] | None:
    file = target / "metrics.json"
    if not file.is_file() or file.stat().st_mtime < Path(model).stat().st_mtime:  # model replaced since
        return None
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
        run = summary["run"]
        n = len(PreparedDataset.open(data).records)
        same = (
            run["model"] == [str(model)]
            and run["data"] == str(Path(data).resolve())
            and run["records"] == (min(n, s.eval_limit) if s.eval_limit is not None else n)
            and run["beam"] == s.beam
            and run["max_len"] == s.max_len
        )
        return {**summary["metrics"], "seconds": run["seconds"]} if same else None
    except (OSError, ValueError, KeyError, InputError):
        return None


# ---------------------------------------------------------------------------------------- report
def report_table(scores: dict[str, dict[str, dict[str, float]]]) -> list[list[str]]:
    """Rows `set, n, metric, before, after, delta` (percent, delta in points)."""
    rows = []
    for name, pair in scores.items():
        before, after = pair["before"], pair["after"]
        for key, title in METRICS:
            b, a = 100 * before[key], 100 * after[key]
            rows.append([name, str(int(after["n"])), title, f"{b:.2f}", f"{a:.2f}", f"{a - b:+.2f}"])
    return rows


def write_report(out: Path, report: dict[str, Any]) -> Path:
    """finetune_report.json (everything) and finetune_report.md (the table, added tokens, data, time)."""
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    tr, data = report["training"], report["data"]
    header = ["set", "n", "metric", "before %", "after %", "delta (points)"]
    rows = report_table(report["scores"])
    sampled = f"; a seeded sample of {data['sampled_from']}" if "sampled_from" in data else ""
    lines = [
        "# Fine-tuning report",
        "",
        f"- base model: `{report['base']}`",
        f"- fine-tuned model: `{report['model']}`",
        f"- vocabulary: {report['vocab']['before']} -> {report['vocab']['after']} tokens; "
        f"added ({len(report['added_tokens'])}): {' '.join(f'`{t}`' for t in report['added_tokens']) or 'none'}",
        f"- data: {data['train']} new training records ({data['train_formulas']} formulas{sampled}), "
        f"{data['replay']} replayed from {', '.join(f'`{d}`' for d in report['settings']['replay']) or '(none)'}, "
        f"{data['held_out']} held out "
        f"({data['held_out_formulas']} formulas; {data['held_out_source']})",
        f"- training: {tr['steps']} steps, {tr['epochs']} epochs (~{tr['images_seen']} images), "
        f"{tr['train_seconds']:.0f} s, {tr['cpu_seconds']:.0f} CPU-s "
        f"(lr {report['settings']['lr']}, freeze encoder: {report['settings']['freeze_encoder']})",
        f"- total wall time: {report['total_seconds']:.0f} s",
        "",
        "Greedy decoding unless noted; each set scored on the same records before and after.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
    ]
    if "prepare" in data and data["prepare"].get("dropped"):
        lines += ["Dropped while preparing: " + _dropped_text(data["prepare"]["dropped"]).strip("; "), ""]
    path = out / REPORT_MD
    path.write_text("\n".join(lines), encoding="utf-8")
    return path

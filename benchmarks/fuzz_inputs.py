"""Fuzz every user-facing surface with hostile inputs and count what happens to each.

    python benchmarks/fuzz_inputs.py [--n 10000] [--seed 0] [--surfaces predict,api,server,digits,prepare]
                                     [--time-limit 10] [--model default] [--json out.json] [--keep DIR]

`--n` inputs are split over the chosen surfaces (predict 25 %, api 25 %, server 20 %, digits 15 %,
prepare 15 %); each input comes from `fuzz_cases` with its own seeded stream, so `--seed` repeats a run
and a failure is named by surface and index. Surfaces, each run the efficient way:

- predict: `texscribe predict --format jsonl` over hundreds of files per call (odd images, devices, FIFOs)
- digits:  `texscribe digits predict` over hundreds of files per call, output read line by line
- prepare: `texscribe data prepare` on label folders, CoMER captions, manifests and InkML folders built
  from fuzzed captions/InkML/images (each item is reported in manifest.tsv or skipped.tsv), plus whole
  sources that are odd in themselves (truncated zips, a FIFO named manifest.tsv, an empty folder)
- api:     `texscribe.load_model()` once in a worker process, `.predict(x, **kwargs)` per input (paths,
  bytes, PIL images, arrays of odd dtypes/shapes, bad arguments)
- server:  one `texscribe serve` on 127.0.0.1, one request per input (multipart and JSON bodies)

Outcomes: handled (a result), clean error (a one-line error, a skip with its reason, a 4xx/503/504 JSON
error), traceback (a Python traceback, a 500, a crashed process or dropped connection), hang (an input
that used more than `--time-limit` CPU seconds, or sat blocked that long, e.g. on a FIFO; the server
answers 504 itself at the limit, so there a hang is no answer at all), confident empty (empty LaTeX with
score > 0.5), unreported (an input that a batch job neither answered nor skipped). A batched call that
crashes or overruns its budget (start-up plus the limit per input) is split in halves until the input at
fault is alone. Time is CPU time because the benchmark is meant to run at `nice -n 19` beside training,
where wall time measures the scheduler (see `fuzzing/batch.py`); every model runs on one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import api, files, prepare, server  # noqa: E402
from fuzzing.batch import ENV, Settings  # noqa: E402

OUTCOMES = ("handled", "clean error", "traceback", "hang", "confident empty", "unreported")
BAD = ("traceback", "hang", "confident empty", "unreported")
SHARES = {"predict": 0.25, "api": 0.25, "server": 0.20, "digits": 0.15, "prepare": 0.15}


@dataclass
class Tally:
    """Outcome counts of one surface, with the first few bad inputs named for a rerun."""

    surface: str
    inputs: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, outcome: str, index: int, what: str, detail: str = "") -> None:
        assert outcome in OUTCOMES, outcome
        self.counts[outcome] += 1
        if outcome in BAD and len(self.examples) < 20:
            self.examples.append(f"{outcome}: {self.surface} #{index} ({what}): {detail[:400]}")


def split_n(n: int, surfaces: list[str]) -> dict[str, int]:
    """`n` inputs over `surfaces` in proportion to SHARES (every chosen surface gets at least one)."""
    total = sum(SHARES[s] for s in surfaces)
    counts = {s: max(1, int(n * SHARES[s] / total)) for s in surfaces}
    counts[surfaces[0]] += max(0, n - sum(counts.values()))
    return counts


def format_table(tallies: list[Tally]) -> str:
    head = ["surface", "inputs", *OUTCOMES, "seconds"]
    rows = [[t.surface, t.inputs, *(t.counts[o] for o in OUTCOMES), f"{t.seconds:.0f}"] for t in tallies]
    rows.append(["total", sum(t.inputs for t in tallies),
                 *(sum(t.counts[o] for t in tallies) for o in OUTCOMES),
                 f"{sum(t.seconds for t in tallies):.0f}"])  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head, *rows]]  # fmt: skip
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:-1], "-" * len(lines[0]), lines[-1]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="inputs in total, over all surfaces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--surfaces", default=",".join(SHARES), help="comma-separated, from: " + ", ".join(SHARES)
    )
    parser.add_argument(
        "--time-limit", type=float, default=10.0, help="CPU seconds one input may use (default 10)"
    )
    parser.add_argument("--model", default="default", help="model for predict, api and server")
    parser.add_argument("--json", type=Path, help="also write the counts and examples here")
    parser.add_argument("--keep", type=Path, help="keep the generated inputs in this folder")
    args = parser.parse_args(argv)
    surfaces = [s.strip() for s in args.surfaces.split(",") if s.strip()]
    unknown = [s for s in surfaces if s not in SHARES]
    if unknown or not surfaces or args.n < 1 or args.time_limit <= 0:
        parser.error(f"--surfaces from {', '.join(SHARES)}; --n >= 1; --time-limit > 0 (unknown: {unknown})")
    scratch = Path(tempfile.mkdtemp(prefix="texscribe-fuzz-")) if args.keep is None else args.keep
    scratch.mkdir(parents=True, exist_ok=True)
    runners = {"predict": files.fuzz_predict, "digits": files.fuzz_digits, "prepare": prepare.fuzz_prepare,
               "api": api.fuzz_api, "server": server.fuzz_server}  # fmt: skip
    tallies = []
    try:
        for surface, n in split_n(args.n, surfaces).items():
            tally = Tally(surface, inputs=n)
            start = time.perf_counter()
            settings = Settings(args.seed, args.time_limit, args.model, scratch / surface)
            settings.folder.mkdir(parents=True, exist_ok=True)
            runners[surface](n, settings, tally.add)
            tally.seconds = time.perf_counter() - start
            tallies.append(tally)
            print(f"{surface}: {n} inputs in {tally.seconds:.0f} s: {dict(tally.counts)}", file=sys.stderr)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"fuzz_inputs --n {args.n} --seed {args.seed} --time-limit {args.time_limit:g} --model {args.model}"
    )
    print(format_table(tallies))
    examples = [e for t in tallies for e in t.examples]
    if examples:
        print("\nfirst bad inputs (regenerate with fuzzing.cases.case_rng(seed, surface, index)):")
        print("\n".join(f"  {e}" for e in examples))
    if args.json:
        args.json.write_text(json.dumps({
            "n": args.n, "seed": args.seed, "time_limit": args.time_limit, "model": args.model,
            "surfaces": {t.surface: {"inputs": t.inputs, "seconds": round(t.seconds, 1),
                                     **{o: t.counts[o] for o in OUTCOMES}} for t in tallies},
            "examples": examples,
        }, indent=1))  # fmt: skip
    return 1 if any(t.counts[o] for t in tallies for o in BAD) else 0


if __name__ == "__main__":
    os.environ.update(ENV)  # the API's worker process inherits it: unbuffered, one OpenMP thread
    sys.exit(main())

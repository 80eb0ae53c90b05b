"""Hostile inputs for every texscribe surface, driven by `benchmarks/fuzz_inputs.py`.

`cases` makes the inputs (it does not import texscribe); `batch` holds what the batched command-line
surfaces share; `files` (predict, digits predict), `prepare`, `api` and `server` each drive one surface
and report one outcome per input.
"""

"""Torch's CPU threads, set in one way by every entry point (server, `texscribe digits`).

How many threads to use is decided by the caller (`inference.available_cpus` counts the CPUs this
process may use); this module only checks the number and applies it.
"""

from __future__ import annotations

import contextlib


def set_torch_threads(threads: int, label: str = "threads", *, single_interop: bool = False) -> None:
    """Set torch's intra-op threads (process-wide), after checking `threads` (`ConfigError` naming `label`:
    OpenMP kills the process when it cannot create them all). `single_interop`: also ask for one inter-op
    thread, which torch allows only before its first parallel op (keeping the default then is harmless);
    a server whose workers each run one model call wants that."""
    import torch

    from texscribe.inference import check_threads

    check_threads(label, threads)
    torch.set_num_threads(threads)
    if single_interop:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)

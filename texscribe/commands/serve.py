"""`texscribe serve`: the REST API and web page (FastAPI + uvicorn) over one loaded model."""

from __future__ import annotations

import argparse

from texscribe.commands.common import add_model_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the REST API and the web page",
        description="Serve POST /v1/predict, /v1/predict/batch, /v1/digits, GET /v1/models, /healthz, "
        "the web page at / and the API docs at /docs (all offline).",
    )
    add_model_args(
        parser, ensemble=False, device=False, threads_help="CPU threads per worker (default: CPUs / workers)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--workers-threads",
        type=int,
        default=2,
        dest="workers",
        help="inference worker threads; CPU threads are split between them (default 2)",
    )
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest image upload (default 10)")
    parser.add_argument(
        "--max-pixels", type=int, default=16_000_000, help="largest image in pixels (default 16M)"
    )
    parser.add_argument("--max-batch", type=int, default=16, help="images per batch request (default 16)")
    parser.add_argument(
        "--max-beam", type=int, default=10, help="largest beam a request may ask for (default 10)"
    )
    parser.add_argument("--max-tokens", type=int, default=200, help="longest output in tokens (default 200)")
    parser.add_argument("--max-pending", type=int, default=32, help="requests queued or running before 503")
    parser.add_argument(
        "--timeout-s", type=float, default=30.0, help="per-request inference deadline (default 30)"
    )
    parser.add_argument("--no-digits", action="store_true", help="do not serve POST /v1/digits")
    parser.add_argument("--digits-model", help="digit model file for /v1/digits (default: the shipped one)")
    parser.set_defaults(func=_run)


def settings_from_args(args: argparse.Namespace):
    """CLI arguments -> `ServerSettings`, rejecting values that cannot work."""
    from texscribe.errors import ConfigError
    from texscribe.inference import DECODE_LIMITS, MAX_THREADS
    from texscribe.server import ServerSettings

    checks = {
        "--workers-threads": args.workers >= 1,
        "--threads": args.threads is None or 1 <= args.threads <= MAX_THREADS,
        "--max-upload-mb": args.max_upload_mb > 0,
        "--max-pixels": args.max_pixels > 0,
        "--max-batch": args.max_batch >= 1,
        "--max-beam": 1 <= args.max_beam <= DECODE_LIMITS["beam"][1],
        "--max-tokens": 1 <= args.max_tokens <= DECODE_LIMITS["max_len"][1],
        "--max-pending": args.max_pending >= 1,
        "--timeout-s": args.timeout_s > 0,
        "--port": 0 <= args.port <= 65535,
    }
    for flag, ok in checks.items():
        if not ok:
            raise ConfigError(f"{flag}: invalid value; see `texscribe serve --help`")
    return ServerSettings(
        model=args.model,
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_batch=args.max_batch,
        max_beam=args.max_beam,
        max_tokens=args.max_tokens,
        max_pending=args.max_pending,
        timeout_s=args.timeout_s,
        digits=not args.no_digits,
        digit_model=args.digits_model,
        data_overrides=args.set,
    )


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from texscribe.server import create_app

    app = create_app(settings_from_args(args))
    print(
        f"texscribe: serving {args.model} ({args.backend}) on http://{args.host}:{args.port}/ (docs at /docs)"
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5)
    return 0

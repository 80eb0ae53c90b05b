"""Load test of `texscribe serve`: N concurrent clients x M requests each against a server on loopback.

    python benchmarks/load_test.py [--model default|PATH] [--backend torch|onnx] [--clients 4]
                                   [--requests 200] [--max-seconds 120] [--workers-threads 2] [--beam 1]

Starts the server in a subprocess on a free 127.0.0.1 port (or uses --url, which must be a loopback
address), waits for /healthz, then each client POSTs images to /v1/predict one after another. The
run stops after every client sent its M requests or after --max-seconds, whichever comes first
(clients finish the request in flight). Prints throughput, latency percentiles and errors by code.
Images: CROHME 2014 test bitmaps from ../shared/data when present, else rendered formulas.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TEXSCRIBE_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_images(n: int = 32) -> tuple[str, list[bytes]]:
    """Up to `n` CROHME 2014 bitmaps, or rendered formulas when the shared data is absent."""
    import zipfile

    archive = SHARED / "crohme" / "crohme_offline.zip"
    if archive.is_file():
        with zipfile.ZipFile(archive) as zf:
            names = sorted(m for m in zf.namelist() if m.startswith("data/2014/img/") and m.endswith(".bmp"))
            return "CROHME 2014", [zf.read(m) for m in names[:n]]
    import cv2
    import numpy as np

    images = []
    for i in range(n):
        img = np.full((70, 260), 255, np.uint8)
        cv2.putText(img, f"x^{i % 9}+{i}=y", (8, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.3, 0, 2)
        images.append(cv2.imencode(".png", img)[1].tobytes())
    return "rendered formulas (CROHME not found)", images


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"--url must point at this machine (127.0.0.0/8, ::1 or localhost), got {host!r}")


@contextlib.contextmanager
def running_server(args: argparse.Namespace):
    """`texscribe serve` in a subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "texscribe.cli", "serve", "--model", args.model, "--backend", args.backend,
        "--host", "127.0.0.1", "--port", str(port), "--workers-threads", str(args.workers_threads),
        "--max-pending", str(max(32, 2 * args.clients)), "--timeout-s", str(args.timeout_s), "--no-digits",
    ]  # fmt: skip
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"texscribe-load-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", proc, log.name
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def wait_healthy(client, url: str, proc, log_name: str, limit_s: float = 120) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(
                f"server exited with {proc.returncode}; see {log_name}:\n{Path(log_name).read_text()[-2000:]}"
            )
        with contextlib.suppress(Exception):
            r = await client.get(url + "/healthz")
            if r.status_code == 200:
                return r.json()
        await asyncio.sleep(0.25)
    raise SystemExit(f"server not healthy after {limit_s:.0f} s; see {log_name}")


async def load(url: str, images: list[bytes], args: argparse.Namespace, proc, log_name: str) -> dict:
    import httpx

    latencies: list[float] = []
    server_ms: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    timeout = httpx.Timeout(args.timeout_s + 30)
    async with httpx.AsyncClient(timeout=timeout) as client:
        health = await wait_healthy(client, url, proc, log_name)
        # one warm-up request (first-call allocations), not counted
        await client.post(
            url + "/v1/predict", files={"file": ("w.png", images[0])}, data={"beam": str(args.beam)}
        )
        stop_at = time.monotonic() + args.max_seconds

        async def one_client(index: int) -> None:
            for i in range(args.requests):
                if time.monotonic() >= stop_at:
                    return
                data = images[(index * args.requests + i) % len(images)]
                start = time.perf_counter()
                try:
                    r = await client.post(
                        url + "/v1/predict",
                        files={"file": (f"{index}-{i}.bmp", data)},
                        data={"beam": str(args.beam)},
                    )
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - start)
                if r.status_code == 200:
                    server_ms.append(r.json()["timing_ms"]["inference"])
                else:
                    errors[f"{r.status_code} {r.json().get('error', {}).get('code', '?')}"] += 1

        start = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(args.clients)))
        wall = time.perf_counter() - start
    return {"health": health, "latencies": latencies, "server_ms": server_ms, "errors": errors, "wall": wall}


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(result: dict, args: argparse.Namespace, source: str) -> None:
    lat = [s * 1000 for s in result["latencies"]]
    sent = len(lat) + sum(v for k, v in result["errors"].items() if not k[:1].isdigit())
    ok = len(result["server_ms"])
    health = result["health"]
    print(
        f"server: model {health['model']} ({health['backend']}), {health['workers']} worker threads; "
        f"images: {source}; {args.clients} clients x {args.requests} requests, beam {args.beam}"
    )
    rows = [
        ("requests sent", f"{sent}"),
        ("ok (200)", f"{ok}"),
        ("errors", f"{sum(result['errors'].values())}" + (f"  {dict(result['errors'])}" if result["errors"] else "")),
        ("wall time s", f"{result['wall']:.1f}" + ("  (stopped at --max-seconds)" if sent < args.clients * args.requests else "")),
        ("throughput req/s", f"{ok / result['wall']:.2f}"),
        ("latency p50 ms", f"{quantile(lat, 0.50):.0f}"),
        ("latency p90 ms", f"{quantile(lat, 0.90):.0f}"),
        ("latency p99 ms", f"{quantile(lat, 0.99):.0f}"),
        ("latency max ms", f"{max(lat, default=float('nan')):.0f}"),
        ("model time p50 ms", f"{quantile(result['server_ms'], 0.50):.0f}"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    print("-" * (width + 30))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default", help="shipped name, model file or ONNX export dir")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--url", help="test a server already running on loopback instead of starting one")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--requests", type=int, default=200, help="requests per client (default 200)")
    parser.add_argument(
        "--max-seconds", type=float, default=120, help="stop sending after this long (default 120)"
    )
    parser.add_argument("--workers-threads", type=int, default=2, help="server inference threads (default 2)")
    parser.add_argument("--timeout-s", type=float, default=30, help="server per-request timeout (default 30)")
    parser.add_argument("--beam", type=int, default=1)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.max_seconds <= 0:
        parser.error("--clients, --requests and --max-seconds must be positive")
    source, images = load_images()
    if args.url:
        require_loopback(args.url)
        result = asyncio.run(load(args.url.rstrip("/"), images, args, None, "(external server)"))
    else:
        with running_server(args) as (url, proc, log_name):
            result = asyncio.run(load(url, images, args, proc, log_name))
    report(result, args, source)
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())

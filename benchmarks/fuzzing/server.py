"""The REST server: one `texscribe serve` on 127.0.0.1 (time limit as its --timeout-s), one request per
input on a kept-alive connection: multipart and JSON bodies to /v1/predict, /v1/predict/batch and
/v1/digits, and stray methods, paths and content types. The server log is read after every request,
so a traceback it logs is charged to the request that caused it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time

import numpy as np

from fuzzing import cases
from fuzzing.batch import ENV, TRACEBACK, Report, Settings, cli, judge_prediction, traceback_summary

MAX_BODY = 10 * 1024 * 1024  # the server's default upload limit
IDLE_S = 2.0  # uvicorn closes a keep-alive connection idle for 5 s; a request sent as it does is lost


def make_request(rng: np.random.Generator) -> tuple[str, str, dict[str, str], bytes, str]:
    """(method, path, headers, body, description) of one hostile request."""
    kind = cases.pick(rng, ["predict"] * 5 + ["batch"] * 2 + ["digits"] * 2 + ["stray"])
    if kind == "stray":
        method, path, ctype, body = cases.pick(rng, [
            ("GET", "/v1/models", "", b""), ("GET", "/healthz", "", b""), ("GET", "/nope", "", b""),
            ("DELETE", "/v1/predict", "", b""), ("POST", "/v1/predict", "text/plain", b"x"),
            ("POST", "/v1/predict", "", b"\x89PNG"), ("POST", "/v1/predict", "application/json", b""),
            ("POST", "/v1/predict", "application/json", b"   "), ("GET", "/static/../../etc/passwd", "", b""),
            ("POST", "/v1/predict/batch", "application/json; charset=latin-1", b'{"images": []}'),
        ])  # fmt: skip
        return method, path, {"Content-Type": ctype} if ctype else {}, body, f"{method} {path} {ctype!r}"
    path = {"predict": "/v1/predict", "batch": "/v1/predict/batch", "digits": "/v1/digits"}[kind]
    images = [cases.image_file(rng) for _ in range(int(rng.integers(1, 5)) if kind == "batch" else 1)]
    what = "; ".join(w for _, _, w in images)
    if kind != "digits" and rng.random() < 0.45:
        body, how = cases.json_body(rng, images[0][0], batch=kind == "batch")
        return "POST", path, {"Content-Type": "application/json"}, body, f"{path} JSON {how}: {what}"
    field = "files" if kind == "batch" else "file"
    body, ctype, how = cases.multipart_body(rng, [data for data, _, _ in images], field)
    return "POST", path, {"Content-Type": ctype}, body, f"{path} multipart {how}: {what}"


class Server:
    """`texscribe serve` in its own process group, logging to a file; restarted if it exits."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # the server answers 504 itself at --timeout-s (the limit, in wall seconds); past this, it hangs
        self.wait_s = 3 * settings.time_limit + 30
        self.log_path = settings.folder / "server.log"
        self.start()

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = cli("serve", "--model", self.settings.model, "--host", "127.0.0.1", "--port", str(self.port),
                  "--timeout-s", f"{self.settings.time_limit:g}", "--max-pending", "64", "--threads", "1")  # fmt: skip
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=ENV,
                                     start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 600
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"texscribe serve did not come up; see {self.log_path}")
            time.sleep(0.5)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.wait_s)
        self.used_at = time.monotonic()
        self.log_seen = self.log_path.stat().st_size

    def _healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, str]:
        """One request -> (outcome, detail); a traceback in the server log since the last one counts too."""
        outcome, detail = self._exchange(method, path, headers, body)
        with open(self.log_path, "rb") as log:
            log.seek(self.log_seen)
            new = log.read()
        self.log_seen += len(new)
        text = new.decode("utf-8", "replace")
        if TRACEBACK in text and outcome != "traceback":
            outcome, detail = "traceback", traceback_summary(text)
        if self.proc.poll() is not None:
            outcome, detail = "traceback", f"the server exited ({self.proc.returncode}); {detail}"
            self.log.close()
            self.start()
        return outcome, detail

    def _exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, str]:
        if time.monotonic() - self.used_at > IDLE_S:  # the server closes idle keep-alive connections
            self.conn.close()
        self.used_at = time.monotonic()
        try:
            # the server may refuse (413) and close before the whole body is sent: read its answer anyway
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            status, data = response.status, response.read()
            self.used_at = time.monotonic()
        except TimeoutError:
            self.conn.close()
            return "hang", f"no response within {self.wait_s:g} s"
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            if len(body) > MAX_BODY:
                return "clean error", f"oversized body: connection closed ({exc!r})"
            return "traceback", f"connection dropped: {exc!r}"
        if response.getheader("connection", "").lower() == "close":
            self.conn.close()
        if status >= 500 and status not in (503, 504):
            return "traceback", f"{status}: {data[:300]!r}"
        if status >= 400:
            return "clean error", f"{status}: {data[:200]!r}"
        try:
            payload = json.loads(data)
        except ValueError:
            return "handled", f"{status} {response.getheader('content-type')}"
        results = [r.get("result") for r in payload.get("results", [])] if isinstance(payload, dict) else []
        for record in [payload, *results]:
            if isinstance(record, dict) and "latex" in record:
                outcome, detail = judge_prediction(record)
                if outcome != "handled":
                    return outcome, detail
        return "handled", f"{status}: {data[:120]!r}"


def fuzz_server(n: int, settings: Settings, report: Report) -> None:
    server = Server(settings)
    try:
        for i in range(n):
            method, path, headers, body, what = make_request(cases.case_rng(settings.seed, "server", i))
            outcome, detail = server.send(method, path, headers, body)
            report(outcome, i, what, detail)
    finally:
        server.stop()

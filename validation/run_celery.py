"""Certify Airflow's CeleryExecutor with a REAL Redis broker and a real celery worker.

    python validation/run_celery.py [--report-root reports]

Starts ``redis-server`` (Debian package) on 127.0.0.1 on a free port and a celery worker process,
both inside a conformance sandbox whose journal is shared with the certification run (the worker
runs the probe seam like any other process), runs ``executor-conformance certify`` for
``airflow.providers.celery.executors.celery_executor.CeleryExecutor``, and stops both by their PID at
the end, even on failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
EXECUTOR = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition, what: str, deadline: float) -> None:  # type: ignore[no-untyped-def]
    limit = time.monotonic() + deadline
    waiter = threading.Event()
    while not condition():
        if time.monotonic() > limit:
            raise SystemExit(f"validation: waited {deadline:.0f}s for {what}")
        waiter.wait(0.1)


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    print(f"validation: stopped {name} (pid {proc.pid})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-root", default="reports")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("validation: redis-server not found (apt-get install -y redis-server)")

    from conformance.sandbox import SHARED_JOURNAL_ENV, Sandbox

    box = Sandbox.create()
    os.environ[SHARED_JOURNAL_ENV] = str(box.root / "shared-journal")
    box.activate()
    port = free_port()
    os.environ["AIRFLOW__CELERY__BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
    os.environ["AIRFLOW__CELERY__RESULT_BACKEND"] = f"redis://127.0.0.1:{port}/1"
    os.environ["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = "4"
    from importlib.metadata import version

    report = Path(args.report_root) / f"airflow-{version('apache-airflow')}" / "airflow-CeleryExecutor"
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)
    worker = None
    try:
        wait_until(lambda: redis_answers(port), f"redis-server on 127.0.0.1:{port}", 20)
        print(f"validation: redis-server pid {redis.pid} on 127.0.0.1:{port}")
        log = open(box.root / "celery-worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen([sys.executable, "-m", "celery", "--app", CELERY_APP, "worker", "--concurrency",
                                   "4", "--pool", "prefork", "--loglevel", "INFO", "--without-mingle",
                                   "--without-gossip", "-Q", "default"],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: b"ready." in (box.root / "celery-worker.log").read_bytes(), "the celery worker", 120)
        print(f"validation: celery worker pid {worker.pid}")
        cmd = [sys.executable, "-m", "conformance.cli", "certify", EXECUTOR, "--report", str(report),
               "-p", "no:randomly", *args.pytest_args]
        code = subprocess.call(cmd)
        # The verdict is data for FINDINGS.md; the run succeeded if it produced its report.
        wrote = (report / "report.json").exists()
        print(f"validation: certify exited {code}; report {'written' if wrote else 'MISSING'}: {report}")
        return 0 if wrote and code in (0, 1) else (code or 1)
    finally:
        if worker is not None:
            stop(worker, "celery worker")
        stop(redis, "redis-server")
        box.deactivate()


if __name__ == "__main__":
    sys.exit(main())

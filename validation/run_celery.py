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
import socket
import subprocess
import sys
from pathlib import Path

CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
EXECUTOR = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-root", default="reports")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("validation: redis-server not found (apt-get install -y redis-server)")

    from conformance.e2e.services import Service, free_port
    from conformance.sandbox import SHARED_JOURNAL_ENV, Sandbox
    from conformance.timing import WaitTimedOut, wait_until

    box = Sandbox.create()
    os.environ[SHARED_JOURNAL_ENV] = str(box.root / "shared-journal")
    box.activate()
    port = free_port()
    os.environ["AIRFLOW__CELERY__BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
    os.environ["AIRFLOW__CELERY__RESULT_BACKEND"] = f"redis://127.0.0.1:{port}/1"
    os.environ["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = "4"
    from importlib.metadata import version

    report = Path(args.report_root) / f"airflow-{version('apache-airflow')}" / "airflow-CeleryExecutor"
    env = dict(os.environ)
    redis = Service("redis-server", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"], env, box.root)
    worker = None
    try:
        wait_until(lambda: redis_answers(port), f"redis-server on 127.0.0.1:{port}", 20, explain=redis.describe,
                   poll=0.1)
        print(f"validation: redis-server pid {redis.pid} on 127.0.0.1:{port}")
        worker = Service("celery-worker", [sys.executable, "-m", "celery", "--app", CELERY_APP, "worker",
                                           "--concurrency", "4", "--pool", "prefork", "--loglevel", "INFO",
                                           "--without-mingle", "--without-gossip", "-Q", "default"], env, box.root)
        ready = worker.log
        wait_until(lambda: b"ready." in ready.read_bytes(), "the celery worker", 120, explain=worker.describe, poll=0.1)
        print(f"validation: celery worker pid {worker.pid}")
        cmd = [sys.executable, "-m", "conformance.cli", "certify", EXECUTOR, "--report", str(report),
               "-p", "no:randomly", *args.pytest_args]
        code = subprocess.call(cmd)
        # The verdict is data for FINDINGS.md; the run succeeded if it produced its report.
        wrote = (report / "report.json").exists()
        print(f"validation: certify exited {code}; report {'written' if wrote else 'MISSING'}: {report}")
        return 0 if wrote and code in (0, 1) else (code or 1)
    except WaitTimedOut as exc:
        raise SystemExit(f"validation: {exc}") from None
    finally:
        for service in (worker, redis):
            if service is not None:
                service.stop(grace=20)
                print(f"validation: stopped {service.name} (pid {service.pid})")
        box.deactivate()


if __name__ == "__main__":
    sys.exit(main())

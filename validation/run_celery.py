"""Certify Airflow's CeleryExecutor with a REAL Redis broker and a real celery worker.

    python validation/run_celery.py [--report-root reports] [--e2e] [-- pytest args]

The backend comes from ``conformance.backends.celery``: ``redis-server`` (Debian package) on 127.0.0.1,
a fault proxy in front of it for HB-5, and a celery worker, all started by the certification run itself
and stopped by PID when it ends. Two runs:

1. the whole catalogue (with ``--e2e`` also the end-to-end tier: a real scheduler, its own Redis and an
   ``airflow celery worker``) with ``CeleryRedisBroker``, whose outage *cuts* the broker connections;
2. HB-5 alone with ``CeleryBrokerStall``, whose outage *stalls* them (accepted, silent) -- a PARTIAL
   report next to the first, ``airflow-CeleryExecutor-broker-stall``.

The verdicts are data for reports/FINDINGS.md: the script succeeds when both reports were written.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

EXECUTOR = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"
HB5 = "heartbeat.survives_transient_backend_error"


def certify(report: Path, driver: str, extra: list[str]) -> bool:
    cmd = [sys.executable, "-m", "conformance.cli", "certify", EXECUTOR, "--report", str(report),
           "--backend-driver", f"conformance.backends.celery.{driver}", "-p", "no:randomly", *extra]
    code = subprocess.call(cmd)
    wrote = (report / "report.json").exists()
    print(f"validation: certify ({driver}) exited {code}; report {'written' if wrote else 'MISSING'}: {report}")
    return wrote and code in (0, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-root", default="reports")
    parser.add_argument("--e2e", action="store_true", help="also the end-to-end tier under a real scheduler")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    root = Path(args.report_root) / f"airflow-{version('apache-airflow')}"
    whole = certify(root / "airflow-CeleryExecutor", "CeleryRedisBroker",
                    [*(["--e2e"] if args.e2e else []), *args.pytest_args])
    stall = certify(root / "airflow-CeleryExecutor-broker-stall", "CeleryBrokerStall",
                    ["--checks", HB5, *args.pytest_args])
    return 0 if whole and stall else 1


if __name__ == "__main__":
    sys.exit(main())

"""Installs the conformance probe seam in every Python process started inside a sandbox.

The sandbox puts this directory on PYTHONPATH, so spawned multiprocessing children and subprocesses
(``python -m airflow.sdk.execution_time.execute_workload``, celery workers, ...) intercept probe
tasks exactly like the test process does. Outside a sandbox (no journal configured) it does nothing.
"""

import os

if os.environ.get("CONFORMANCE_JOURNAL_DIR"):
    try:
        from conformance import seam

        seam.install()
    except Exception as exc:  # never break an interpreter's start-up
        import sys

        print(f"conformance seam not installed: {exc}", file=sys.stderr)

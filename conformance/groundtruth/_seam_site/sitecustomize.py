"""Installs the conformance probe seam in every Python process started inside a sandbox.

The sandbox puts this directory on PYTHONPATH, so spawned multiprocessing children and subprocesses
(``python -m airflow.sdk.execution_time.execute_workload``, celery workers, ...) intercept probe
tasks exactly like the test process does. Outside a sandbox (no journal configured) it does nothing.

The seam is installed when the process first imports Airflow, not at start-up: an xdist worker of a
certification is started inside the sandbox too, and importing ``conformance`` before pytest has set
up assertion rewriting for it would make pytest warn. When the run measures the executor's coverage
(``COVERAGE_PROCESS_START``), measuring starts here, so that task processes count too.
"""

import os
import sys

if os.environ.get("CONFORMANCE_JOURNAL_DIR"):
    if os.environ.get("COVERAGE_PROCESS_START"):
        try:
            import coverage

            coverage.process_startup()
        except Exception as exc:  # never break an interpreter's start-up
            print(f"conformance: coverage not started: {exc}", file=sys.stderr)

    class _InstallSeamWithAirflow:
        """A meta-path finder that finds nothing: on the first import of ``airflow`` it steps aside and
        installs the seam (whose own finder patches the task-running modules as they are imported)."""

        def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
            if fullname == "airflow" or fullname.startswith("airflow."):
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                try:
                    from conformance.groundtruth import seam

                    seam.install()
                except Exception as exc:  # never break the import that triggered it
                    print(f"conformance seam not installed: {exc}", file=sys.stderr)
            return None

    sys.meta_path.insert(0, _InstallSeamWithAirflow())

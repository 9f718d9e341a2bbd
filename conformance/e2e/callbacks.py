"""Callables that a real scheduler has the executor run, for the e2e tier (imported by dotted path).

``deadline_missed`` is the ``SyncCallback`` of the ``cfe_deadline`` probe DAG (Airflow 3.3+): when the DAG
run misses its deadline, the scheduler creates a Callback row and queues an ``ExecuteCallback`` to the
executor, whose worker imports this function and calls it. It journals that it ran, in the journal format
of the probe tasks, so that the scenario can tell how often it ran and where.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from conformance.groundtruth.journal import append

DAG_ID = "cfe_deadline"
EVENT = "deadline_callback"


def deadline_missed(journal_dir: str, context: Any = None, **_: Any) -> None:
    """Journal one ``deadline_callback`` entry (with the DAG run's id when the context carries it)."""
    dag_run = (context or {}).get("dag_run") if isinstance(context, dict) else None
    run_id = dag_run.get("run_id") if isinstance(dag_run, dict) else getattr(dag_run, "run_id", None)
    append(Path(journal_dir), {"event": EVENT, "dag_id": DAG_ID, "run_id": run_id, "pid": os.getpid(),
                               "host": socket.gethostname(), "t": time.monotonic()})

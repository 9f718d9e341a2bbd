"""The probe DAG file the e2e tier puts in its DAG folder.

Real task code, no seam: each task appends a start and an end entry to the deployment's journal in the
contract tier's format, with the contract tier's writer (``conformance.groundtruth.journal.append``), so that both
tiers are read by one ``Journal``.
The file imports from ``airflow.sdk``/the standard provider on Airflow 3 and from the classic modules
on Airflow 2. Scenarios are triggered one DAG run at a time, so DAGs have no schedule.
"""

from __future__ import annotations

from pathlib import Path

#: dag_id -> what the scenario behind it exercises
PROBE_DAGS = {
    "cfe_complete": "two dependent tasks and a sensor in poke mode: the run succeeds",
    "cfe_retries": "a task that always fails, with one retry: FAILED after two tries",
    "cfe_parallel": "six independent tasks that each hold for a while: parallelism is respected",
    "cfe_crash": "two tasks held until released: the scheduler is killed while they run",
    "cfe_stuck": "one task held before it can start: it stays queued until the scheduler acts",
}

DEADLINE_DAG = "cfe_deadline"
PARALLEL_TASKS = 6
PARALLEL_HOLD_SECONDS = 2.0
CRASH_TASKS = 2
SENSOR_POKES = 3

_TEMPLATE = '''\
"""Probe DAGs of airflow-executor-conformance's e2e tier (generated; the journal path is baked in)."""
import os
import secrets
import socket
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from conformance.groundtruth.journal import append  # the contract tier's journal format and writer

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.providers.standard.sensors.python import PythonSensor
    from airflow.sdk import DAG, get_parsing_context
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator
    from airflow.sensors.python import PythonSensor
    from airflow.utils.dag_parsing_context import get_parsing_context

JOURNAL_DIR = Path({journal_dir!r})
RELEASE_DIR = {release_dir!r}
HOLD_FILE = {hold_file!r}
START = datetime(2024, 1, 1)


def _write(event, context, run, **extra):
    ti = context["ti"]
    append(JOURNAL_DIR, dict(event=event, run=run, dag_id=ti.dag_id, task_id=ti.task_id, run_id=context["run_id"],
                             try_number=ti.try_number, map_index=-1, pid=os.getpid(), pgid=os.getpgid(0),
                             host=socket.gethostname(), via="e2e", t=time.monotonic(), **extra))


def _start(context):
    run = secrets.token_hex(6)
    _write("start", context, run)
    return run


def succeed(**context):
    run = _start(context)
    _write("end", context, run, outcome="success")


def fail(**context):
    run = _start(context)
    _write("end", context, run, outcome="failed")
    raise RuntimeError("probe task failing on purpose")


def hold(seconds):
    def work(**context):
        run = _start(context)
        threading.Event().wait(seconds)  # the task's work: being busy for a while
        _write("end", context, run, outcome="success")
    return work


def hold_until_released(**context):
    run = _start(context)
    whole_run = os.path.join(RELEASE_DIR, context["run_id"])
    this_task = whole_run + "." + context["ti"].task_id
    deadline = time.monotonic() + 180
    while not (os.path.exists(whole_run) or os.path.exists(this_task)):
        if time.monotonic() > deadline:
            _write("end", context, run, outcome="failed")
            raise RuntimeError("never released")
        threading.Event().wait(0.05)
    _write("end", context, run, outcome="success")


def poke(**context):
    # Pokes are counted in the journal, not in memory: Airflow 2 switches poke-mode sensors to
    # reschedule mode under a single-threaded executor, and then every poke is a new process.
    earlier = 0
    if os.path.exists(JOURNAL_DIR / "journal.jsonl"):
        with open(JOURNAL_DIR / "journal.jsonl") as journal:
            earlier = sum(1 for line in journal if '"poke"' in line and context["run_id"] in line)
    _write("poke", context, None, poke=earlier + 1)
    return earlier + 1 >= {sensor_pokes}


# A task process of cfe_stuck.stuck blocks while parsing this file, i.e. before it can leave QUEUED
# (Airflow 2 parses the DAG file before the task is marked running). It is recognised by the parsing
# context (set by executors that run the task in a fork) or by its command line (a subprocess).
_context = get_parsing_context()
if (_context.dag_id, _context.task_id) == ("cfe_stuck", "stuck") or {{"cfe_stuck", "stuck"}} <= set(sys.argv):
    _deadline = time.monotonic() + 180
    while os.path.exists(HOLD_FILE) and time.monotonic() < _deadline:
        threading.Event().wait(0.05)

defaults = dict(retries=0, retry_delay=timedelta(seconds=0))

with DAG("cfe_complete", schedule=None, start_date=START, catchup=False, default_args=defaults):
    first = PythonOperator(task_id="first", python_callable=succeed)
    second = PythonOperator(task_id="second", python_callable=succeed)
    first >> second
    PythonSensor(task_id="sensor", python_callable=poke, mode="poke", poke_interval=0.2, timeout=120)

with DAG("cfe_retries", schedule=None, start_date=START, catchup=False, default_args=defaults):
    PythonOperator(task_id="always_fails", python_callable=fail, retries=1, retry_delay=timedelta(seconds=0))

with DAG("cfe_parallel", schedule=None, start_date=START, catchup=False, default_args=defaults,
         max_active_tasks={parallel_tasks}):
    for i in range({parallel_tasks}):
        PythonOperator(task_id=f"hold_{{i}}", python_callable=hold({parallel_hold}))

with DAG("cfe_crash", schedule=None, start_date=START, catchup=False, default_args=defaults):
    for i in range({crash_tasks}):
        PythonOperator(task_id=f"held_{{i}}", python_callable=hold_until_released)

with DAG("cfe_stuck", schedule=None, start_date=START, catchup=False, default_args=defaults):
    PythonOperator(task_id="stuck", python_callable=succeed)
'''


#: Airflow 3.3+ (executors run SyncCallbacks): a run that misses its deadline a second after it was queued,
#: while its one sensor waits, in reschedule mode, to be released -- each poke is short, so the scheduler
#: stays free to notice the missed deadline even when a single-threaded executor runs pokes inside its
#: heartbeat. The callback journals that it ran (conformance.e2e.callbacks).
_DEADLINE_TEMPLATE = '''
from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference


def released(**context):
    return os.path.exists(os.path.join(RELEASE_DIR, context["run_id"]))


with DAG("{dag_id}", schedule=None, start_date=START, catchup=False, default_args=defaults,
         deadline=DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(seconds=1),
                                callback=SyncCallback("conformance.e2e.callbacks.deadline_missed",
                                                      kwargs={{"journal_dir": str(JOURNAL_DIR)}}))):
    PythonSensor(task_id="released", python_callable=released, mode="reschedule", poke_interval=1, timeout=180)
'''


def probe_dag_ids(with_deadline: bool) -> set[str]:
    """The DAG ids the file defines (the deadline DAG only where executors run callbacks)."""
    return set(PROBE_DAGS) | ({DEADLINE_DAG} if with_deadline else set())


def write_probe_dags(dags_folder: Path, journal_dir: Path, release_dir: Path, hold_file: Path,
                     with_deadline: bool = False) -> Path:
    """Write the probe DAG file into ``dags_folder`` and return its path."""
    text = _TEMPLATE.format(journal_dir=str(journal_dir), release_dir=str(release_dir), hold_file=str(hold_file),
                            sensor_pokes=SENSOR_POKES, parallel_tasks=PARALLEL_TASKS,
                            parallel_hold=PARALLEL_HOLD_SECONDS, crash_tasks=CRASH_TASKS)
    if with_deadline:
        text += _DEADLINE_TEMPLATE.format(dag_id=DEADLINE_DAG)
    path = dags_folder / "conformance_probe_dags.py"
    path.write_text(text)
    return path

"""One real Airflow deployment in the sandbox, and what the e2e scenarios ask of it.

Everything Airflow runs here runs in subprocesses with the deployment's own environment (its own
``AIRFLOW_HOME``, database and config): the test process has already imported Airflow for the contract
tier with the sandbox's settings, so it never imports Airflow for this tier. It reads the deployment's
database with plain SQL through SQLAlchemy (task and DAG-run states, scheduler jobs) -- read-only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.e2e.probe_dags import write_probe_dags
from conformance.e2e.services import E2ESetupError, PostgresServer, Service, free_port, kill_marked
from conformance.groundtruth import processes
from conformance.groundtruth.journal import Journal
from conformance.harness import airflow_compat as compat
from conformance.harness.timing import wait_until

MARKER_ENV = "CONFORMANCE_E2E_DEPLOYMENT"
processes.KEEP_MARKERS.add(MARKER_ENV)  # the deployment stops its own processes (Deployment.close)
#: [core] parallelism of the deployment: small, so that the parallelism scenario can exceed it
PARALLELISM = 3
TERMINAL_RUN_STATES = {"success", "failed"}
_SEAM_SITE = str(Path(__file__).resolve().parent.parent / "_seam_site")

# Short intervals so that scenarios take seconds: the scheduler heartbeats every second, looks for
# orphans every 2 s and declares a silent scheduler dead after 10 s.
_TIMING = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "1",
    "AIRFLOW__SCHEDULER__NUM_STUCK_IN_QUEUED_RETRIES": "1",
    "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "2",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
}


@dataclass(frozen=True)
class Run:
    dag_id: str
    run_id: str


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    state: str | None
    try_number: int
    queued_by_job_id: int | None


class Deployment:
    """Airflow home, database, probe DAGs and the running components for one executor."""

    def __init__(self, root: Path, executor_path: str, server_database: bool, scale: float = 1.0,
                 backend: Any = None):
        self.root = root
        self.scale = scale  # the run's time scale: every wait of the deployment is multiplied by it
        self.executor_path = executor_path
        self.home = root / "airflow_home"
        self.logs = root / "logs"
        self.release_dir = root / "release"
        self.hold_file = root / "hold"
        for folder in (self.home / "dags", self.logs, self.release_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.with_deadline = compat.has_other_workloads()  # executors run deadline callbacks (3.3+)
        write_probe_dags(self.home / "dags", self.root, self.release_dir, self.hold_file,
                         with_deadline=self.with_deadline)
        self.postgres = PostgresServer(self.logs) if server_database else None
        self.db_url = self.postgres.url if self.postgres else f"sqlite:///{self.home / 'airflow.db'}"
        self.api_port = free_port()
        self.scheduler: Service | None = None
        self.others: list[Service] = []  # API server, DAG processor; and every scheduler ever started
        self._scheduler_generation = 0
        self._engine: Any = None
        # A backend driver that can serve a deployment (conformance.backends.celery) brings the
        # executor's own services: a broker before anything starts, workers once the database exists.
        self.backend = backend
        self.backend_env: dict[str, str] = {}
        try:
            if hasattr(backend, "deployment_backend"):
                self.backend_env, services = backend.deployment_backend(self.root)
                self.others.extend(services)
            self.airflow("db", "migrate")
            if hasattr(backend, "deployment_workers"):
                self.others.extend(backend.deployment_workers(self.environment(), self.root, self.logs))
            self._start_components()
        except BaseException:
            self.close()
            raise

    # -- environment ------------------------------------------------------------------------------
    def environment(self, **overrides: str) -> dict[str, str]:
        """The deployment's environment: the caller's, minus every sandbox/Airflow setting, plus ours.
        No probe seam: ``PYTHONPATH`` carries the test process's import path without the seam site."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "CONFORMANCE_", "_AIRFLOW")) and k != "PYTHONPATH"}
        shim = os.environ.get("CONFORMANCE_SHIM_DIR")
        env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != shim)
        path_entries = [p or os.getcwd() for p in sys.path if p != _SEAM_SITE]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path_entries))
        env.update({
            MARKER_ENV: str(self.root),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW_CONFIG": str(self.home / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor_path,
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs / "tasks"),
            "AIRFLOW__SCHEDULER__CHILD_PROCESS_LOG_DIRECTORY": str(self.logs / "dag_processing"),
            "AIRFLOW__API_AUTH__JWT_SECRET": f"executor-conformance-e2e-{self.root.name}-" + "0" * 64,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__WEBSERVER__SECRET_KEY": "executor-conformance-e2e",
            **_TIMING,
        })
        env.update(self.backend_env)
        env.update(overrides)
        return env

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run one ``airflow`` CLI command to completion (``python -m airflow`` of this interpreter)."""
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.environment(), cwd=self.root,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode:
            raise E2ESetupError(f"`airflow {' '.join(args)}` exited {done.returncode}: "
                                f"{(done.stderr or done.stdout).strip()[-1500:]}")
        return done.stdout

    # -- components ---------------------------------------------------------------------------------
    def _start_components(self) -> None:
        if compat.is_airflow3():
            api = Service("api-server", [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p",
                                         str(self.api_port), "-w", "1", "--apps", "execution"],
                          self.environment(), self.logs, cwd=self.root)
            self.others.append(api)
            processor = Service("dag-processor", [sys.executable, "-m", "airflow", "dag-processor"],
                                self.environment(), self.logs, cwd=self.root)
            self.others.append(processor)
            wait_until(lambda: self._api_answers(api), "the API server to answer on 127.0.0.1", 90 * self.scale,
                       explain=api.describe, poll=0.1)
        self.start_scheduler()
        wait_until(lambda: self._all_parsed(), "the probe DAGs to be parsed into the database", 120 * self.scale,
                   explain=self.diagnose, poll=0.1)

    def start_scheduler(self, **overrides: str) -> Service:
        """Start a scheduler and wait until its job heartbeats; returns it (also ``self.scheduler``)."""
        if self.scheduler is not None and self.scheduler.alive():
            raise E2ESetupError("a scheduler is already running")
        self._scheduler_generation += 1
        previous = self.latest_scheduler_job()
        self.scheduler = Service(f"scheduler-{self._scheduler_generation}",
                                 [sys.executable, "-m", "airflow", "scheduler", "--skip-serve-logs"],
                                 self.environment(**overrides), self.logs, cwd=self.root)
        scheduler = self.scheduler
        self.others.append(scheduler)  # a crashed one's group (serve-logs, DAG parsing) is stopped at close

        def registered() -> bool:
            if not scheduler.alive():
                raise E2ESetupError("the scheduler exited at start:\n" + scheduler.describe())
            job = self.latest_scheduler_job()
            return job is not None and job["id"] != (previous or {}).get("id") and job["state"] == "running"

        wait_until(registered, "the scheduler to register its job", 90 * self.scale, explain=scheduler.describe,
                   poll=0.1)
        return scheduler

    def restart_scheduler(self, **overrides: str) -> Service:
        """Stop the scheduler gracefully (its executor's ``end()`` runs) and start a new one."""
        if self.scheduler is not None:
            self.scheduler.stop(grace=60)
        return self.start_scheduler(**overrides)

    def crash_scheduler(self) -> None:
        """SIGKILL the scheduler process, as the OOM killer does, and the DAG-file processing it runs
        inside itself on Airflow 2 (``DagFileProcessorManager``, its child): left alive, that orphan sat
        "idle in transaction" holding the dag_run row lock the held tasks then waited on. Everything
        else it started -- executor workers, task processes -- is left running."""
        assert self.scheduler is not None
        processors = [p.pid for p in processes.children_of(self.scheduler.pid)
                      if "DagFileProcessorManager" in p.command]
        self.scheduler.kill()
        for pid in processors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @contextmanager
    def api_server_frozen(self) -> Iterator[None]:
        """Airflow 3: stop the API server (SIGSTOP) so task processes cannot leave QUEUED; resume after."""
        api = next(s for s in self.others if s.name == "api-server")
        os.killpg(api.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(api.pid, signal.SIGCONT)

    @contextmanager
    def task_start_held(self) -> Iterator[None]:
        """Hold ``cfe_stuck.stuck`` in QUEUED: on Airflow 2 its task process blocks while parsing the DAG
        file, on Airflow 3 (where a task is marked running before it parses) the API server is frozen."""
        self.hold_file.write_text("held")
        try:
            if compat.is_airflow3():
                with self.api_server_frozen():
                    yield
            else:
                yield
        finally:
            self.hold_file.unlink(missing_ok=True)

    def _api_answers(self, api: Service) -> bool:
        import urllib.error
        import urllib.request

        if not api.alive():
            raise E2ESetupError("the API server exited at start:\n" + api.describe())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/execution/health", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers; the route's verdict does not matter
        except OSError:
            return False

    # -- database (read-only) -------------------------------------------------------------------------
    def _query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        from sqlalchemy import create_engine, text

        if self._engine is None:
            self._engine = create_engine(self.db_url, pool_pre_ping=True)
        try:
            with self._engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(text(sql), params)]
        except Exception as exc:  # a table not created yet, sqlite busy: the caller polls again
            if "no such table" in str(exc) or "locked" in str(exc) or "does not exist" in str(exc):
                return []
            raise

    def _all_parsed(self) -> bool:
        from conformance.e2e.probe_dags import probe_dag_ids

        rows = self._query("SELECT dag_id FROM serialized_dag")
        return probe_dag_ids(self.with_deadline) <= {r["dag_id"] for r in rows}

    def latest_scheduler_job(self) -> dict[str, Any] | None:
        rows = self._query("SELECT id, state FROM job WHERE job_type = 'SchedulerJob' ORDER BY id DESC")
        return rows[0] if rows else None

    def dag_run_state(self, run: Run) -> str | None:
        rows = self._query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=run.dag_id, r=run.run_id)
        return rows[0]["state"] if rows else None

    def tasks(self, run: Run) -> dict[str, TaskRow]:
        rows = self._query("SELECT task_id, state, try_number, queued_by_job_id FROM task_instance "
                           "WHERE dag_id = :d AND run_id = :r", d=run.dag_id, r=run.run_id)
        return {r["task_id"]: TaskRow(r["task_id"], r["state"], int(r["try_number"] or 0), r["queued_by_job_id"])
                for r in rows}

    # -- scenarios' verbs ---------------------------------------------------------------------------
    def trigger(self, dag_id: str) -> Run:
        run = Run(dag_id, f"cfe-{dag_id}-{uuid.uuid4().hex[:8]}")
        self.airflow("dags", "trigger", dag_id, "--run-id", run.run_id)
        return run

    def wait_for(self, condition: Callable[[], object], what: str, deadline: float = 120) -> object:
        """Wait on a condition; a dead scheduler ends the wait at once with its log."""
        def guarded() -> object:
            if self.scheduler is not None and not self.scheduler.alive():
                raise SchedulerDied("the scheduler exited while waiting for " + what + ":\n"
                                    + self.scheduler.describe())
            return condition()

        return wait_until(guarded, what, deadline * self.scale, explain=self.diagnose, poll=0.1)

    def wait_for_run(self, run: Run, deadline: float = 120) -> str:
        def finished() -> str | None:
            state = self.dag_run_state(run)
            return state if state in TERMINAL_RUN_STATES else None

        return str(self.wait_for(finished, f"DAG run {run.dag_id}/{run.run_id} to finish", deadline))

    def release(self, run: Run, task_id: str | None = None) -> None:
        """Let the run's held tasks (or only ``task_id``) finish."""
        name = run.run_id if task_id is None else f"{run.run_id}.{task_id}"
        (self.release_dir / name).write_text("go")

    def callback_states(self, run: Run) -> list[str | None]:
        """States of the Callback rows of ``run``'s deadlines (Airflow 3.3+)."""
        rows = self._query("SELECT c.state FROM callback c JOIN deadline d ON d.callback_id = c.id "
                           "JOIN dag_run r ON r.id = d.dagrun_id WHERE r.dag_id = :d AND r.run_id = :r",
                           d=run.dag_id, r=run.run_id)
        return [r["state"] for r in rows]

    def journal(self, run: Run) -> Journal:
        """What the tasks of ``run`` wrote (the deployment's journal lives in its root)."""
        return Journal(self.root).of_dag_run(run.dag_id, run.run_id)

    def diagnose(self) -> str:
        parts = []
        if self.scheduler is not None:
            parts.append(self.scheduler.describe())
        return "\n".join(parts)

    # -- teardown -----------------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Stop every component by PID, then kill whatever still carries the deployment's marker (task
        processes that left the components' process groups); returns them as "pid (command)"."""
        for service in reversed(self.others):  # the live scheduler first: its executor's end() runs
            service.stop(grace=30)
        leaked = kill_marked(MARKER_ENV, str(self.root), self.root)
        if self._engine is not None:
            self._engine.dispose()
        if self.postgres is not None:
            self.postgres.stop()
        return leaked


class SchedulerDied(E2ESetupError):
    """The scheduler process exited while a scenario waited on it."""


def describe_tasks(rows: dict[str, TaskRow]) -> str:
    return ", ".join(f"{r.task_id}={r.state} (try {r.try_number})" for r in sorted(rows.values(),
                                                                                  key=lambda r: r.task_id))

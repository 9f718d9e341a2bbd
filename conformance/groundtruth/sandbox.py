"""The sandbox: a private Airflow home for a test session, and the police for what leaks out of it.

The suite must never touch the user's Airflow. A session (each pytest-xdist worker is its own
session) gets a temporary directory holding ``AIRFLOW_HOME`` (config, sqlite DB, logs, DAGs folder),
the probe journal, the executors' state, and a ``bin`` with the probe shim. Everything is set in
``os.environ`` *before* Airflow is imported -- Airflow reads its config at import time -- and is
inherited by every child the executor starts. ``deactivate()`` restores the environment and removes
the directory.

After each test the harness asks the sandbox for leaks: probe processes still alive (killed, then
reported) and files written to ``~/airflow`` (reported).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import conformance
from conformance.groundtruth import journal as journal_mod
from conformance.groundtruth import probes, processes, seam
from conformance.groundtruth.seam_cli import ENV_SHIM_DIR
from conformance.harness import airflow_compat as compat
from conformance.harness.timing import WaitTimedOut, wait_until

_SITE_DIR = Path(__file__).with_name("_seam_site")
_PACKAGE_PARENT = Path(conformance.__file__).resolve().parent.parent

_ACTIVE: Sandbox | None = None
SHARED_JOURNAL_ENV = "CONFORMANCE_SHARED_JOURNAL_DIR"
#: The team a multi-team executor is built for (``cls(team_name=TEAM_NAME)``); the sandbox configures it.
TEAM_NAME = "conformance"


def team_settings(team: str = TEAM_NAME, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Team-scoped copies of every ``AIRFLOW__<SECTION>__<KEY>`` setting in ``environ`` (os.environ).

    Airflow 3's ``ExecutorConf(team_name)`` -- how a multi-team executor reads its settings -- looks only
    at ``AIRFLOW__<TEAM>___<SECTION>__<KEY>`` variables and ``[<team>=<section>]`` sections, then at the
    built-in defaults: without these, a team executor would see Airflow's defaults instead of the
    sandbox's database, folders and (say) the broker a backend driver configured."""
    source = os.environ if environ is None else environ
    prefix = f"AIRFLOW__{team.upper()}___"
    copies = {}
    for name, value in source.items():
        parts = name.split("__")
        if len(parts) == 3 and parts[0] == "AIRFLOW" and parts[1] and parts[2] and "___" not in name:
            copies[f"{prefix}{parts[1]}__{parts[2]}"] = value
    return copies



#: a leftover that is work, not a process: a task that may still wait on the executor's backend
WORK_LEFT = "work left queued: "

@dataclass
class Sandbox:
    root: Path
    _saved_env: dict[str, str | None] = field(default_factory=dict)
    _user_airflow_existed: bool = True
    _cleanups: list[Callable[[], None]] = field(default_factory=list)
    #: which check queued each probe task, and when each check ended (for late-work reports)
    _owners: dict[str, str] = field(default_factory=dict)
    _closed: dict[str, float] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)
    _settled: set[str] = field(default_factory=set)

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow_home"

    @property
    def journal_dir(self) -> Path:
        # A validation run whose workers live outside this session (celery worker, remote host) shares
        # one journal with them, named explicitly; otherwise each session has its own.
        shared = os.environ.get(SHARED_JOURNAL_ENV)
        return Path(shared) if shared else self.root / "journal"

    @property
    def workdir(self) -> Path:
        """The working directory of every executor call (relative writes stay in the sandbox)."""
        path = self.root / "workdir"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def state_dir(self) -> Path:
        return self.root / "executor_state"

    @property
    def shim_dir(self) -> Path:
        return self.root / "bin"

    @classmethod
    def create(cls) -> Sandbox:
        root = Path(tempfile.mkdtemp(prefix="executor-conformance-"))
        box = cls(root=root)
        for sub in (box.airflow_home / "dags", box.airflow_home / "logs", box.journal_dir, box.state_dir,
                    box.shim_dir):
            sub.mkdir(parents=True, exist_ok=True)
        shim = box.shim_dir / "airflow"
        shim.write_text(f"#!{sys.executable}\nimport sys\nfrom conformance.groundtruth.seam_cli import main\n"
                        "sys.exit(main())\n")
        shim.chmod(0o755)
        return box

    def environment(self) -> dict[str, str]:
        """Variables every process of this session (and its children) runs with."""
        home = self.airflow_home
        pythonpath = [str(_SITE_DIR), str(_PACKAGE_PARENT)]
        if os.environ.get("PYTHONPATH"):
            pythonpath.append(os.environ["PYTHONPATH"])
        return {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__API_AUTH__JWT_SECRET": "executor-conformance-sandbox-secret",
            "AIRFLOW__SCHEDULER__CHILD_PROCESS_LOG_DIRECTORY": str(home / "logs" / "scheduler"),
            processes.MARKER_ENV: str(self.root),
            probes.SCHEDULER_PID_ENV: str(os.getpid()),
            "CONFORMANCE_STATE_DIR": str(self.state_dir),
            journal_mod.ENV_VAR: str(self.journal_dir),
            ENV_SHIM_DIR: str(self.shim_dir),
            "PATH": os.pathsep.join([str(self.shim_dir), os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(pythonpath),
        }

    def activate(self) -> Sandbox:
        global _ACTIVE
        self._user_airflow_existed = _user_airflow_dir().exists()
        for name, value in self.environment().items():
            self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value
        self.configure_team()
        seam.install()
        self._keep_hypothesis_inside()
        _ACTIVE = self
        self._install_database()
        return self

    def _keep_hypothesis_inside(self) -> None:
        """Hypothesis keeps a folder of its own (``.hypothesis/`` in the working directory by default): every
        route -- the pytest plugin, ``certify()``, its workers, a reproducer -- keeps it in the sandbox."""
        try:
            import hypothesis.configuration as hypothesis_configuration
        except ImportError:  # pragma: no cover -- a dependency of the suite
            return
        home = self.root / "hypothesis"
        hypothesis_configuration.set_hypothesis_home_dir(str(home))

    def configure_team(self, team: str = TEAM_NAME) -> None:
        """(Re)write the team-scoped settings (``team_settings``), e.g. after a backend driver configured
        its own; restored with the rest of the environment when the sandbox is deactivated."""
        for name, value in team_settings(team).items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    # -- the sandbox database ---------------------------------------------------------------------
    def _install_database(self) -> None:
        """A migrated Airflow database, as the scheduler has: executors that read or write their own
        rows (and 3.x's ``queue_workload(session=...)``) need real tables. ``airflow db migrate`` runs
        once per Airflow version and machine into a cache under the system temp directory; each
        sandbox gets a copy (milliseconds)."""
        cached = _migrated_database()
        if cached is not None:
            shutil.copyfile(cached, self.airflow_home / "airflow.db")

    @contextlib.contextmanager
    def db_session(self) -> Iterator[Any]:
        """A real SQLAlchemy session on the sandbox database on Airflow 3 (the scheduler passes its own
        to ``queue_workload``); None on Airflow 2, whose ``queue_command`` takes none."""
        if not (self.airflow_home / "airflow.db").exists() or not compat.is_airflow3():
            yield None
            return
        from airflow.utils.session import create_session

        with create_session() as session:
            yield session

    def on_deactivate(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the sandbox is deactivated (before its directory goes): services that
        live in the sandbox, like the e2e tier's Airflow deployment, are stopped there."""
        if cleanup not in self._cleanups:
            self._cleanups.append(cleanup)

    def deactivate(self, keep: bool = False) -> list[processes.Proc]:
        """Stop the sandbox's services, end every process of the session, restore the environment and
        remove the directory; returns the processes that had to be ended."""
        global _ACTIVE
        while self._cleanups:
            self._cleanups.pop()()
        self.kill_leaked_probes()
        leftovers = self.sweep_processes(include_shared_helpers=True, wait=False)
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
        if _ACTIVE is self:
            _ACTIVE = None
        return leftovers

    def journal(self) -> journal_mod.Journal:
        return journal_mod.Journal(self.journal_dir)

    def settle(self, budget: float = 3.0, task_ids: Iterable[str] | None = None) -> list[journal_mod.ProbeRun]:
        """Wait (within ``budget``) until no probe -- or none of ``task_ids`` -- is still running;
        returns those that still are."""
        wanted = None if task_ids is None else set(task_ids)

        def running() -> list[journal_mod.ProbeRun]:
            return [r for r in self.journal().still_running() if wanted is None or r.task_id in wanted]

        with contextlib.suppress(WaitTimedOut):
            wait_until(lambda: not running(), "probes to end", budget)
        return running()

    # -- who queued what ----------------------------------------------------------------------------
    def claim(self, task_id: str, owner: str) -> None:
        self._owners[task_id] = owner

    def mark_settled(self, task_id: str) -> None:
        """``task_id`` cannot be waiting on the backend: it was reported, never handed over (still in
        ``queued_tasks`` when its harness closed) or revoked."""
        self._settled.add(task_id)

    def work_left_queued(self) -> list[str]:
        """Tasks this session queued that neither started nor were settled, per check that queued them: they
        may still wait on the executor's backend after the session (on a paid backend, they cost). One line
        per check, prefixed ``WORK_LEFT``."""
        started = {run.task_id for run in self.journal().runs}
        waiting: dict[str, list[str]] = {}
        for task_id, owner in self._owners.items():
            if task_id not in started and task_id not in self._settled:
                waiting.setdefault(owner, []).append(task_id)
        return [f"{WORK_LEFT}{len(ids)} task(s) queued by {owner} neither started nor were reported: they may still "
                f"be queued on your backend ({', '.join(sorted(ids)[:3])}{', ...' if len(ids) > 3 else ''})"
                for owner, ids in sorted(waiting.items())]

    def owned_by(self, owner: str) -> set[str]:
        return {task for task, who in self._owners.items() if who == owner}

    def close_owner(self, owner: str) -> None:
        self._closed[owner] = time.monotonic()

    def late_runs(self) -> list[tuple[str, journal_mod.ProbeRun]]:
        """Probe runs that started after the check that queued them had ended (each reported once):
        work a backend kept and ran later, which would otherwise look like the next check's doing."""
        late = []
        for run in self.journal().runs:
            owner = self._owners.get(run.task_id)
            closed = self._closed.get(owner or "")
            if owner and closed is not None and run.started > closed and run.start["run"] not in self._reported:
                self._reported.add(run.start["run"])
                late.append((owner, run))
        return late

    def reclaim(self, owner: str, grace: float) -> list[processes.Proc]:
        """After a scenario the suite itself ran (calibration, capability confirmation): its probes
        end, its leftovers go (returned: the caller reports them), and later runs of its work are
        reported as late."""
        self.settle(grace, self.owned_by(owner))
        self.kill_leaked_probes()
        self.close_owner(owner)
        return self.sweep_processes(include_shared_helpers=False, grace=grace, wait=True)

    def sweep_processes(self, include_shared_helpers: bool, grace: float = 3.0,
                        wait: bool = True) -> list[processes.Proc]:
        """End every process of this session (see ``conformance.groundtruth.processes``) that is still there after
        ``grace`` seconds (not waited for when ``wait`` is False); returns those that had to be ended."""
        def current() -> list[processes.Proc]:
            return [p for p in processes.session_processes(str(self.root))
                    if include_shared_helpers or not p.shared_helper]

        if wait:
            with contextlib.suppress(WaitTimedOut):
                wait_until(lambda: not current(), "the session's processes to exit", grace, poll=0.05)
        found = current()
        processes.end_processes(found, grace)
        return found

    def declare_present_as_environment(self) -> None:
        """Whatever of this session runs now -- before the first executor is built: a conftest fixture's
        workers, a backend driver's daemons -- is the user's environment: isolation never ends it."""
        processes.declare_environment(*(p.pid for p in processes.session_processes(str(self.root))
                                        if not p.shared_helper))

    def session_leftovers(self) -> list[str]:
        """At the end of a run: every process of the session still alive (ended now) and every write to the
        user's Airflow home, described for the summary."""
        found = [p.describe() for p in self.sweep_processes(include_shared_helpers=True, wait=False)]
        return found + [f"{path} was written outside the sandbox (the user's Airflow home): the executor or a "
                        "process it started does not honour AIRFLOW_HOME" for path in self.outside_writes()] \
            + self.work_left_queued()

    def kill_leaked_probes(self) -> list[journal_mod.ProbeRun]:
        """Kill probe processes still alive; returns them so the caller can report the leak."""
        leaked = [r for r in self.journal().still_running() if r.pid != os.getpid()]
        own_group = os.getpgid(0)
        for run in leaked:
            pgid = run.start.get("pgid")
            try:
                if pgid and int(pgid) != own_group:
                    os.killpg(int(pgid), signal.SIGKILL)
                else:
                    os.kill(run.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        with contextlib.suppress(WaitTimedOut):
            wait_until(lambda: not any(journal_mod.pid_alive(r.pid) for r in leaked), "killed probes to exit",
                       5.0, each=lambda: _reap(r.pid for r in leaked))
        _reap(r.pid for r in leaked)
        return leaked

    def outside_writes(self) -> list[Path]:
        """Files this session wrote where it must not (the user's ~/airflow)."""
        user = _user_airflow_dir()
        return [user] if user.exists() and not self._user_airflow_existed else []


def _user_airflow_dir() -> Path:
    return Path(os.path.expanduser("~")) / "airflow"


def _reap(pids: Iterable[int]) -> None:
    """Collect the exit status of killed probes that are our own children (and only those: reaping
    with waitpid(-1) would steal the status of an executor's live subprocess or worker)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _migrated_database() -> Path | None:
    """The cached migrated database of the installed Airflow (built under a file lock on first use:
    xdist workers and concurrent runs wait for one migration instead of racing). None if the
    migration fails -- the harness then runs without tables, as before."""
    version = metadata.version("apache-airflow")
    cache = Path(tempfile.gettempdir()) / "executor-conformance-cache" / f"airflow-{version}"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "airflow.db"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        home = Path(tempfile.mkdtemp(prefix="migrate-", dir=cache))
        building = home / "airflow.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONFORMANCE_"))}
        env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{building}",
                    "AIRFLOW__CORE__UNIT_TEST_MODE": "False"})
        env.pop("PYTHONPATH", None)
        try:
            done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=home,
                                  capture_output=True, text=True, timeout=900, check=False)
            if done.returncode or not building.exists():
                return None
            building.replace(target)
            return target
        finally:
            shutil.rmtree(home, ignore_errors=True)


def ensure_active() -> Sandbox:
    """The session's sandbox, created and activated on first use."""
    return _ACTIVE if _ACTIVE is not None else Sandbox.create().activate()

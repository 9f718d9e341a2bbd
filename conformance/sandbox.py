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
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import conformance
from conformance import journal as journal_mod
from conformance import seam
from conformance.seam_cli import ENV_SHIM_DIR

_SITE_DIR = Path(__file__).with_name("_seam_site")
_PACKAGE_PARENT = Path(conformance.__file__).resolve().parent.parent

_ACTIVE: Sandbox | None = None
SHARED_JOURNAL_ENV = "CONFORMANCE_SHARED_JOURNAL_DIR"


@dataclass
class Sandbox:
    root: Path
    _saved_env: dict[str, str | None] = field(default_factory=dict)
    _user_airflow_existed: bool = True
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

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
        shim.write_text(f"#!{sys.executable}\nimport sys\nfrom conformance.seam_cli import main\n"
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
            "CONFORMANCE_SANDBOX": str(self.root),
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
        seam.install()
        _ACTIVE = self
        return self

    def on_deactivate(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the sandbox is deactivated (before its directory goes): services that
        live in the sandbox, like the e2e tier's Airflow deployment, are stopped there."""
        if cleanup not in self._cleanups:
            self._cleanups.append(cleanup)

    def deactivate(self, keep: bool = False) -> None:
        global _ACTIVE
        while self._cleanups:
            self._cleanups.pop()()
        self.kill_leaked_probes()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
        if _ACTIVE is self:
            _ACTIVE = None

    def journal(self) -> journal_mod.Journal:
        return journal_mod.Journal(self.journal_dir)

    def settle(self, deadline: float = 3.0) -> None:
        """Give probes that were just released the moment they need to write their end entry."""
        limit = time.monotonic() + deadline
        waiter = threading.Event()
        while self.journal().still_running() and time.monotonic() < limit:
            waiter.wait(0.01)

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
        limit = time.monotonic() + 5.0
        waiter = threading.Event()
        while any(journal_mod.pid_alive(r.pid) for r in leaked) and time.monotonic() < limit:
            _reap(r.pid for r in leaked)
            waiter.wait(0.01)
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


def active() -> Sandbox | None:
    return _ACTIVE


def ensure_active() -> Sandbox:
    """The session's sandbox, created and activated on first use."""
    return _ACTIVE if _ACTIVE is not None else Sandbox.create().activate()

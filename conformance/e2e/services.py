"""Long-running processes of the e2e tier, each stopped by its PID -- never by name.

Every process runs in its own session (process group), so stopping it also stops what it forked
(gunicorn/uvicorn workers, DAG-processor children); what escapes its group (a task process an executor
started with ``setsid``) is found by ``processes_of`` through the marker and working directory every process
of the deployment inherits, and killed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from conformance.groundtruth import processes
from conformance.groundtruth.journal import pid_alive
from conformance.harness.timing import WaitTimedOut, wait_until


class E2ESetupError(RuntimeError):
    """The deployment could not be brought up (a prerequisite is missing or a component died)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} not written)"
    return "\n".join(text[-lines:])


class Service:
    """One background process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 cwd: Path | None = None, user: str | None = None):
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.argv = argv
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         user=user)
        processes.KEEP.add(self.proc.pid)  # its own session: the suite's sweeps leave it to its owner

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process itself only -- a crash, as the OOM killer would do it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, grace: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Stop the process and its group: ``sig``, then SIGKILL after ``grace`` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        # whatever is left of its group (workers the main process forked) goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait()

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid}) log {self.log}:\n{tail(self.log)}"


_LAUNCHER = (
    "import subprocess, sys\n"
    "with open(sys.argv[1], 'ab') as out:\n"
    "    child = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,\n"
    "                             start_new_session=True)\n"
    "print(child.pid)\n"
)


class DetachedService:
    """A background process that is *not* a descendant of this one: a launcher starts it in its own
    session and exits, so it is re-parented, as a worker on another host is no child of the scheduler
    (the suite's is_local advice reads process ancestry). Stopped by its PID like ``Service``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path | None = None):
        self.name = name
        self.log = log_dir / f"{name}.log"
        launched = subprocess.run([sys.executable, "-c", _LAUNCHER, str(self.log), *argv], env=env, cwd=cwd,
                                  capture_output=True, text=True, check=False)
        if launched.returncode or not launched.stdout.strip().isdigit():
            raise E2ESetupError(f"{name} could not be started: {launched.stderr.strip()[-400:]}")
        self.pid = int(launched.stdout.strip())
        processes.KEEP.add(self.pid)  # its own session: the suite's sweeps leave it to its owner

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM its process group, SIGKILL it after ``grace`` seconds; returns once it is gone."""
        for sig, budget in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            try:
                wait_until(lambda: not self.alive(), f"{self.name} (pid {self.pid}) to exit", budget, poll=0.05)
                break
            except WaitTimedOut:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):  # what its group still holds
            os.killpg(self.pid, signal.SIGKILL)

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid}) log {self.log}:\n{tail(self.log)}"


def processes_of(name: str, value: str, cwd: Path) -> list[int]:
    """PIDs of processes that belong to a deployment: its marker ``name=value`` in their environment,
    or a working directory inside ``cwd`` (``setproctitle`` overwrites the environment that
    /proc shows, so the working directory every component and task inherits is the second sign)."""
    needle = f"{name}={value}".encode()
    inside = str(cwd.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie has already exited; its parent (or init) reaps it
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
                continue
            where = os.readlink(entry / "cwd")
        except OSError:
            continue
        if where == inside or where.startswith(inside + os.sep):
            found.append(int(entry.name))
    return found


def kill_marked(name: str, value: str, cwd: Path, deadline: float = 10.0) -> list[str]:
    """SIGKILL every process of the deployment; returns those that were still running ("pid (command)").

    Called after the components were stopped: what they were still taking down gets a moment to go
    by itself first, so that only real stragglers are reported."""
    with contextlib.suppress(WaitTimedOut):
        wait_until(lambda: not processes_of(name, value, cwd), "the deployment's processes to exit", 3.0, poll=0.05)
    leaked = processes_of(name, value, cwd)
    described = [f"{pid} ({processes.command_of(pid)[:120]})" for pid in leaked]
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)

    def reap() -> None:  # our own children must not linger as zombies
        for pid in leaked:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    with contextlib.suppress(WaitTimedOut):
        wait_until(lambda: not set(processes_of(name, value, cwd)) & set(leaked), "killed processes to exit",
                   deadline, poll=0.05, each=reap)
    return described


class PostgresServer:
    """A private PostgreSQL (Debian's ``postgresql`` package) on 127.0.0.1, for executors that Airflow
    refuses to run on sqlite. initdb refuses root, so as root the cluster belongs to ``postgres``."""

    def __init__(self, log_dir: Path):
        self.bindir = self._bindir()
        # its own temporary directory: the sandbox's is private to us, and ``postgres`` must enter this one
        self.root = Path(tempfile.mkdtemp(prefix="executor-conformance-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        for folder in (self.root, self.data, self.sockets):
            folder.mkdir(exist_ok=True)
            if self.user:
                entry = pwd.getpwnam(self.user)
                os.chown(folder, entry.pw_uid, entry.pw_gid)
        initdb = subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                                 "--auth=trust", "--no-sync", "-E", "UTF8"], user=self.user,
                                capture_output=True, text=True, check=False)
        if initdb.returncode:
            shutil.rmtree(self.root, ignore_errors=True)
            raise E2ESetupError(f"initdb failed: {initdb.stderr.strip()[-400:]}")
        self.service = Service("postgres", [str(self.bindir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
                                            "-p", str(self.port), "-k", str(self.sockets), "-F",
                                            "-c", "fsync=off", "-c", "max_connections=200"],
                               env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
                               log_dir=log_dir, user=self.user)
        wait_until(self._ready, "PostgreSQL to accept connections", 30, explain=self.service.describe, poll=0.1)
        create = subprocess.run([str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                 "-c", "CREATE DATABASE airflow"], capture_output=True, text=True, check=False)
        if create.returncode:
            self.stop()
            raise E2ESetupError(f"creating the airflow database failed: {create.stderr.strip()}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/airflow"

    @staticmethod
    def _bindir() -> Path:
        pg_config = shutil.which("pg_config")
        candidates = []
        if pg_config:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
            candidates.append(Path(out))
        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        for folder in candidates:
            if (folder / "initdb").exists() and (folder / "postgres").exists():
                return folder
        raise E2ESetupError("PostgreSQL server binaries not found (apt-get install -y postgresql): Airflow "
                            "refuses sqlite for an executor that is not single-threaded")

    def _ready(self) -> bool:
        if not self.service.alive():
            raise E2ESetupError("PostgreSQL exited at start:\n" + self.service.describe())
        probe = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                               capture_output=True, check=False)
        return probe.returncode == 0

    def stop(self) -> None:
        self.service.stop(sig=signal.SIGINT)  # "fast shutdown"
        shutil.rmtree(self.root, ignore_errors=True)

"""One task, one process, and a durable record of it on disk.

Each task runs in a child forked from the executor's process, in a *new session* (so it has its own
process group: ``terminate``/``revoke_task`` can stop the task and everything it started with one
``killpg``, and the task survives the scheduler process dying). The child writes its verdict into the
state directory before it exits. The state directory, not the executor's memory, is the source of
truth: a new executor instance after a scheduler restart finds the record through the TI's
``external_executor_id`` and picks up the verdict -- adoption without running anything again.

Files per task, named by its external id ``<id>``:
``<id>.json`` (key, pid, log path), ``<id>.result.json`` (state and info, written atomically by the
child), and the task log under ``logs/``. A task run by a pool worker (``_pool``) has one file: the
record as its first JSON line and the verdict appended as the second -- two writes, no renames.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import secrets
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUCCESS = "success"
FAILED = "failed"
#: How long a task gets to stop after SIGTERM before it is SIGKILLed (terminate, revoke).
STOP_GRACE_SECONDS = 2.0


class _IdSource:
    """A random token drawn once per process (again in a forked child), then a counter.

    Ids stay unique across processes and scheduler restarts, and minting one costs no system call:
    ``secrets.token_hex`` per task was one ``getrandom`` inside the heartbeat, ~0.1 ms on a busy VM."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.token = secrets.token_hex(6)
        self.counter = itertools.count(1)


_IDS = _IdSource()
os.register_at_fork(after_in_child=_IDS.reset)


def new_external_id(prefix: str) -> str:
    return f"{prefix}-{_IDS.token}-{next(_IDS.counter)}"


def key_fields(key: Any) -> list[Any]:
    """The parts of a key that name a record and a log file. A callback or connection test (3.3) has
    only an id: it is filed under its key type."""
    if not hasattr(key, "dag_id"):
        return [f"_{type(key).__name__}", str(getattr(key, "id", key)), "-", 1, -1]
    return [key.dag_id, key.task_id, key.run_id, key.try_number, key.map_index]


def log_path(state_dir: Path, key_parts: list[Any]) -> Path:
    dag_id, task_id, run_id, try_number, map_index = key_parts
    return state_dir / "logs" / str(dag_id) / str(run_id) / str(task_id) / f"map{map_index}" / f"try{try_number}.log"


# -- the state directory: the only I/O on the durable state, so an outage has one place to bite ------
# (``reference_executors.faults`` makes these raise, as a flaky NFS mount or full disk would).


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON; None when it does not exist (yet). Any other OSError is an outage: raised."""
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # written atomically, so only a foreign file can be malformed: treat as absent


def _write_line(path: Path, data: dict[str, Any], append: bool) -> None:
    """One JSON line: a new file, or appended to one (a single ``write``, so never interleaved)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o644)
    try:
        os.write(fd, (json.dumps(data) + "\n").encode())
    finally:
        os.close(fd)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The file's JSON lines, up to the first one that is incomplete (still being written); [] when
    the file does not exist. Any other OSError is an outage: raised."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = []
    for line in text.splitlines():
        try:
            lines.append(dict(json.loads(line)))
        except ValueError:
            break
    return lines


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class TaskProcess:
    """A task running (or finished) in its own process group, known by its external id."""

    external_id: str
    key_parts: list[Any]
    pid: int
    state_dir: Path
    exit_status: int | None = None
    _record: dict[str, Any] | None = None  # a record still to be written (the state dir failed)
    #: the pid is a worker that outlives the task (``_pool``): never block waiting for it to exit
    shared_pid: bool = False

    @property
    def record_path(self) -> Path:
        return self.state_dir / f"{self.external_id}.json"

    @property
    def result_path(self) -> Path:
        return self.state_dir / f"{self.external_id}.result.json"

    # -- starting ------------------------------------------------------------------------------
    @classmethod
    def launch(cls, state_dir: Path, external_id: str, key: Any,
               run: Callable[[], None]) -> TaskProcess:
        """Fork a child in a new session that calls ``run()`` and records the verdict.

        The durable record is written *before* the fork: if the state directory is unavailable this
        raises OSError and nothing was started, so the caller can simply try again later."""
        parts = key_fields(key)
        logfile = log_path(state_dir, parts)
        logfile.parent.mkdir(parents=True, exist_ok=True)
        proc = cls(external_id, parts, pid=0, state_dir=state_dir)
        record = {"key": parts, "pid": None, "log": str(logfile), "started": time.time()}
        _write_json_atomically(proc.record_path, record)
        # Like Airflow's LocalExecutor: freeze the GC across fork so the child's collector does not
        # touch (and copy) every inherited object page.
        gc.freeze()
        try:
            pid = os.fork()
            if pid == 0:  # the child never returns from here
                _child_main(proc, logfile, run)
        finally:
            gc.unfreeze()
        proc.pid = pid
        proc._record = {**record, "pid": pid}
        proc._save_record()
        return proc

    def _save_record(self) -> None:
        """Store the pid for adoption; if the state directory fails now, retried at the next poll."""
        if self._record is None:
            return
        try:
            _write_json_atomically(self.record_path, self._record)
            self._record = None
        except OSError:
            pass

    @classmethod
    def from_record(cls, state_dir: Path, external_id: str) -> TaskProcess | None:
        """Re-attach to a task another executor instance started (adoption)."""
        try:
            lines = _read_lines(state_dir / f"{external_id}.json")
        except OSError:
            return None
        record = lines[0] if lines else None
        if record is None or record.get("pid") is None:
            return None  # never started, or its starter died before it knew the pid
        return cls(external_id, list(record["key"]), int(record["pid"]), state_dir,
                   shared_pid=bool(record.get("worker")))

    # -- observing -----------------------------------------------------------------------------
    def poll(self) -> tuple[str, str] | None:
        """``(state, info)`` once the task is over, else None. Never blocks.

        While the state directory is unavailable the verdict cannot be read: None (ask again later),
        never a guess -- a SUCCESS reported as FAILED is a lost task (SPEC HB-5)."""
        ours = self._reap(block=False)
        self._save_record()
        try:
            result = self._read_result()
        except OSError:
            return None
        if result is not None:
            return result
        if self.exit_status is not None:
            return FAILED, f"task process ended without a verdict ({describe_status(self.exit_status)})"
        if not ours and not _pid_alive(self.pid):
            return FAILED, "task process vanished without a verdict"
        return None

    def wait(self) -> tuple[str, str]:
        """Block until the task is over (used by the sequential executor and by ``end``)."""
        waiter = threading.Event()
        while True:
            self._reap(block=True)  # returns at once for a process that is not our child
            outcome = self.poll()
            if outcome is not None:
                return outcome
            waiter.wait(0.02)  # not our child (adopted): nothing to block on but its liveness

    def finish(self) -> tuple[str, str] | None:
        """Block until the process has exited, then poll: None only while the verdict cannot be read
        (state directory unavailable) -- the caller keeps the task and polls again later."""
        waiter = threading.Event()
        while self._running():
            self._reap(block=True)
            if self._running():
                waiter.wait(0.02)  # not our child (adopted): nothing to block on but its liveness
        return self.poll()

    def stop(self) -> None:
        """SIGTERM the task's process group, SIGKILL it after a grace period, and reap it."""
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        waiter = threading.Event()
        while self._running() and time.monotonic() < deadline:
            waiter.wait(0.01)
        if self._running():
            self._signal(signal.SIGKILL)
            self._reap(block=True)

    def forget(self) -> None:
        """Remove the durable record once the verdict was reported (the log is kept)."""
        for path in (self.record_path, self.result_path):
            with contextlib.suppress(OSError):  # an outage leaves a stale record; `clean` removes it
                _remove(path)

    # -- internals -----------------------------------------------------------------------------
    def _running(self) -> bool:
        self._reap(block=False)
        return self.exit_status is None and _pid_alive(self.pid)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)

    def _reap(self, block: bool) -> bool:
        """Collect the exit status if the task is our child; True while waitpid can see it (a task
        adopted from another executor instance in another process is not our child)."""
        if self.exit_status is not None:
            return False
        try:
            pid, status = os.waitpid(self.pid, 0 if block and not self.shared_pid else os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == self.pid:
            self.exit_status = status
        return True

    def _read_result(self) -> tuple[str, str] | None:
        if self.shared_pid:  # a pool worker's task: the verdict is the record's second line
            lines = _read_lines(self.record_path)
            data = lines[1] if len(lines) > 1 else None
        else:
            data = _read_json(self.result_path)
        if data is None:
            return None
        return str(data["state"]), str(data.get("info", ""))


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _child_main(proc: TaskProcess, logfile: Path, run: Callable[[], None]) -> None:
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            run()
            verdict = {"state": SUCCESS, "info": proc.external_id}
        except BaseException as exc:
            traceback.print_exc()
            verdict = {"state": FAILED, "info": f"{type(exc).__name__}: {exc}"}
        _write_json_atomically(proc.result_path, verdict)
        code = 0
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

"""Long-lived worker processes for the reference LocalExecutor, like Airflow's own LocalExecutor keeps.

Forking the scheduler's process for every task costs milliseconds of page-table copying *inside the
scheduler's heartbeat*. A worker is forked once and then runs task after task:

* Airflow 3: the worker calls ``run_workload``/``supervise`` in-process. That is the Task SDK's design
  -- the supervisor forks the task's own process and watches it -- and what Airflow's LocalExecutor does.
* Airflow 2: ``airflow tasks run`` changes process-wide state (logging, settings, signal handlers), so
  the worker forks a child per task, as Airflow 2's LocalExecutor worker does (``_execute_work_in_fork``).

What makes the reference durable does not change. The worker writes the task's record (naming its
own pid) before it starts the task and appends the verdict to it before it says "done" on its pipe. A
new executor instance after a scheduler restart adopts from the records exactly as before. Each worker
leads its own session (``killpg`` stops it and the task it runs) and exits when its pipe closes: at
``end()``, or after its current task when the scheduler process died.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path
from typing import Any

from reference_executors import _process
from reference_executors._process import FAILED, SUCCESS, TaskProcess

#: How a worker runs one task's payload (``_bridge.run_here`` for tasks); raises when the task failed.
Runner = Callable[[Any], None]


@dataclass(eq=False)
class _Worker:
    pid: int
    conn: Connection
    task: str | None = None  # external id of the task it runs now; None when idle
    #: records of reported tasks it ran, removed by the worker with its next message (not one wake-up each)
    forget: list[str] = field(default_factory=list)
    alive: bool = True


@dataclass
class PooledTask(TaskProcess):
    """A task handed to a pool worker: its ``pid`` is the worker's. The verdict arrives on the worker's
    pipe; if the worker died first, ``TaskProcess.poll`` judges by the verdict file and the exit status."""

    pool: WorkerPool | None = field(default=None, repr=False)

    def poll(self) -> tuple[str, str] | None:
        assert self.pool is not None
        verdict = self.pool.verdict(self.external_id)
        if verdict is not None or self.pool.runs(self.external_id):
            return verdict
        return super().poll()  # the worker is gone: its exit status (``_reap``) and the record decide

    def stop(self) -> None:
        """Stop the worker only while it still runs *this* task: once it reported, it may run another."""
        assert self.pool is not None
        if self.pool.runs(self.external_id):
            super().stop()

    def forget(self) -> None:
        assert self.pool is not None
        self.pool.discard(self)

    def wait(self) -> tuple[str, str]:
        assert self.pool is not None
        while True:
            outcome = self.poll()
            if outcome is not None:
                return outcome
            self.pool.wait_for_news()

    def _reap(self, block: bool) -> bool:
        # The worker outlives this task: waiting for its exit would wait for the next end().
        status = self.pool.exit_status_of(self.pid) if self.pool is not None else None
        if status is not None:
            self.exit_status = status
        return False


class WorkerPool:
    """Workers forked from this process on demand, reused while idle, stopped by ``shutdown``."""

    def __init__(self, runner: Runner, isolate: bool):
        self.runner = runner
        self.isolate = isolate  # True: fork a child per task inside the worker (Airflow 2)
        self.workers: list[_Worker] = []
        self._verdicts: dict[str, tuple[str, str]] = {}
        self._exits: dict[int, int] = {}  # worker pid -> wait status, once it died
        self._ran_by: dict[str, _Worker] = {}  # external id -> the worker it was handed to
        self._poller = select.poll()  # every worker's pipe: one syscall finds those with news
        self._by_fd: dict[int, _Worker] = {}

    # -- the executor's side ------------------------------------------------------------------------
    def submit(self, state_dir: Path, external_id: str, key: Any, payload: Any) -> PooledTask:
        """Hand ``payload`` to an idle worker (forking one if none is idle); returns the task's handle.

        The worker writes the task's durable record before it starts the task, so the heartbeat does no
        file I/O. An OSError (the worker's pipe broke) means nothing was started: try again later."""
        parts = _process.key_fields(key)
        logfile = _process.log_path(state_dir, parts)
        worker = self._idle_worker() or self._fork_worker()
        task = PooledTask(external_id, parts, worker.pid, state_dir, shared_pid=True, pool=self)
        record = os.path.join(state_dir, f"{external_id}.json")  # task.record_path, without pathlib's cost
        worker.conn.send(("run", worker.forget, external_id, parts, record, str(logfile), payload))
        worker.forget = []
        worker.task = external_id
        self._ran_by[external_id] = worker
        return task

    def discard(self, task: TaskProcess) -> None:
        """The executor reported ``task``: drop its verdict and have its worker remove its files
        between tasks (off the heartbeat); with that worker gone, remove them here."""
        self._verdicts.pop(task.external_id, None)
        worker = self._ran_by.pop(task.external_id, None)
        if worker is not None and worker.alive:
            worker.forget.append(str(task.record_path))
        else:
            TaskProcess.forget(task)

    def verdict(self, external_id: str) -> tuple[str, str] | None:
        self._collect()
        return self._verdicts.pop(external_id, None)

    def news(self) -> set[str]:
        """External ids with something to report: a verdict came, or the worker running it is gone.
        One ``poll`` syscall: the executor asks only those tasks, not every task in flight."""
        self._collect()
        running = {w.task for w in self.workers if w.task is not None}
        return set(self._verdicts) | {i for i in self._ran_by if i not in running}

    def runs(self, external_id: str) -> bool:
        """True while a live worker of this pool is running ``external_id``."""
        return any(w.task == external_id for w in self.workers)

    def exit_status_of(self, pid: int) -> int | None:
        self._collect()
        return self._exits.get(pid)

    def wait_for_news(self, timeout: float = 0.05) -> None:
        """Block until a worker reports or dies, at most ``timeout`` (a task whose worker is already
        gone is judged by its files and has nothing to wake us)."""
        busy = [w.conn for w in self.workers if w.task is not None]
        if busy:
            wait(busy, timeout)
        else:
            threading.Event().wait(timeout)

    def shutdown(self) -> None:
        """Close every pipe: idle workers exit at once, busy ones after their task; reap them all."""
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.conn.send(("forget", worker.forget))
            worker.conn.close()
        for worker in self.workers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(worker.pid, 0)
        self.workers = []
        self._by_fd = {}
        self._poller = select.poll()

    # -- internals ------------------------------------------------------------------------------------
    def _idle_worker(self) -> _Worker | None:
        self._collect()
        return next((w for w in self.workers if w.task is None), None)

    def _collect(self) -> None:
        """Read every verdict the workers sent (one ``poll`` syscall over all pipes); a closed pipe is
        a dead worker: reap it."""
        for fd, _ in self._poller.poll(0):
            worker = self._by_fd[fd]
            try:
                while worker.conn.poll():
                    external_id, verdict = worker.conn.recv()
                    self._verdicts[external_id] = tuple(verdict)
                    worker.task = None
            except (EOFError, OSError):
                self._lost(worker)

    def _lost(self, worker: _Worker) -> None:
        self.workers.remove(worker)
        worker.alive = False
        self._poller.unregister(worker.conn.fileno())
        del self._by_fd[worker.conn.fileno()]
        worker.conn.close()
        self._reap(worker.pid)
        _forget(worker.forget)  # its last records: nobody else will remove them

    def _reap(self, pid: int) -> None:
        try:
            reaped, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return  # someone else reaped it (an adopting TaskProcess of the same process)
        if reaped == pid:
            self._exits[pid] = status

    def _fork_worker(self) -> _Worker:
        ours, theirs = Pipe(duplex=True)
        inherited = [w.conn for w in self.workers] + [ours]
        gc.freeze()  # as Airflow's LocalExecutor: the child's collector must not touch inherited pages
        try:
            pid = os.fork()
            if pid == 0:
                _worker_main(theirs, inherited, self.runner, self.isolate)
        finally:
            gc.unfreeze()
        theirs.close()
        worker = _Worker(pid, ours)
        self.workers.append(worker)
        self._by_fd[ours.fileno()] = worker
        self._poller.register(ours.fileno(), select.POLLIN)
        return worker


# -- the worker's side --------------------------------------------------------------------------------
def _worker_main(conn: Connection, inherited: list[Connection], runner: Runner, isolate: bool) -> None:
    """Never returns. Other workers' pipes are closed here, or they would never see their EOF."""
    try:
        for other in inherited:
            other.close()
        os.setsid()
        if hasattr(os, "SCHED_BATCH"):
            # Task work is batch work: a worker woken by its pipe must not preempt the scheduler's loop
            # mid-heartbeat (the default policy lets a just-woken process take the CPU at once).
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        scheduler = os.getppid()
        while True:
            try:
                # EOF comes at end() or when the scheduler process died; the parent check is for a copy
                # of our pipe that some other child of the scheduler inherited and keeps open.
                while not conn.poll(1.0):
                    if os.getppid() != scheduler:
                        return
                message = conn.recv()
            except (EOFError, OSError):
                return
            _forget(message[1])
            if message[0] == "forget":
                continue
            _, _, external_id, parts, record_path, logfile, payload = message
            record = Path(record_path)
            with contextlib.suppress(OSError):  # unrecorded, it cannot be adopted; the executor still hears
                _process._write_line(record, {"key": parts, "pid": os.getpid(), "log": logfile,
                                              "started": time.time(), "worker": True}, append=False)
            run = _run_in_child if isolate else _run_here
            verdict = run(runner, payload, Path(logfile))
            with contextlib.suppress(OSError):  # the pipe still carries it to a live executor
                _process._write_line(record, verdict, append=True)
            try:
                conn.send((external_id, (verdict["state"], verdict["info"])))
            except OSError:
                return
    finally:
        os._exit(0)


def _forget(records: list[str]) -> None:
    for path in records:
        with contextlib.suppress(OSError):
            _process._remove(Path(path))


def _run_here(runner: Runner, payload: Any, logfile: Path) -> dict[str, str]:
    """Run in this worker with stdout/stderr in the task's log; the worker's own streams come back."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        runner(payload)
        return {"state": SUCCESS, "info": "ok"}
    except BaseException as exc:  # any failure of the task is its verdict
        traceback.print_exc()
        return {"state": FAILED, "info": f"{type(exc).__name__}: {exc}"}
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for target, fd_saved in zip((1, 2), saved):
            os.dup2(fd_saved, target)
            os.close(fd_saved)


def _run_in_child(runner: Runner, payload: Any, logfile: Path) -> dict[str, str]:
    """Fork a child for this one task (it stays in the worker's process group) and wait for it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 1
        try:
            verdict = _run_here(runner, payload, logfile)
            os.write(write_end, f"{verdict['state']}\n{verdict['info']}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if "\n" in message:
        state, info = message.split("\n", 1)
        return {"state": state, "info": info}
    return {"state": FAILED, "info": f"task process ended without a verdict ({_process.describe_status(status)})"}

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
leads its own session (``killpg`` stops it and the task it runs) and exits when told at ``end()``, when
its pipe closes, or after its current task when the scheduler process died.

Waking workers is the heartbeat's real cost. A write to the pipe a process sleeps on wakes it, the
kernel charges the wake-up to the writer and queues the woken process on the writer's CPU, where on a
busy machine it preempts the scheduler's loop in mid-heartbeat (measured: 4 wake-ups per heartbeat
stretched a 1 ms heartbeat to 5-7 ms beside CPU-bound load). So an idle worker sleeps on a *bell* (a
pipe of its own), not on its message pipe: the executor writes the heartbeat's tasks to their pipes
(waking nobody) at ``flush``, rings one worker's bell and names the other bells in that worker's
message, and that worker rings them -- one wake-up paid by the scheduler per heartbeat, as with
Airflow's LocalExecutor, whose workers wake each other through their shared queue's lock. A worker also
looks at its pipe every second, so a lost ring delays a task, never loses it.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path
from typing import Any

from reference_executors import _process
from reference_executors._process import FAILED, SUCCESS, TaskProcess

#: How a worker runs one task's payload (``_bridge.run_here`` for tasks); raises when the task failed.
Runner = Callable[[Any], None]


def _ring(write_fd: int) -> None:
    """Ring a bell by its write end: from the executor, or from the worker asked to relay the ring."""
    with contextlib.suppress(OSError):  # full (BlockingIOError): it rings already; closed: its worker is gone
        os.write(write_fd, b"!")


@dataclass(eq=False)
class _Bell:
    """What wakes an idle worker: a pipe it sleeps on (its message pipe is not watched while idle, so
    writing a message there wakes nobody). Other workers forked after it hold its write end too."""

    read_fd: int
    write_fd: int
    serial: int  # which bells a worker can ring: those that existed when it was forked

    @classmethod
    def new(cls, serial: int) -> _Bell:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        return cls(read_fd, write_fd, serial)

    def ring(self) -> None:
        _ring(self.write_fd)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(eq=False)
class _Worker:
    pid: int
    conn: Connection
    bell: _Bell
    knows_bells_up_to: int  # it inherited every bell made before it, so it can ring those serials
    task: str | None = None  # external id of the task it runs now (or is about to); None when idle
    #: records of reported tasks it ran, removed by the worker with its next message (not one wake-up each)
    forget: list[str] = field(default_factory=list)
    alive: bool = True


@dataclass(eq=False)
class _Handover:
    """A task handed to a worker in this executor call, written to its pipe at ``flush``."""

    task: PooledTask
    payload: Any
    worker: _Worker | None


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
        """Stop the worker only while it still runs *this* task: once it reported, it may run another.
        A task not handed over yet (its worker died first) is simply never handed over."""
        assert self.pool is not None
        if self.pool.withdraw(self.external_id):
            return
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
        self._handovers: list[_Handover] = []  # submitted, not yet written to a worker's pipe
        self._batching = 0  # inside ``batch()``: submissions are written at its end, not one by one
        self._bells = 0

    # -- the executor's side ------------------------------------------------------------------------
    def submit(self, state_dir: Path, external_id: str, key: Any, payload: Any) -> PooledTask:
        """Hand ``payload`` to an idle worker (forking one if none is idle); returns the task's handle.

        The worker derives the record and log paths and writes the record before it starts the task, so
        the heartbeat builds no path and does no file I/O. An OSError (no worker could be forked) means
        nothing was started: try again later. A worker found dead when the task is written is ``flush``'s
        concern: the task goes to another worker."""
        parts = _process.key_fields(key)
        worker = self._idle_worker() or self._fork_worker()
        task = PooledTask(external_id, parts, worker.pid, state_dir, shared_pid=True, pool=self)
        worker.task = external_id
        self._ran_by[external_id] = worker
        self._handovers.append(_Handover(task, payload, worker))
        if not self._batching:
            self.flush()
        return task

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Submissions inside are handed over together when it ends (``flush``): one heartbeat's."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching:
                self.flush()

    def flush(self) -> None:
        """Write the tasks submitted since the last flush to their workers, then wake them (at the end
        of a ``batch``, or at once for a submission outside one).

        Waking a process costs the waker (the kernel also queues the wakee on the waker's CPU, where it
        preempts the scheduler's loop on a busy machine). So this process wakes *one* worker and hands it
        the bells of the others, as Airflow's LocalExecutor workers wake each other through their shared
        queue's lock. A worker found dead by the write never got its task: the task goes to another worker
        (forked if none is idle) -- never started twice, never reported lost; if no worker can be forked
        now, it waits here for the next flush."""
        for _ in range(len(self.workers) + 2):
            if not self._hand_over_all():
                return
            self._collect()  # a write found a dead worker: notice the others that died, then retry

    def _hand_over_all(self) -> bool:
        """One pass of ``flush``; True when a write found its worker dead (the task is still here)."""
        handovers, self._handovers = self._handovers, []
        ready = [h for h in handovers if self._has_worker(h)]
        if not ready:
            return False
        first, others = ready[0], ready[1:]
        assert first.worker is not None
        leader = first.worker
        sent = [h.worker for h in others if h.worker is not None and self._send(h, relay=[])]
        all_written = len(sent) == len(others)
        known = leader.knows_bells_up_to
        if self._send(first, relay=[w.bell.write_fd for w in sent if w.bell.serial <= known]):
            leader.bell.ring()
            sent = [w for w in sent if w.bell.serial > known]  # forked after it: rung from here
        else:
            all_written = False
        for worker in sent:
            worker.bell.ring()
        return not all_written

    def _has_worker(self, handover: _Handover) -> bool:
        """Give a handover whose worker died a new one; False (kept for the next flush) if none can be
        forked now."""
        if handover.worker is not None and handover.worker.alive:
            return True
        try:
            worker = self._idle_worker() or self._fork_worker()
        except OSError:
            self._handovers.append(handover)
            return False
        handover.worker = worker
        handover.task.pid = worker.pid
        worker.task = handover.task.external_id
        self._ran_by[handover.task.external_id] = worker
        return True

    def _send(self, handover: _Handover, relay: list[int]) -> bool:
        """Write the task to its worker's pipe (no one sleeps on it: nobody is woken). A broken pipe is
        a dead worker that never got the task: the task waits for the next flush and another worker."""
        worker, task = handover.worker, handover.task
        assert worker is not None
        try:
            worker.conn.send(("run", worker.forget, task.external_id, task.key_parts, str(task.state_dir),
                              handover.payload, relay))
        except OSError:
            handover.worker = None
            self._handovers.append(handover)
            if worker.alive:
                self._lost(worker)
            return False
        worker.forget = []
        return True

    def withdraw(self, external_id: str) -> bool:
        """Drop a task not handed to a worker yet; it is reported FAILED (it never started)."""
        for handover in self._handovers:
            if handover.task.external_id == external_id:
                self._handovers.remove(handover)
                if handover.worker is not None and handover.worker.task == external_id:
                    handover.worker.task = None
                self._verdicts[external_id] = (FAILED, "stopped before it was handed to a worker")
                return True
        return False

    def grow(self, size: int) -> None:
        """Fork workers until the pool has ``size``, under one ``gc.freeze``: at ``start()``, so the
        first heartbeats hand work over instead of forking (Airflow's LocalExecutor forks its workers
        there too). Their bells are made first, so each of them can ring all the others."""
        bells = [self._new_bell() for _ in range(size - len(self.workers))]
        gc.freeze()
        try:
            for bell in bells:
                self._fork_frozen(bell)
        finally:
            gc.unfreeze()

    def _new_bell(self) -> _Bell:
        self._bells += 1
        return _Bell.new(self._bells)

    def discard(self, task: TaskProcess) -> None:
        """The executor reported ``task``: drop its verdict and have its worker remove its files
        between tasks (off the heartbeat); with that worker gone, remove them here."""
        self._verdicts.pop(task.external_id, None)
        worker = self._ran_by.pop(task.external_id, None)
        if worker is not None and worker.alive:
            worker.forget.append(f"{task.state_dir}{os.sep}{task.external_id}.json")  # no pathlib here
        else:
            TaskProcess.forget(task)

    def verdict(self, external_id: str) -> tuple[str, str] | None:
        """The verdict read by the last ``news``/``wait_for_news`` (one poll per heartbeat, not per task)."""
        return self._verdicts.pop(external_id, None)

    def news(self) -> set[str]:
        """External ids with something to report: a verdict came, or the worker running it is gone.
        One ``poll`` syscall: the executor asks only those tasks, not every task in flight."""
        self._collect()
        running = {w.task for w in self.workers if w.task is not None}
        running.update(h.task.external_id for h in self._handovers)
        return set(self._verdicts) | {i for i in self._ran_by if i not in running}

    def runs(self, external_id: str) -> bool:
        """True while a live worker of this pool is running ``external_id`` (or is about to)."""
        if any(h.task.external_id == external_id for h in self._handovers):
            return True
        worker = self._ran_by.get(external_id)
        return worker is not None and worker.alive and worker.task == external_id

    def exit_status_of(self, pid: int) -> int | None:
        self._collect()
        return self._exits.get(pid)

    def wait_for_news(self, timeout: float = 0.05) -> None:
        """Block until a worker reports or dies, at most ``timeout`` (a task whose worker is already
        gone is judged by its files and has nothing to wake us)."""
        self.flush()
        busy = [w.conn for w in self.workers if w.task is not None]
        if busy:
            wait(busy, timeout)
        else:
            threading.Event().wait(timeout)
        self._collect()

    def shutdown(self) -> None:
        """Close every pipe: idle workers exit at once, busy ones after their task; reap them all."""
        self.flush()
        for worker in self.workers:
            with contextlib.suppress(OSError):
                # An explicit goodbye, not only EOF: a process the scheduler forked after this worker
                # (any child of it) holds a copy of our end of the pipe, and EOF would never come.
                worker.conn.send(("exit", worker.forget, []))
            worker.conn.close()
            worker.bell.ring()  # it finds its pipe closed
        for worker in self.workers:
            worker.alive = False  # its task, if it had one, is judged by its record and exit status now
            self._reap(worker.pid)
            worker.bell.close()
        self.workers = []
        self._by_fd = {}
        self._poller = select.poll()

    # -- internals ------------------------------------------------------------------------------------
    def _idle_worker(self) -> _Worker | None:
        """An idle worker; the pipes are read again only when none is known to be idle."""
        idle = next((w for w in self.workers if w.task is None), None)
        if idle is None:
            self._collect()
            idle = next((w for w in self.workers if w.task is None), None)
        return idle

    def _collect(self) -> None:
        """Read every verdict the workers sent (one ``poll`` syscall over all pipes); a closed pipe is
        a dead worker: reap it. A worker has at most one message for us (the verdict of its one task),
        so a readable pipe is read once: the next call sees whatever follows (its EOF)."""
        for fd, _ in self._poller.poll(0):
            worker = self._by_fd[fd]
            try:
                external_id, verdict = worker.conn.recv()
            except (EOFError, OSError):
                self._lost(worker)
                continue
            self._verdicts[external_id] = tuple(verdict)
            worker.task = None

    def _lost(self, worker: _Worker) -> None:
        self.workers.remove(worker)
        worker.alive = False
        self._poller.unregister(worker.conn.fileno())
        del self._by_fd[worker.conn.fileno()]
        worker.conn.close()
        worker.bell.close()
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
        bell = self._new_bell()
        gc.freeze()  # as Airflow's LocalExecutor: the child's collector must not touch inherited pages
        try:
            return self._fork_frozen(bell)
        finally:
            gc.unfreeze()

    def _fork_frozen(self, bell: _Bell) -> _Worker:
        ours, theirs = Pipe(duplex=True)
        inherited = [w.conn for w in self.workers] + [ours]
        pid = os.fork()
        if pid == 0:
            _worker_main(theirs, bell.read_fd, inherited, self.runner, self.isolate)
        theirs.close()
        worker = _Worker(pid, ours, bell, knows_bells_up_to=self._bells)  # every bell made so far is open here
        self.workers.append(worker)
        self._by_fd[ours.fileno()] = worker
        self._poller.register(ours.fileno(), select.POLLIN)
        return worker


# -- the worker's side --------------------------------------------------------------------------------
def _worker_main(conn: Connection, bell: int, inherited: list[Connection], runner: Runner,
                 isolate: bool) -> None:
    """Never returns. Other workers' pipes are closed here, or they would never see their EOF; their
    bells stay open: this worker rings them when the executor asks (``WorkerPool.flush``)."""
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
        sleeper = select.poll()
        sleeper.register(bell, select.POLLIN)
        while True:
            try:
                # Asleep on the bell, not on the pipe: writing our message wakes nobody. The pipe is
                # checked after every ring and every second: EOF comes at end() or when the scheduler
                # process died; the parent check is for a copy of our pipe that another child of the
                # scheduler inherited and keeps open.
                while not conn.poll(0):
                    if sleeper.poll(1000):
                        with contextlib.suppress(BlockingIOError):
                            os.read(bell, 512)
                    elif os.getppid() != scheduler:
                        return
                message = conn.recv()
            except (EOFError, OSError):
                return
            for other in message[-1]:  # wake the workers the executor handed tasks to with ours
                _ring(other)
            _forget(message[1])
            if message[0] == "exit":
                return
            _, _, external_id, parts, state_dir, payload, _ = message
            record = Path(state_dir, f"{external_id}.json")
            logfile = _process.log_path(Path(state_dir), parts)
            with contextlib.suppress(OSError):  # unrecorded, it cannot be adopted; the executor still hears
                _process._write_line(record, {"key": parts, "pid": os.getpid(), "log": str(logfile),
                                              "started": time.time(), "worker": True}, append=False)
            run = _run_in_child if isolate else _run_here
            verdict = run(runner, payload, logfile)
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

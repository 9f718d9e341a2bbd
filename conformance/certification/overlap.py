"""Checks that wait on the backend at the same time: a pool of worker processes, one check each at once.

Most executors start tasks seconds away; a certification's cost is waiting, not work. Each worker
(``conformance.certification.worker``) has its own sandbox and builds its own executor instances, so
checks never share a journal, a database or a process sweep, and the verdict of each check is what it
would be alone. Workers are started before the parent's calibration (they import Airflow meanwhile) and
get the parent's calibrated time model, capabilities and seed, so that every check is judged by the same
budgets whichever process runs it.

A worker that dies while running a check ends that check FAILED (the process that hosted the executor
died: the scheduler's process would have too); one that does not answer within the check's guard is
ended, its check INCONCLUSIVE. Neither stops the other workers; what is left runs in the parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

from conformance.harness.outcomes import CheckResult, Outcome
from conformance.harness.timing import Calibration

#: a calibrated round trip at least this long means the checks mostly wait: overlap more of them
WAITING_ROUND_TRIP = 1.0
#: never more workers than this (each holds an executor, a sandbox and an interpreter)
MAX_WORKERS = 8


def auto_workers(calibration: Calibration, cpus: int, declared: int | None) -> int:
    """How many checks to run at once: one per core for an executor whose tasks finish in milliseconds
    (its checks are CPU work), more when its round trip says they mostly wait on the backend; never more
    than the executor declares it can take (``ExecutorProfile.max_overlap``)."""
    # waiting checks: enough workers that the state machine's lanes (up to 4) leave some for the others
    wanted = max(2, cpus) if calibration.round_trip < WAITING_ROUND_TRIP else max(6, 3 * cpus)
    wanted = min(wanted, MAX_WORKERS)
    return max(1, min(wanted, declared)) if declared else wanted


class Rebuild(NamedTuple):
    """What a worker process rebuilds the profile from: a dotted path, JSON kwargs, and the capabilities
    the author declared (the worker's checks get the parent's computed answers as well)."""

    path: str
    kwargs: dict[str, Any]
    capabilities: dict[str, bool]


def rebuildable(executor: Any, kwargs: dict[str, Any]) -> Rebuild | None:
    """How a worker process can rebuild ``executor``, or None when it cannot (a profile with a factory or a
    live backend object, a class defined inside a function, kwargs that are not JSON): such a profile's
    checks run one after another in the calling process."""
    if isinstance(executor, str):
        path, params, declared = executor, kwargs, {}
    else:
        cls = getattr(executor, "executor_class", None)
        made_here = getattr(executor, "factory", None) is not None or getattr(executor, "backend", None) is not None
        if cls is None or made_here or "<locals>" in cls.__qualname__:
            return None  # objects and local classes live only in this process
        path, params = f"{cls.__module__}.{cls.__qualname__}", dict(getattr(executor, "executor_kwargs", {}))
        declared = {str(k): bool(v) for k, v in (getattr(executor, "capabilities", None) or {}).items()}
    try:
        json.dumps(params)
    except (TypeError, ValueError):
        return None
    return Rebuild(path, params, declared)


@dataclass(frozen=True)
class Job:
    check_id: str
    lane: int = 0
    lanes: int = 1

    @property
    def name(self) -> str:
        return self.check_id if self.lanes == 1 else f"{self.check_id} (lane {self.lane + 1} of {self.lanes})"


class Worker:
    """One worker process and its two pipes (commands in, results out)."""

    def __init__(self, setup: dict[str, Any], log: Path):
        cmd_read, self._cmd_write = os.pipe()
        self._res_read, res_write = os.pipe()
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conformance.certification.worker", str(cmd_read), str(res_write)],
                pass_fds=(cmd_read, res_write), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        os.close(cmd_read)
        os.close(res_write)
        self.commands: IO[str] = os.fdopen(self._cmd_write, "w")
        self.results: IO[str] = os.fdopen(self._res_read, "r")
        self.root: str | None = None
        self.ready = False
        self.error = ""
        self.leftovers: list[str] = []
        self.send(setup)

    def send(self, message: dict[str, Any]) -> bool:
        try:
            self.commands.write(json.dumps(message, default=str) + "\n")
            self.commands.flush()
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False

    def receive(self, budget: float) -> dict[str, Any] | None:
        """The next message within ``budget`` seconds; ``{}`` when the worker died; None when it is silent."""
        ready, _, _ = select.select([self.results], [], [], max(0.0, budget))
        if not ready:
            return None
        line = self.results.readline()
        if not line:
            return {}
        message: dict[str, Any] = json.loads(line)
        return message

    def await_ready(self, budget: float) -> bool:
        if not self.ready and not self.error:
            message = self.receive(budget)
            if message and message.get("ready"):
                self.ready, self.root = True, str(message.get("root"))
            else:
                self.error = str((message or {}).get("error") or "the worker did not start")
        return self.ready

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, budget: float) -> None:
        """Ask the worker to end what it started and exit; past ``budget``, end its whole process group and
        whatever of its sandbox is left."""
        if self.process.poll() is None and self.send({"stop": True}):
            deadline = time.monotonic() + budget
            while time.monotonic() < deadline:
                message = self.receive(deadline - time.monotonic())
                if message is None or not message:
                    break
                if "leftovers" in message:
                    self.leftovers = [str(x) for x in message["leftovers"]]
                    break
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(max(0.1, deadline - time.monotonic()))
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.root:
            from conformance.groundtruth import processes

            processes.end_processes(processes.session_processes(self.root), 1.0)
            shutil.rmtree(self.root, ignore_errors=True)
        for channel in (self.commands, self.results):
            with contextlib.suppress(OSError):
                channel.close()


class Overlap:
    """The pool. ``start`` before calibrating; ``run`` with the calibration; ``close`` always."""

    def __init__(self, setup: dict[str, Any], logs: Path):
        self._setup = setup
        self._logs = logs
        self.workers: list[Worker] = []
        self._running: dict[int, tuple[Job, float]] = {}  # worker index -> (job, started), for progress lines
        self._lock = threading.Lock()

    def in_flight(self) -> list[str]:
        """What the workers run right now, with how long each has run (a progress line)."""
        now = time.monotonic()
        with self._lock:
            return [f"{job.name} for {now - since:.0f}s" for job, since in self._running.values()]

    @property
    def size(self) -> int:
        return len(self.workers)

    def grow(self, count: int) -> None:
        from conformance.groundtruth import processes

        self._logs.mkdir(parents=True, exist_ok=True)
        while len(self.workers) < count:
            worker = Worker(self._setup, self._logs / f"worker-{len(self.workers) + 1}.log")
            # the parent's own isolation sweeps must never end a worker (nor what it runs): its checks do
            processes.declare_environment(worker.process.pid)
            self.workers.append(worker)

    def run(self, jobs: list[Job], run: dict[str, Any], guard: Callable[[Job], float],
            on_result: Callable[[Job, CheckResult], None],
            may_start: Callable[[], bool] = lambda: True) -> list[Job]:
        """Run ``jobs`` (longest first) on the workers; ``on_result`` gets each result as it comes.
        Returns the jobs no worker could take (every worker failed to start or died, or ``may_start`` said
        no -- the run's ceiling): the caller runs them itself, or reports them not started."""
        ready = [w for w in self.workers if w.await_ready(120.0) and w.send(run)]
        todo: queue.Queue[Job] = queue.Queue()
        for job in jobs:
            todo.put(job)
        threads = [threading.Thread(target=self._serve, args=(i, w, todo, guard, on_result, may_start), daemon=True)
                   for i, w in enumerate(ready)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        left = []
        while not todo.empty():
            left.append(todo.get_nowait())
        return left

    def _serve(self, index: int, worker: Worker, todo: queue.Queue[Job], guard: Callable[[Job], float],
               on_result: Callable[[Job, CheckResult], None], may_start: Callable[[], bool]) -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            if not may_start():
                todo.put(job)  # past the ceiling: never started, the caller says so
                return
            started = time.monotonic()
            allowed = guard(job)
            answer = None
            with self._lock:
                self._running[index] = (job, started)
            try:
                if worker.send({"check_id": job.check_id, "lane": job.lane, "lanes": job.lanes}):
                    answer = worker.receive(allowed)
            finally:
                with self._lock:
                    self._running.pop(index, None)
            seconds = time.monotonic() - started
            if answer and "result" in answer:
                data = answer["result"]
                on_result(job, CheckResult(str(data["check_id"]), Outcome(data["outcome"]), str(data["message"]),
                                           float(data["seconds"]), [str(x) for x in data["leaks"]],
                                           str(data["cause"])))
                continue
            if answer is None and not may_start():  # cut at the ceiling plus its grace
                from conformance.harness.runner import CEILING_CAUSE

                worker.kill()
                on_result(job, CheckResult(job.check_id, Outcome.INCONCLUSIVE,
                                           f"[{job.check_id}] cut short: {CEILING_CAUSE}, and its grace for tearing "
                                           "down ended too; its worker process was ended and nothing was judged",
                                           seconds, cause=CEILING_CAUSE))
            elif answer is None:  # silent past the guard: a hang the check's own budgets did not bound
                worker.kill()
                on_result(job, CheckResult(job.check_id, Outcome.INCONCLUSIVE,
                                           f"[{job.check_id}] did not finish within {allowed:.0f}s, past every budget "
                                           "of its own; its worker process was ended. Last lines it wrote:\n"
                                           + worker.tail(), seconds, cause="a check did not finish"))
            else:  # the process hosting the executor died under it
                code = worker.process.wait()
                worker.kill()
                on_result(job, CheckResult(job.check_id, Outcome.FAILED,
                                           f"[{job.check_id}] the process running the executor (the scheduler's "
                                           f"process, here the suite's worker) died with exit code {code} during "
                                           "this check: an executor must never end or crash the scheduler. "
                                           "Last lines it wrote:\n" + worker.tail(), seconds,
                                           cause=f"the scheduler's process died (exit code {code})"))
            return

    def close(self, budget: float) -> list[str]:
        """Stop every worker; returns what they had to end (processes that outlived the checks)."""
        threads = [threading.Thread(target=w.stop, args=(budget,), daemon=True) for w in self.workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        shutil.rmtree(self._logs, ignore_errors=True)  # what a failure needed from them is in its message
        return [leftover for w in self.workers for leftover in w.leftovers]

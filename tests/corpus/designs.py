"""Correct executors of five designs, written directly on ``BaseExecutor`` (see the package docstring).

* ``RunsInSync``: each task runs to completion inside ``sync()``, one at a time (Airflow 2's
  SequentialExecutor design).
* ``ProcessPerTask``: a child process per task, polled in ``sync()``.
* ``PollerThread``: a child process per task, watched by a thread that hands results to ``sync()`` through a
  queue (the KubernetesExecutor's watcher design).
* ``DurableAdopting``: a process per task whose pid and verdict live in files, with an external id, so that a
  new executor instance adopts the work after a scheduler restart (the Celery / Batch design).
* ``RemoteJobs``: a remote job service -- submission in ``sync()`` (as Airflow's AWS executors submit pending
  tasks), one synchronous status call per ``sync()`` -- with a start and a report latency and a cost per call:
  ``SlowRemoteJobs`` (4 s to start, 3 s to report) and ``PolledRemoteJobs`` (a ~1 s status call).
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from airflow.executors.base_executor import BaseExecutor
from airflow.utils.state import TaskInstanceState

from reference_executors import _bridge
from tests.corpus._tasks import spawn, stop, take_workloads, verdict


class _Corpus(BaseExecutor):
    """Dispatch plumbing for both majors: 2.x ``execute_async`` (the base adds the key to ``running``), 3.3
    ``_process_workloads`` (the executor pops ``queued_tasks`` and adds to ``running`` itself)."""

    is_local = True  # tasks run on this host (the remote designs say otherwise)
    serve_logs = True
    supports_pickling = False
    supports_sentry = False

    def __init__(self, parallelism: int | None = None, **kwargs: Any):
        if parallelism is not None:
            kwargs["parallelism"] = parallelism
        super().__init__(**kwargs)

    if _bridge.IS_AIRFLOW3:
        def _process_workloads(self, workloads: Any) -> None:
            for key, workload in take_workloads(self, workloads):
                self._dispatch(key, workload)
    else:
        def execute_async(self, key: Any, command: Any, queue: str | None = None,
                          executor_config: Any = None) -> None:
            self._dispatch(key, command)

    def start(self) -> None:
        # Warm what every forked task process needs (2.x: the CLI parser; 3.x: the supervisor's imports), as
        # Airflow's own LocalExecutor does by forking from a warmed parent.
        _bridge.prepare_parent()

    def _dispatch(self, key: Any, payload: Any) -> None:
        raise NotImplementedError

    def _finish(self, key: Any, state: TaskInstanceState | None, info: Any = None, *, more_runs: bool = False) -> None:
        """Report a run's end; a key queued again whose next run is still in flight stays in ``running``."""
        state = state or TaskInstanceState.FAILED
        if more_runs:
            self.change_state(key, state, info, remove_running=False)
        elif state == TaskInstanceState.SUCCESS:
            self.success(key, info)
        else:
            self.fail(key, info)


class RunsInSync(_Corpus):
    """One task at a time, run to completion inside ``sync()``: a heartbeat finishes what it dispatched."""

    is_single_threaded = True

    def __init__(self, parallelism: int | None = None, **kwargs: Any):
        super().__init__(parallelism, **kwargs)
        self._pending: list[tuple[Any, Any]] = []

    def _dispatch(self, key: Any, payload: Any) -> None:
        self._pending.append((key, payload))

    def sync(self) -> None:
        while self._pending:
            key, payload = self._pending.pop(0)
            process = spawn(payload)
            process.join()
            self._finish(key, verdict(process), more_runs=any(k == key for k, _ in self._pending))

    def end(self) -> None:
        self.sync()

    def terminate(self) -> None:
        self._pending.clear()


class ProcessPerTask(_Corpus):
    """A child process per task; ``sync()`` reports those that exited."""

    def __init__(self, parallelism: int | None = None, **kwargs: Any):
        super().__init__(parallelism, **kwargs)
        self._procs: list[tuple[Any, Any]] = []

    def _dispatch(self, key: Any, payload: Any) -> None:
        self._procs.append((key, spawn(payload)))

    def sync(self) -> None:
        for key, process in list(self._procs):
            state = verdict(process)
            if state is not None:
                self._procs.remove((key, process))
                self._finish(key, state, more_runs=any(k == key for k, _ in self._procs))

    def end(self) -> None:
        for _, process in self._procs:
            process.join()
        self.sync()

    def terminate(self) -> None:
        stop(p for _, p in self._procs)
        self.sync()


class PollerThread(_Corpus):
    """A watcher thread polls the task processes and queues results; ``sync()`` reports them. The buffer is
    only touched from the scheduler's thread (``BaseExecutor`` is not thread-safe)."""

    POLL_SECONDS = 0.3

    def __init__(self, parallelism: int | None = None, **kwargs: Any):
        super().__init__(parallelism, **kwargs)
        self._lock = threading.Lock()
        self._watched: list[tuple[Any, Any]] = []
        self._results: queue.Queue[tuple[Any, Any, TaskInstanceState]] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self._thread = threading.Thread(target=self._watch, name="corpus-poller", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self.POLL_SECONDS):  # a poll interval: the design under test
            self._poll_once()

    def _poll_once(self) -> None:
        with self._lock:
            for key, process in list(self._watched):
                state = verdict(process)
                if state is not None:
                    self._watched.remove((key, process))
                    self._results.put((key, process, state))

    def _dispatch(self, key: Any, payload: Any) -> None:
        with self._lock:
            self._watched.append((key, spawn(payload)))

    def sync(self) -> None:
        while True:
            try:
                key, _, state = self._results.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                more = any(k == key for k, _ in self._watched)
            self._finish(key, state, more_runs=more or self._queued_result_for(key))

    def _queued_result_for(self, key: Any) -> bool:
        return any(item[0] == key for item in list(self._results.queue))

    def end(self) -> None:
        with self._lock:
            processes = [p for _, p in self._watched]
        for process in processes:
            process.join()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self._poll_once()
        self.sync()

    def terminate(self) -> None:
        with self._lock:
            processes = [p for _, p in self._watched]
        stop(processes)
        self.end()


def _durable_dir() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or tempfile.gettempdir()) / "corpus-durable"


def _pid_alive(pid: int) -> bool:
    """A zombie (exited, not yet reaped by its parent) is not alive."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class DurableAdopting(_Corpus):
    """A process per task, known by an external id whose pid and verdict are files: after a scheduler
    restart, a new instance adopts every TI whose external id it can still find."""

    def __init__(self, parallelism: int | None = None, state_dir: str | None = None, **kwargs: Any):
        super().__init__(parallelism, **kwargs)
        self.state_dir = Path(state_dir) if state_dir else _durable_dir()
        self._jobs: dict[str, tuple[Any, Any]] = {}  # external id -> (key, process or None when adopted)

    def start(self) -> None:
        super().start()
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def _dispatch(self, key: Any, payload: Any) -> None:
        external_id = uuid.uuid4().hex
        process = spawn(payload, marker=str(self.state_dir / f"{external_id}.rc"))
        (self.state_dir / f"{external_id}.pid").write_text(str(process.pid))
        self._jobs[external_id] = (key, process)
        _bridge.report_running(self, key, external_id)

    def _outcome(self, external_id: str, process: Any) -> TaskInstanceState | None:
        marker = self.state_dir / f"{external_id}.rc"
        if marker.exists():
            return TaskInstanceState.SUCCESS if marker.read_text().strip() == "0" else TaskInstanceState.FAILED
        if process is not None:
            return TaskInstanceState.FAILED if process.exitcode is not None else None
        pid_file = self.state_dir / f"{external_id}.pid"
        with contextlib.suppress(OSError, ValueError):
            if _pid_alive(int(pid_file.read_text())):
                return None
        return TaskInstanceState.FAILED if not marker.exists() else None

    def sync(self) -> None:
        for external_id, (key, process) in list(self._jobs.items()):
            state = self._outcome(external_id, process)
            if state is None:
                continue
            del self._jobs[external_id]
            more = any(k == key for k, _ in self._jobs.values())
            self._finish(key, state, external_id, more_runs=more)
            for suffix in (".rc", ".pid"):
                with contextlib.suppress(OSError):
                    (self.state_dir / f"{external_id}{suffix}").unlink()

    def try_adopt_task_instances(self, tis: Any) -> list[Any]:
        not_adopted = []
        for ti in tis:
            external_id = getattr(ti, "external_executor_id", None)
            if external_id and (self.state_dir / f"{external_id}.pid").exists():
                self._jobs[external_id] = (ti.key, None)
                self.running.add(ti.key)
            else:
                not_adopted.append(ti)
        return not_adopted

    def end(self) -> None:
        """Waits for the work this instance started; adopted work is left for the next scheduler."""
        for _, process in list(self._jobs.values()):
            if process is not None:
                process.join()
        self.sync()

    def terminate(self) -> None:
        stop(p for _, p in self._jobs.values() if p is not None)
        self.sync()


class JobService:
    """A stand-in for a remote job service, with its own thread: a job starts ``start_latency`` after it was
    submitted, its status says it ended ``report_latency`` after its process did, and every call costs
    ``call_latency`` (the network round trip, simulated by sleeping: it *is* the backend's cost)."""

    TICK = 0.05

    def __init__(self, start_latency: float, report_latency: float, call_latency: float):
        self.start_latency, self.report_latency, self.call_latency = start_latency, report_latency, call_latency
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="corpus-job-service", daemon=True)
        self._thread.start()

    def _call(self) -> None:
        time.sleep(self.call_latency)  # the backend's round trip: the cost being simulated

    def submit(self, payloads: list[Any]) -> list[str]:
        self._call()
        ids = []
        with self._lock:
            for payload in payloads:
                job_id = uuid.uuid4().hex[:12]
                self._jobs[job_id] = {"payload": payload, "due": time.monotonic() + self.start_latency,
                                      "process": None, "ended": None, "state": None}
                ids.append(job_id)
        return ids

    def status(self, job_ids: list[str]) -> dict[str, TaskInstanceState | None]:
        self._call()
        now = time.monotonic()
        with self._lock:
            return {job_id: (job["state"] if job["ended"] is not None and now - job["ended"] >= self.report_latency
                             else None) for job_id in job_ids if (job := self._jobs.get(job_id))}

    def forget(self, job_ids: list[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._jobs.pop(job_id, None)

    def _run(self) -> None:
        while not self._closing.wait(self.TICK):  # the service's own clock
            now = time.monotonic()
            with self._lock:
                for job in self._jobs.values():
                    if job["process"] is None and now >= job["due"]:
                        job["process"] = spawn(job["payload"])
                    elif job["process"] is not None and job["ended"] is None:
                        state = verdict(job["process"])
                        if state is not None:
                            job["ended"], job["state"] = now, state

    def outstanding(self) -> int:
        with self._lock:
            return sum(1 for job in self._jobs.values() if job["ended"] is None)

    def close(self, kill: bool) -> None:
        with self._lock:
            processes = [job["process"] for job in self._jobs.values() if job["process"] is not None]
        if kill:
            stop(processes)
        self._closing.set()
        self._thread.join()


class RemoteJobs(_Corpus):
    """Hands work to a remote job service in ``sync()`` and polls it there, synchronously, once per sync."""

    is_local = False  # the service runs the tasks (here it stands in for another host)
    serve_logs = False

    START_LATENCY = 0.5
    REPORT_LATENCY = 0.5
    CALL_LATENCY = 0.1

    def __init__(self, parallelism: int | None = None, start_latency: float | None = None,
                 report_latency: float | None = None, call_latency: float | None = None, **kwargs: Any):
        super().__init__(parallelism, **kwargs)
        self._latencies = (self.START_LATENCY if start_latency is None else float(start_latency),
                           self.REPORT_LATENCY if report_latency is None else float(report_latency),
                           self.CALL_LATENCY if call_latency is None else float(call_latency))
        self._service: JobService | None = None
        self._pending: list[tuple[Any, Any]] = []
        self._jobs: dict[str, Any] = {}  # job id -> key

    def start(self) -> None:
        super().start()
        self._service = JobService(*self._latencies)

    def _dispatch(self, key: Any, payload: Any) -> None:
        self._pending.append((key, payload))

    def sync(self) -> None:
        assert self._service is not None, "start() first"
        if self._pending:
            batch, self._pending = self._pending, []
            for job_id, (key, _) in zip(self._service.submit([p for _, p in batch]), batch):
                self._jobs[job_id] = key
        if not self._jobs:
            return
        finished = {job_id: state for job_id, state in self._service.status(list(self._jobs)).items()
                    if state is not None}
        for job_id, state in finished.items():
            key = self._jobs.pop(job_id)
            self._finish(key, state, job_id, more_runs=key in self._jobs.values())
        self._service.forget(list(finished))

    def end(self) -> None:
        waiter = threading.Event()
        while self._jobs or self._pending:
            self.sync()
            waiter.wait(0.1)  # between status calls: the service answers when its jobs end
        if self._service is not None:
            self._service.close(kill=False)

    def terminate(self) -> None:
        if self._service is not None:
            self._service.close(kill=True)
        for job_id, key in list(self._jobs.items()):
            self.fail(key, job_id)
        self._jobs.clear()


class SlowRemoteJobs(RemoteJobs):
    """A slow backend: 4 s to start a task, 3 s to report its end."""

    START_LATENCY = 4.0
    REPORT_LATENCY = 3.0
    CALL_LATENCY = 0.1


class PolledRemoteJobs(RemoteJobs):
    """A remote service whose every (synchronous) status call takes about a second."""

    START_LATENCY = 0.5
    REPORT_LATENCY = 0.3
    CALL_LATENCY = 1.0


#: name -> executor class; the quick ones first
CORPUS: dict[str, type[BaseExecutor]] = {
    "RunsInSync": RunsInSync,
    "ProcessPerTask": ProcessPerTask,
    "PollerThread": PollerThread,
    "DurableAdopting": DurableAdopting,
    "PolledRemoteJobs": PolledRemoteJobs,
    "SlowRemoteJobs": SlowRemoteJobs,
}


def airflow_own_correct_executors() -> dict[str, str]:
    """Airflow's own executors that are correct on the installed Airflow, by dotted path: 2.x's
    SequentialExecutor (gone in 3.x)."""
    if _bridge.IS_AIRFLOW3:
        return {}
    return {"airflow.SequentialExecutor": "airflow.executors.sequential_executor.SequentialExecutor"}

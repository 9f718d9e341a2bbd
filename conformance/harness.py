"""SchedulerHarness: drive an executor the way Airflow's scheduler does, and record everything.

The scheduler's order of calls (AIRFLOW-CONTRACT-NOTES §2.0): set ``job_id``/``callback_sink``,
``start()``, then per loop ``queue_*`` for newly queued TIs, ``heartbeat()``, ``get_event_buffer()``;
``try_adopt_task_instances`` at start-up and periodically; ``revoke_task`` for stuck TIs; ``end()`` on
exit. The harness offers exactly those moves, each one guarded by a time budget -- an executor call
that blocks past it becomes a ``CallTimedOut`` naming the call -- and writes every call and every
event into a transcript that failing checks print.

Waiting is always for a condition with a deadline (``drain``/``wait_for``), never a bare sleep.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from conformance import airflow_compat as compat
from conformance import probes
from conformance.journal import Journal, ProbeRun
from conformance.probes import Probe, ProbeKind
from conformance.sandbox import Sandbox

DEFAULT_DAG = "conformance_dag"
#: How often ``drain`` heartbeats. The real scheduler loops about once a second; faster keeps the
#: suite quick while still giving the executor one ``sync`` per heartbeat.
HEARTBEAT_CADENCE = 0.02


class CallTimedOut(Exception):
    """An executor call blocked past its time budget."""


class DeadlineExceeded(AssertionError):
    """A condition the harness waited for did not hold before its deadline."""


@dataclass(frozen=True)
class Budgets:
    """Time budgets (seconds) for executor calls; generous, because a breach is a failure."""

    call: float = 10.0
    heartbeat: float = 10.0
    end: float = 30.0
    terminate: float = 15.0
    #: How long to wait for something a correct executor does within milliseconds (a task starting,
    #: an event arriving). Negative-control tests shorten it; a breach is always a failure.
    wait: float = 10.0


class _Watchdog:
    """Interrupts the main thread when a guarded call overruns, with a dedicated real-time signal.

    A real signal (not ``interrupt_main``) is needed so that a call blocked in ``waitpid``/``join``/
    ``read`` is woken up. SIGALRM is left alone: pytest-timeout uses it as the outer safety net.
    """

    SIGNAL = signal.SIGRTMIN + 7 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR1

    def __init__(self) -> None:
        self._label: str | None = None
        self._lock = threading.Lock()
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        label = self._label
        if label is not None:
            self._label = None
            raise CallTimedOut(label)

    @contextlib.contextmanager
    def guard(self, label: str, seconds: float) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be handled in the main thread; pytest-timeout still applies
            return
        if not self._installed:
            signal.signal(self.SIGNAL, self._handler)
            self._installed = True
        main_ident = threading.main_thread().ident
        token = object()
        state = {"token": token}

        def fire() -> None:
            with self._lock:
                if state.get("token") is token and self._label is not None and main_ident is not None:
                    signal.pthread_kill(main_ident, self.SIGNAL)

        with self._lock:
            self._label = label
        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            with self._lock:
                self._label = None
                state.clear()
            timer.cancel()


_WATCHDOG = _Watchdog()


@dataclass
class QueuedTask:
    """A task the harness queued: its probe, its TaskInstance/workload, and when it was queued."""

    probe: Probe
    handle: compat.TaskHandle
    queued_at: float

    @property
    def key(self) -> Any:
        return self.handle.key

    @property
    def ti(self) -> Any:
        return self.handle.ti

    @property
    def task_id(self) -> str:
        return self.handle.task_id

    def describe(self) -> str:
        return f"{self.task_id} ({self.probe.describe()}, priority {self.handle.priority})"


@dataclass(frozen=True)
class Event:
    at: float
    key: Any
    value: Any

    @property
    def state(self) -> Any:
        return self.value[0] if isinstance(self.value, tuple) and self.value else self.value

    @property
    def info(self) -> Any:
        return self.value[1] if isinstance(self.value, tuple) and len(self.value) > 1 else None


@dataclass
class SchedulerHarness:
    executor: Any
    sandbox: Sandbox
    name: str = "A"
    job_id: int = 1
    budgets: Budgets = field(default_factory=Budgets)
    transcript: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    tasks: dict[Any, QueuedTask] = field(default_factory=dict)
    started: bool = False
    ended: bool = False
    _t0: float = field(default_factory=time.monotonic)

    # -- recording -----------------------------------------------------------------------------
    def note(self, text: str) -> None:
        self.transcript.append(f"+{time.monotonic() - self._t0:7.3f}s {self.name}: {text}")

    def call(self, label: str, fn: Callable[..., Any], *args: Any, budget: float | None = None,
             **kwargs: Any) -> Any:
        """Call into the executor under a time budget, recording the call and its outcome."""
        limit = self.budgets.call if budget is None else budget
        started = time.monotonic()
        try:
            with _WATCHDOG.guard(f"{self.name}.{label}", limit):
                result = fn(*args, **kwargs)
        except CallTimedOut:
            self.note(f"{label} BLOCKED for more than {limit:.1f}s (budget)")
            raise CallTimedOut(
                f"executor call {type(self.executor).__name__}.{label} did not return within {limit:.1f}s"
            ) from None
        except BaseException as exc:
            self.note(f"{label} raised {type(exc).__name__}: {exc}")
            raise
        took = (time.monotonic() - started) * 1000
        shown = "" if result is None else f" -> {_short(result)}"
        self.note(f"{label}{shown} ({took:.0f} ms)")
        return result

    # -- the scheduler's moves -----------------------------------------------------------------
    def start(self) -> SchedulerHarness:
        self.executor.job_id = self.job_id
        self.call("start()", self.executor.start)
        self.started = True
        return self

    def make(self, probe: Probe | None = None, *, priority: int = 1, dag_id: str = DEFAULT_DAG,
             try_number: int = 1) -> QueuedTask:
        """Build (but do not queue) a task carrying ``probe``."""
        probe = probe or Probe.new(ProbeKind.OK)
        handle = compat.make_task(dag_id, probe.task_id, try_number=try_number, priority=priority)
        return QueuedTask(probe=probe, handle=handle, queued_at=0.0)

    def queue(self, probe: Probe | None = None, *, priority: int = 1, dag_id: str = DEFAULT_DAG,
              try_number: int = 1) -> QueuedTask:
        return self.queue_task(self.make(probe, priority=priority, dag_id=dag_id, try_number=try_number))

    def queue_task(self, task: QueuedTask) -> QueuedTask:
        task.queued_at = time.monotonic()
        self.call(f"queue({task.describe()})", compat.queue_task, self.executor, task.handle)
        self.tasks[task.key] = task
        return task

    def heartbeat(self) -> None:
        self.call("heartbeat()", self.executor.heartbeat, budget=self.budgets.heartbeat)

    def collect(self, dag_ids: Sequence[str] | None = None) -> dict[Any, Any]:
        if dag_ids is None:
            buffer = self.call("get_event_buffer()", self.executor.get_event_buffer)
        else:
            buffer = self.call(f"get_event_buffer({list(dag_ids)})", self.executor.get_event_buffer,
                               list(dag_ids))
        now = time.monotonic()
        for key, value in dict(buffer).items():
            self.events.append(Event(now, key, value))
            self.note(f"event {_key_text(key)} -> {_short(value)}")
        return dict(buffer)

    def drain(self, until: Callable[[], bool], what: str, deadline: float | None = None,
              heartbeat: bool = True) -> None:
        """Heartbeat and collect events at the scheduler's cadence until ``until()`` or the deadline."""
        deadline = self.budgets.wait if deadline is None else deadline
        limit = time.monotonic() + deadline
        waiter = threading.Event()
        while True:
            if heartbeat:
                self.heartbeat()
            self.collect()
            if until():
                return
            if time.monotonic() > limit:
                raise DeadlineExceeded(f"waited {deadline:.1f}s for {what}, it did not happen")
            waiter.wait(HEARTBEAT_CADENCE)

    def observe(self, condition: Callable[[], bool], window: float) -> bool:
        """Heartbeat through an observation window: True as soon as ``condition`` holds, False if it
        never did. For things a correct executor must NOT do (e.g. start a duplicate), where the
        window is the chance a broken one gets to show itself."""
        try:
            self.drain(condition, "an observation window", deadline=window)
        except DeadlineExceeded:
            return False
        return True

    def drain_terminal(self, tasks: Sequence[QueuedTask], deadline: float | None = None) -> None:
        keys = [t.key for t in tasks]
        self.drain(lambda: all(self.terminal_events(k) for k in keys),
                   f"terminal events for {[t.task_id for t in tasks]}", deadline)

    def wait_for(self, until: Callable[[], bool], what: str, deadline: float | None = None) -> None:
        """Wait for a condition outside the executor (e.g. in the journal), without heartbeating."""
        deadline = self.budgets.wait if deadline is None else deadline
        limit = time.monotonic() + deadline
        waiter = threading.Event()
        while not until():
            if time.monotonic() > limit:
                raise DeadlineExceeded(f"waited {deadline:.1f}s for {what}, it did not happen")
            waiter.wait(0.01)

    def adopt(self, tis: Sequence[Any]) -> list[Any]:
        result = self.call(f"try_adopt_task_instances({len(tis)} TIs)",
                           self.executor.try_adopt_task_instances, list(tis))
        return list(result)

    def stuck(self, tis: Sequence[Any]) -> list[str]:
        return list(self.call(f"stuck-in-queued handling of {len(tis)} TIs", compat.handle_stuck,
                              self.executor, list(tis)))

    def end(self) -> None:
        self.call("end()", self.executor.end, budget=self.budgets.end)
        self.ended = True
        self.collect()

    def terminate(self) -> None:
        self.call("terminate()", self.executor.terminate, budget=self.budgets.terminate)

    # -- views -----------------------------------------------------------------------------------
    def journal(self) -> Journal:
        return self.sandbox.journal()

    def events_for(self, key: Any) -> list[Event]:
        return [e for e in self.events if e.key == key]

    def terminal_events(self, key: Any) -> list[Event]:
        terminal = compat.terminal_states()
        return [e for e in self.events_for(key) if e.state in terminal]

    def runs(self, task: QueuedTask) -> list[ProbeRun]:
        return self.journal().runs_of(task.task_id)

    def release(self, task: QueuedTask) -> None:
        probes.release(self.sandbox.journal_dir, task.probe)
        self.note(f"released {task.task_id}")

    def format_transcript(self, last: int = 60) -> str:
        lines = self.transcript[-last:]
        skipped = len(self.transcript) - len(lines)
        head = [f"  ... {skipped} earlier lines"] if skipped else []
        return "\n".join(head + ["  " + line for line in lines])

    # -- teardown --------------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Stop everything this harness started; return problems found (for the caller to report)."""
        problems: list[str] = []
        for task in self.tasks.values():
            probes.release(self.sandbox.journal_dir, task.probe)
        if self.started and not self.ended:
            try:
                self.end()
            except CallTimedOut as exc:
                problems.append(f"teardown: {exc}")
                with contextlib.suppress(Exception):
                    self.terminate()
            except Exception as exc:
                problems.append(f"teardown: end() raised {type(exc).__name__}: {exc}")
        return problems


def _key_text(key: Any) -> str:
    task_id = getattr(key, "task_id", None)
    if task_id is None:
        return repr(key)
    return f"{task_id}#try{getattr(key, 'try_number', '?')}"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

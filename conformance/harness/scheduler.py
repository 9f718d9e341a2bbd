"""SchedulerHarness: drive an executor the way Airflow's scheduler does, and record everything.

The scheduler's order of calls (docs/CONTRACT.md §1): set ``job_id``/``callback_sink``,
``start()``, then per loop ``queue_*`` for newly queued TIs, ``heartbeat()``, ``get_event_buffer()``;
``try_adopt_task_instances`` at start-up and periodically; ``revoke_task`` for stuck TIs; ``end()`` on
exit. The harness offers exactly those moves, each one guarded by a time budget -- an executor call
that blocks past it becomes a ``CallTimedOut`` naming the call -- and writes every call and every
event into a transcript that failing checks print.

Waiting is always for a condition with a budget from the time model (``drain``/``wait_for``), never a
bare sleep; a wait that runs out is judged by evidence (``judge_timeout``): failed, or inconclusive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.groundtruth import probes
from conformance.groundtruth.journal import Journal, ProbeRun
from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness import airflow_compat as compat
from conformance.harness.outcomes import Inconclusive, describe_exception
from conformance.harness.timing import SLOWDOWN_THRESHOLD, TimeModel, WaitTimedOut, machine_pace, wait_until

DEFAULT_DAG = "conformance_dag"
DEFAULT_RUN = "conformance_run"
#: How often ``drain`` heartbeats. The real scheduler loops about once a second; faster keeps the
#: suite quick while still giving the executor one ``sync`` per heartbeat.
HEARTBEAT_CADENCE = 0.02


class CallTimedOut(Exception):
    """An executor call blocked past its time budget."""

    def __init__(self, message: str, label: str = ""):
        super().__init__(message)
        self.label = label  # e.g. "MyExecutor.heartbeat()"


class _Watchdog:
    """Interrupts the main thread when a guarded call overruns, with a dedicated real-time signal.

    A real signal (not ``interrupt_main``) is needed so that a call blocked in ``waitpid``/``join``/
    ``read`` is woken up. SIGALRM is left alone: pytest-timeout uses it as the outer safety net.
    One long-lived thread watches the armed deadline: a thread per call cost milliseconds each on a busy
    machine (``Thread.start`` waits until the new thread runs), which the harness charged to the executor.
    """

    SIGNAL = signal.SIGRTMIN + 7 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR1

    def __init__(self) -> None:
        self._label: str | None = None
        self._deadline: float | None = None  # monotonic; None while no call is guarded
        self._waiting_until = float("inf")  # what the watching thread sleeps towards
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._owner_pid = 0
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        label = self._label
        if label is not None:
            self._label = None
            raise CallTimedOut(label)

    def _watch(self, main_ident: int) -> None:
        with self._cond:
            while True:
                deadline = self._deadline
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self._deadline = None
                    if self._label is not None:
                        signal.pthread_kill(main_ident, self.SIGNAL)
                    continue
                self._waiting_until = deadline if deadline is not None else float("inf")
                self._cond.wait(None if deadline is None else deadline - now)

    def _ensure_thread(self) -> None:
        # a forked child inherits the object but not the thread
        if self._thread is None or self._owner_pid != os.getpid():
            main_ident = threading.main_thread().ident
            assert main_ident is not None
            self._cond = threading.Condition()
            self._thread = threading.Thread(target=self._watch, args=(main_ident,), name="conformance-watchdog",
                                            daemon=True)
            self._owner_pid = os.getpid()
            self._thread.start()

    @contextlib.contextmanager
    def guard(self, label: str, seconds: float) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be handled in the main thread; pytest-timeout still applies
            return
        if not self._installed:
            signal.signal(self.SIGNAL, self._handler)
            self._installed = True
        self._ensure_thread()
        deadline = time.monotonic() + seconds
        with self._cond:
            self._label = label
            self._deadline = deadline
            if deadline < self._waiting_until:
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._label = None
                self._deadline = None  # the thread wakes at the old deadline, finds nothing armed


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Executor calls run with their working directory in the sandbox: whatever the executor (or a
    worker it forks now) writes to relative paths lands there, never in the user's folder."""
    try:
        previous = os.getcwd()
    except OSError:
        previous = None
    try:
        os.chdir(path)
    except OSError:
        yield  # the sandbox is gone (teardown): the call runs where it is
        return
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(OSError):
                os.chdir(previous)


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
class _Line:
    """One transcript line; identical consecutive calls collapse into one line with a count."""

    first: float
    last: float
    text: str
    count: int = 1

    def render(self) -> str:
        if self.count == 1:
            return f"+{self.first:7.3f}s {self.text}"
        return f"+{self.first:7.3f}s {self.text}  [x{self.count} until +{self.last:.3f}s]"


#: a heartbeat or empty poll: collapsed in the transcript when repeated
_TIMING_SUFFIX = " ms)"


def _without_timing(line: str) -> str:
    """A transcript line without its call duration: two polls that differ only in it are the same call."""
    return line.rsplit(" (", 1)[0] if line.endswith(_TIMING_SUFFIX) else line


@dataclass
class SchedulerHarness:
    executor: Any
    sandbox: Sandbox
    name: str = "A"
    job_id: int = 1
    time_model: TimeModel = field(default_factory=TimeModel)
    owner: str = ""  # the check that queued this harness's probes (for leak reports)
    transcript: list[_Line] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: the same events by key: checks ask "events of this key" in every poll of every wait
    _events_by_key: dict[Any, list[Event]] = field(default_factory=dict)
    tasks: dict[Any, QueuedTask] = field(default_factory=dict)
    started: bool = False
    ended: bool = False
    abandoned: bool = False
    _t0: float = field(default_factory=time.monotonic)

    # -- recording -----------------------------------------------------------------------------
    def note(self, text: str) -> None:
        now = time.monotonic() - self._t0
        line = f"{self.name}: {text}"
        last = self.transcript[-1] if self.transcript else None
        if last is not None and _without_timing(last.text) == _without_timing(line):
            last.count += 1
            last.last = now
            return
        self.transcript.append(_Line(now, now, line))

    def budget(self, kind: str) -> float:
        return self.time_model.budget(kind)

    def call(self, label: str, fn: Callable[..., Any], *args: Any, budget: float | None = None,
             **kwargs: Any) -> Any:
        """Call into the executor under a time budget, recording the call and its outcome."""
        limit = self.budget("call") if budget is None else budget
        started = time.monotonic()
        try:
            with _WATCHDOG.guard(f"{self.name}.{label}", limit), _working_directory(self.sandbox.workdir):
                result = fn(*args, **kwargs)
        except CallTimedOut:
            self.note(f"{label} BLOCKED for more than {limit:.1f}s (budget)")
            call = f"{type(self.executor).__name__}.{label}"
            raise CallTimedOut(f"executor call {call} did not return within {limit:.1f}s", call) from None
        except BaseException as exc:
            self.note(f"{label} raised {type(exc).__name__}: {exc}")
            raise
        took = (time.monotonic() - started) * 1000
        shown = "" if result is None else f" -> {_short(result)}"
        self.note(f"{label}{shown} ({took:.0f} ms)")
        return result

    # -- the scheduler's moves -----------------------------------------------------------------
    def __post_init__(self) -> None:
        # A held probe ends itself after its lifetime (a safety net when nothing releases it). That lifetime
        # must outlast every budget that judges held work, or a no-op terminate() passes on a slow machine.
        probes.set_lifetime(self.sandbox.journal_dir, probes.lifetime_for(self.time_model))

    def start(self) -> SchedulerHarness:
        self.executor.job_id = self.job_id
        self.call("start()", self.executor.start)
        self.started = True
        return self

    def make(self, probe: Probe | None = None, *, priority: int = 1, dag_id: str = DEFAULT_DAG,
             try_number: int = 1, queue: str = "default", run_id: str = DEFAULT_RUN, map_index: int = -1,
             executor_config: dict[str, Any] | None = None) -> QueuedTask:
        """Build (but do not queue) a task carrying ``probe``: any key shape the scheduler produces
        (mapped or not, any try, any dag and run id it accepts), on any queue, with an executor_config."""
        probe = probe or Probe.new(ProbeKind.OK)
        handle = compat.make_task(dag_id, probe.task_id, run_id, try_number=try_number, priority=priority,
                                  queue=queue, map_index=map_index, executor_config=executor_config)
        return QueuedTask(probe=probe, handle=handle, queued_at=0.0)

    def queue(self, probe: Probe | None = None, *, priority: int = 1, dag_id: str = DEFAULT_DAG,
              try_number: int = 1, queue: str = "default", run_id: str = DEFAULT_RUN, map_index: int = -1,
              executor_config: dict[str, Any] | None = None) -> QueuedTask:
        return self.queue_task(self.make(probe, priority=priority, dag_id=dag_id, try_number=try_number,
                                         queue=queue, run_id=run_id, map_index=map_index,
                                         executor_config=executor_config))

    def queue_task(self, task: QueuedTask) -> QueuedTask:
        task.queued_at = time.monotonic()
        self.sandbox.claim(task.task_id, self.owner)
        with self.sandbox.db_session() as session:  # the scheduler always passes its session (3.x)
            self.call(f"queue({task.describe()})", compat.queue_task, self.executor, task.handle, session)
        self.tasks[task.key] = task
        return task

    def heartbeat(self) -> None:
        self.call("heartbeat()", self.executor.heartbeat, budget=self.budget("heartbeat"))

    def collect(self, dag_ids: Sequence[str] | None = None) -> dict[Any, Any]:
        if dag_ids is None:
            buffer = self.call("get_event_buffer()", self.executor.get_event_buffer)
        else:
            buffer = self.call(f"get_event_buffer({list(dag_ids)})", self.executor.get_event_buffer,
                               list(dag_ids))
        now = time.monotonic()
        terminal = compat.terminal_states()
        for key, value in dict(buffer).items():
            event = Event(now, key, value)
            if key in self.tasks and event.state in terminal:
                self.sandbox.mark_settled(self.tasks[key].task_id)
            self.events.append(event)
            self._events_by_key.setdefault(key, []).append(event)
            self.note(f"event {_key_text(key)} -> {_short(value)}")
        return dict(buffer)

    def drain(self, until: Callable[[], bool], what: str, deadline: float | None = None,
              heartbeat: bool = True, tasks: Sequence[QueuedTask] = (), awaiting: str = "") -> None:
        """Heartbeat and collect events at the scheduler's cadence until ``until()`` holds.

        Past the budget (the time model's ``event`` budget unless ``deadline`` is given) the verdict
        depends on evidence (``tasks``): see ``judge_timeout``."""
        budget = self.budget("event") if deadline is None else deadline
        since = time.monotonic()

        def loop() -> None:
            if heartbeat:
                self.heartbeat()
            self.collect()

        try:
            wait_until(until, what, budget, poll=HEARTBEAT_CADENCE, each=loop, explain=lambda: self.snapshot(tasks),
                       judged=True)
        except WaitTimedOut as exc:
            if tasks:
                self.judge_timeout(exc, tasks, since, awaiting or "terminal")
            raise

    def observe(self, condition: Callable[[], bool], window: float | None = None) -> bool:
        """Heartbeat through an observation window: True as soon as ``condition`` holds, False if it
        never did. For things a correct executor must NOT do (e.g. start a duplicate), where the
        window is the chance a broken one gets to show itself (the time model's ``window``)."""
        try:
            self.drain(condition, "an observation window", deadline=self.budget("window") if window is None
                       else max(window, self.budget("window")))
        except WaitTimedOut:
            return False
        return True

    def drain_terminal(self, tasks: Sequence[QueuedTask], deadline: float | None = None) -> None:
        keys = [t.key for t in tasks]
        self.drain(lambda: all(self.terminal_events(k) for k in keys),
                   f"terminal events for {[t.task_id for t in tasks]}", deadline, tasks=tasks, awaiting="terminal")

    def wait_started(self, tasks: Sequence[QueuedTask], deadline: float | None = None) -> None:
        """Heartbeat until every task's probe has started (journal)."""
        ids = [t.task_id for t in tasks]
        self.drain(lambda: all(self.journal().started(i) for i in ids), f"probes {ids} to start", deadline,
                   tasks=tasks, awaiting="start")

    def wait_for(self, until: Callable[[], bool], what: str, deadline: float | None = None,
                 tasks: Sequence[QueuedTask] = ()) -> None:
        """Wait for a condition outside the executor (e.g. in the journal), without heartbeating."""
        wait_until(until, what, self.budget("event") if deadline is None else deadline,
                   explain=lambda: self.snapshot(tasks), judged=True)

    # -- evidence --------------------------------------------------------------------------------
    def snapshot(self, tasks: Sequence[QueuedTask] = ()) -> str:
        """The state that explains a timeout: the executor's own bookkeeping and, per probe, what the
        journal says happened to it and which events came back."""
        ex = self.executor
        lines = ["State when the budget ran out:"]
        for label, attr in (("queued_tasks", "queued_tasks"), ("running", "running"),
                            ("event_buffer", "event_buffer")):
            value = getattr(ex, attr, None)
            try:
                keys = [_key_text(k) for k in list(value or ())]
            except Exception as exc:  # a broken attribute is itself evidence
                keys = [f"<unreadable: {type(exc).__name__}: {exc}>"]
            lines.append(f"  executor.{label}: {keys if keys else 'empty'}")
        journal = self.journal()
        now = time.monotonic()
        for task in tasks or list(self.tasks.values()):
            runs = journal.runs_of(task.task_id)
            done = [r for r in runs if r.finished is not None]
            events = [str(e.state) for e in self.events_for(task.key)]
            ended = f", last ended {now - max(r.finished for r in done if r.finished):.1f}s ago" if done else ""
            lines.append(f"  {task.task_id}: queued {now - task.queued_at:.1f}s ago, started {len(runs)}x, "
                         f"finished {len(done)}x{ended}; events {events or 'none'}")
        return "\n".join(lines)

    def judge_timeout(self, exc: WaitTimedOut, tasks: Sequence[QueuedTask], since: float, awaiting: str) -> None:
        """Turn a wait that ran out of budget into a verdict, from evidence (Jepsen's checkers).

        Decisive -- the timeout stands as a failure: a task's work finished more than the ``report``
        budget ago and no terminal event came, or nothing at all happened (no start, no end, no event)
        in the second half of the wait. Otherwise the backend is visibly progressing, only slowly:
        ``Inconclusive``, with the evidence and how to re-run."""
        now = time.monotonic()
        journal = self.journal()
        lost = [f"{task_id} finished {ago:.1f}s ago" for task_id, ago in self.ended_unreported(tasks).items()] \
            if awaiting == "terminal" else []
        if lost:
            raise WaitTimedOut(f"{exc}\nDecisive: the work ended long before the budget ran out and no terminal "
                               f"event came: {', '.join(lost)}", what=exc.what, budget=exc.budget,
                               cause="tasks finished but no terminal event came back for them (success()/fail() "
                                     "is not called, or not from sync())") from None
        recent = since + (now - since) / 2
        ids = {t.task_id for t in tasks}
        keys = {t.key for t in tasks}
        activity = [r.started for r in journal.runs if r.task_id in ids] + \
                   [r.finished for r in journal.runs if r.task_id in ids and r.finished is not None] + \
                   [e.at for e in self.events if e.key in keys]
        if not any(t >= recent for t in activity):
            # Nothing moved in the second half of the wait: the timeout is the verdict -- unless the
            # machine itself became much slower after the budgets were calibrated (Jepsen: only evidence
            # makes a verdict invalid, and a machine k times slower than measured is none).
            calibrated = self.time_model.calibration.pace
            if calibrated > 0:
                slowdown = machine_pace() / calibrated
                if slowdown >= SLOWDOWN_THRESHOLD:
                    raise Inconclusive(
                        f"{exc}\nInconclusive: nothing moved, but this machine now runs the suite {slowdown:.1f}x "
                        f"slower than when the budgets were calibrated (a fixed CPU workload), so the budget no "
                        f"longer says what it meant. Re-run on a quieter machine or with a larger "
                        f"--conformance-time-scale (now {self.time_model.scale:g}).",
                        cause="the machine ran the suite much slower than when the budgets were calibrated") from None
            if not any(journal.runs_of(t.task_id) for t in tasks):
                exc.cause = "queued tasks never started (nothing reached the journal)"
            return
        raise Inconclusive(
            f"{exc}\nInconclusive: the backend was still making progress when the budget ran out (a task started, "
            f"ended or was reported in the last {now - recent:.1f}s), so this is slowness, not a broken contract. "
            f"Re-run with a larger --conformance-time-scale (now {self.time_model.scale:g}).",
            cause="budgets ran out while the backend was still making progress (slow, not wrong)") from None

    def ended_unreported(self, tasks: Sequence[QueuedTask], after: float | None = None) -> dict[str, float]:
        """Tasks whose work ended more than ``after`` seconds (default: the ``report`` budget) ago without a
        terminal event, with how many seconds ago: the decisive evidence that an event is lost, not late."""
        now, journal = time.monotonic(), self.journal()
        report = self.budget("report") if after is None else after
        lost = {}
        for task in tasks:
            if self.terminal_events(task.key):
                continue
            finished = [r.finished for r in journal.runs_of(task.task_id) if r.finished is not None]
            if finished and now - max(finished) > report:
                lost[task.task_id] = now - max(finished)
        return lost

    def adopt(self, tis: Sequence[Any]) -> list[Any]:
        result = self.call(f"try_adopt_task_instances({len(tis)} TIs)",
                           self.executor.try_adopt_task_instances, list(tis))
        return list(result)

    def revoke(self, task: QueuedTask) -> None:
        """``revoke_task(ti=...)`` as stuck-in-queued handling calls it: the task is handed back (the executor
        removes it from its backend, so it is not work left behind)."""
        self.sandbox.mark_settled(task.task_id)
        self.call(f"revoke_task({task.task_id})", self.executor.revoke_task, ti=task.ti)

    def stuck(self, tis: Sequence[Any]) -> list[str]:
        for ti in tis:  # handed back to the scheduler: the executor removes it from its backend (STUCK)
            task = self.tasks.get(ti.key)
            if task is not None:
                self.sandbox.mark_settled(task.task_id)
        return list(self.call(f"stuck-in-queued handling of {len(tis)} TIs", compat.handle_stuck,
                              self.executor, list(tis)))

    def end(self) -> None:
        self.call("end()", self.executor.end, budget=self.budget("end"))
        self.ended = True
        self.collect()

    def terminate(self) -> None:
        self.call("terminate()", self.executor.terminate, budget=self.budget("terminate"))

    def abandon(self) -> None:
        """The scheduler process 'died': nobody calls this executor again, not even at teardown."""
        self.note("abandoned without end(): the scheduler process 'died'")
        self.abandoned = True

    # -- views -----------------------------------------------------------------------------------
    def journal(self) -> Journal:
        return self.sandbox.journal()

    def events_for(self, key: Any) -> list[Event]:
        return list(self._events_by_key.get(key, ()))

    def terminal_events(self, key: Any) -> list[Event]:
        terminal = compat.terminal_states()
        return [e for e in self.events_for(key) if e.state in terminal]

    def runs(self, task: QueuedTask) -> list[ProbeRun]:
        return self.journal().runs_of(task.task_id)

    def release(self, task: QueuedTask, linger: float = 0.0, crash: bool = False) -> None:
        probes.release(self.sandbox.journal_dir, task.probe, linger, crash)
        self.note(f"released {task.task_id}" + (f" (its process lingers {linger:.1f}s)" if linger else "")
                  + (" (its process crashes at the end)" if crash else ""))

    def format_transcript(self, last: int = 40) -> str:
        """The latest lines, repeated polls collapsed: identical calls into one line with a count, and a
        repeated cycle of calls (heartbeat, then a buffer read that returns nothing) into one block with
        a count -- calls that changed something are the lines that remain, so the cut rarely hides what
        matters."""
        rendered = _collapse_cycles(self.transcript)
        lines = rendered[-last:]
        skipped = len(rendered) - len(lines)
        head = [f"  ... {skipped} earlier lines"] if skipped else []
        return "\n".join(head + ["  " + line for line in lines])

    # -- teardown --------------------------------------------------------------------------------
    def release_all(self) -> None:
        """Let every held probe of this harness finish (before any harness is ended: an adopting
        executor's end() waits for work another harness queued)."""
        for task in self.tasks.values():
            probes.release(self.sandbox.journal_dir, task.probe)

    def close(self) -> list[str]:
        """Stop everything this harness started; return problems found (always reported)."""
        problems: list[str] = []
        self.release_all()
        with contextlib.suppress(Exception):  # never handed to the backend: nothing can wait there
            for key in list(self.executor.queued_tasks):
                if key in self.tasks:
                    self.sandbox.mark_settled(self.tasks[key].task_id)
        if self.started and not self.ended and not self.abandoned:
            try:
                self.end()
            except CallTimedOut as exc:
                problems.append(f"teardown: {exc}")
                try:
                    self.terminate()
                except Exception as term_exc:
                    problems.append(f"teardown: terminate() after the hung end() raised "
                                    f"{describe_exception(term_exc)}")
            except Exception as exc:
                problems.append(f"teardown: end() raised {describe_exception(exc)}")
        return problems


def _collapse_cycles(lines: list[_Line], longest: int = 3) -> list[str]:
    """Render ``lines``, folding a block of up to ``longest`` calls repeated back to back into its first
    occurrence with ``[block of N calls xK until +T]``."""
    out: list[str] = []
    i = 0
    texts = [_without_timing(line.text) for line in lines]
    while i < len(lines):
        folded = False
        for size in range(2, longest + 1):
            block = texts[i:i + size]
            if len(block) < size:
                break
            reps = 1
            while texts[i + reps * size:i + (reps + 1) * size] == block:
                reps += 1
            if reps >= 3:
                last = lines[i + reps * size - 1]
                out += [line.render() for line in lines[i:i + size]]
                out.append(f"  [the {size} calls above x{reps} until +{last.last:.3f}s]")
                i += reps * size
                folded = True
                break
        if not folded:
            out.append(lines[i].render())
            i += 1
    return out


def _key_text(key: Any) -> str:
    task_id = getattr(key, "task_id", None)
    if task_id is None:
        return repr(key)
    mapped = getattr(key, "map_index", -1)
    return f"{task_id}#try{getattr(key, 'try_number', '?')}" + (f"[{mapped}]" if mapped not in (-1, None) else "")


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

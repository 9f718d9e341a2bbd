"""Property-based testing of an executor: hypothesis generates whole scheduler histories.

Hand-made scenarios find what their authors thought of. ``ExecutorMachine`` -- a module-level
``RuleBasedStateMachine`` -- explores the workload space the scheduler can produce instead: mapped and
unmapped TIs, tries above 1, dag and run ids of every accepted shape, served and unserved queues,
priorities and ``executor_config``, probes that succeed, fail, raise, crash, lose their worker or are
*held* until a rule releases them, keys queued again while in flight (beside other work of the same
loop), revoke, adoption by a second instance, callbacks and connection tests where declared, and
parallelism from 1 to 6 (0 on Airflow 2), and wide fan-outs that put dozens of tasks through one
executor instance. Queued tasks go into a hypothesis ``Bundle`` so that later rules (release, requeue,
revoke) pick among them.

Situations are built, not hoped for: steps have the scheduler loop's shape (queueing is followed by a
heartbeat and a read unless the step queues more in the same loop), a re-queued key is a held one when one
is in flight (in flight whatever the machine's speed) with work after it in the batch, and held or
unserved work is capped so that it cannot clog the rest of the programme. How soon each known defect
class is caught is measured by ``benchmarks/bench.py --only detection`` (benchmarks/RESULTS.md).

The SPEC PROP invariants run after every step over the *whole* event stream and the journal, not over
snapshots: every accepted workload is queued, running or reported (never gone); nothing is reported for
a key and try after its terminal event; event keys are exactly the keys given; states are those allowed;
work that ended more than the ``report`` budget ago has its terminal event whatever else is in flight;
never more runs than parallelism, never a try run twice or twice at once; ``end()`` returns within its
budget with held work in flight and accounts for every task.

Cost is counted in round trips (``timing``): a step that waits, waits for the executor to report
something (``await_progress``), never for a fixed time, and generation stops when the ``state_machine``
budget -- a number of calibrated round trips -- is spent; shrinking a failure has a ``shrink`` budget of
its own. Every step is recorded as the Python call that replays it, so a failing programme always
becomes a reproducer, also when hypothesis cannot replay a timing-dependent failure or the budget ends
the shrinking.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conformance.groundtruth.journal import Journal
from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.groundtruth.sandbox import Sandbox, ensure_active
from conformance.harness import airflow_compat as compat
from conformance.harness.outcomes import describe_exception
from conformance.harness.profile import ExecutorProfile
from conformance.harness.scheduler import CallTimedOut, Event, QueuedTask, SchedulerHarness
from conformance.harness.strategies import (
    DAGS,
    EXECUTOR_CONFIGS,
    HELD,
    QUEUES,
    RUNS,
    TaskSpec,
    parallelisms,
    task_specs,
)
from conformance.harness.timing import FLOORS, CeilingReached, TimeModel, WaitTimedOut, capped, wait_until

#: At most this many tasks outstanding at once (held ones included): enough to fill six slots and queue
#: behind them, few enough that a step stays cheap.
MAX_OUTSTANDING = 10
#: At most this many of them held (until a rule releases them) or on a queue nobody serves: more would clog
#: the cap and the slots for the rest of the programme, and one or two already make every situation they can.
MAX_HELD = 3
MAX_UNSERVED = 2
OWNER = "stateful.scheduler_action_sequences"
#: Scheduler 'deaths' per programme: each one builds and starts a whole new executor.
MAX_ADOPTIONS = 2

#: ``budget_factor`` multiplies the time model's ``state_machine`` (exploration) and ``shrink`` budgets;
#: generation runs as many examples as fit (``max_examples`` is only a ceiling).
PROFILES: dict[str, dict[str, Any]] = {
    "ci": dict(max_examples=1000, stateful_step_count=30, budget_factor=1.0),
    "thorough": dict(max_examples=10000, stateful_step_count=50, budget_factor=10.0),
}


def hypothesis_settings(profile: str = "ci", derandomize: bool = False, shrink: bool = True,
                        examples: int | None = None) -> settings:
    """``ci`` (the round-trip budget, seconds on a local executor) or ``thorough`` (ten times that). No
    deadline: the time model owns budgets. No example database: nothing is written outside the sandbox."""
    if profile not in PROFILES:
        raise ValueError(f"unknown hypothesis profile {profile!r}; choose one of {sorted(PROFILES)}")
    chosen = {k: v for k, v in PROFILES[profile].items() if k != "budget_factor"}
    if examples is not None:
        chosen["max_examples"] = examples
    return settings(deadline=None, database=None, derandomize=derandomize, print_blob=True,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, *([Phase.shrink] if shrink else [])],
                    **chosen)


class PropertyViolated(AssertionError):
    """A SPEC PROP invariant failed; the message names the property and the steps that led there."""


class NotReproduced(Exception):
    """A violation that did not recur when its recorded programme was replayed under the same time model: no
    evidence against the executor (Jepsen's *unknown*); the message carries the programme and both outcomes."""


class BudgetSpent(Exception):
    """The state machine's time budget is used up: no new example or step is started."""


_PROPERTY = "_spec_property"


def spec_property(text: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Mark a method as the check of one SPEC PROP invariant (``ExecutorMachine.PROPERTIES`` orders them)."""
    def mark(func: Callable[[Any], None]) -> Callable[[Any], None]:
        setattr(func, _PROPERTY, text)
        return func
    return mark


@dataclass
class Exploration:
    """What the run explored, for the report: a slow backend gets the same exploration per minute."""

    examples: int = 0
    steps: int = 0
    tasks: int = 0
    most_tasks_in_one_programme: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        return (f"explored {self.examples} programmes, {self.steps} steps, {self.tasks} tasks (up to "
                f"{self.most_tasks_in_one_programme} through one executor) in {self.seconds:.1f}s")


@dataclass
class MachineConfig:
    """What one binding of the machine knows: the executor, where it runs, and its budgets."""

    profile: ExecutorProfile
    sandbox: Sandbox
    time: TimeModel
    can_revoke: bool
    can_adopt: bool
    #: single-threaded executors run tasks inside heartbeat(): a held task would block the scheduler itself
    can_hold: bool = True
    #: the non-task workloads the executor declares (Airflow 3.3+): "callback", "connection test"
    other_workloads: tuple[str, ...] = ()
    deadline: float = float("inf")
    shrink_budget: float = float("inf")
    shrink_deadline: float = float("inf")
    #: the run's ceiling (--max-minutes) shortened the exploration budget: a pass is then inconclusive
    ceiling_cut: bool = False
    #: every violation seen (property, recorded steps); the last is hypothesis' final (shrunk) replay
    violations: list[tuple[str, list[str], str]] = field(default_factory=list)
    exploration: Exploration = field(default_factory=Exploration)

    def out_of_time(self) -> bool:
        return time.monotonic() > (self.shrink_deadline if self.violations else self.deadline)


@dataclass
class Tracked:
    """One TI the machine queued: what it is, how often the executor accepted it, what became of it."""

    number: int
    spec: TaskSpec
    task: QueuedTask
    accepted: int = 0  # queue calls the executor must honour (a duplicate of a still-queued key is not one)
    terminal: int = 0  # terminal events seen, in stream order
    #: queue calls answered by a terminal event: one event answers every run of the key that had ended when
    #: it was read (the base's ``event_buffer`` keeps one value per key, so a second terminal event set
    #: before the scheduler's read replaces the first -- by Airflow's design, not the executor's fault)
    answered: int = 0
    #: for each terminal event: its state and the index of the latest run it answers (for the journal match)
    reports: list[tuple[Any, int]] = field(default_factory=list)
    requeued: bool = False
    released: bool = False
    queued_to: str = ""  # the harness (scheduler) it was queued to
    dropped: bool = False  # revoked, or reset by an adopting scheduler: no longer expected from anyone
    dropped_at: float = float("inf")

    @property
    def outstanding(self) -> int:
        return max(0, self.accepted - self.answered)

    @property
    def awaits_release(self) -> bool:
        """Held work that no rule has released yet."""
        return self.spec.held and not self.released


_Rule = Callable[..., Any]


def _guarded(step: _Rule) -> _Rule:
    """A rule whose executor calls may not raise or block (the scheduler catches nothing there): anything
    but a property violation or the budget's end becomes PROP-11, naming the step and where it raised --
    never an anonymous error hypothesis cannot replay."""
    @functools.wraps(step)
    def run(self: ExecutorMachine, *args: Any, **kwargs: Any) -> Any:
        try:
            return step(self, *args, **kwargs)
        except (PropertyViolated, BudgetSpent, CeilingReached):
            raise
        except CallTimedOut as exc:
            self._violated("executor calls return and do not raise", f"in {step.__name__}: {exc}")
        except Exception as exc:
            self._violated("executor calls return and do not raise",
                           f"in {step.__name__}: {describe_exception(exc)}")
        return None
    return run


class ExecutorMachine(RuleBasedStateMachine):
    """The scheduler's moves as rules, SPEC PROP as invariants (bound to one executor by ``machine_for``)."""

    config: ClassVar[MachineConfig]
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        if self.config.out_of_time():
            raise BudgetSpent("the state machine's time budget is used up")
        super().__init__()
        self.config.exploration.examples += 1
        self.programme: list[str] = []
        self.harness: SchedulerHarness | None = None
        self.retired: list[SchedulerHarness] = []
        self.tracked: list[Tracked] = []
        self.by_key: dict[Any, Tracked] = {}
        #: callbacks and connection tests queued (key -> (kind, probe task id)); reset ones are dropped
        self.workloads: dict[Any, tuple[str, str]] = {}
        self.dropped_workloads: dict[Any, tuple[str, str]] = {}  # in flight when their scheduler 'died'
        self.stream_faults: list[str] = []
        self.workload_terminal: dict[Any, int] = {}
        self.unknown: list[Any] = []
        #: keys the installed base said it gave up on (Airflow 2: "could not queue task ... still running")
        self.given_up = _GiveUps()
        self.bad_states: list[str] = []
        self._absorbed: dict[int, int] = {}
        self.ended = False
        self.ended_at = float("inf")
        self.end_took = 0.0
        self.steps = 0  # preconditions read only deterministic state (hypothesis replays)
        self._release_timer: threading.Timer | None = None

    # -- recording -----------------------------------------------------------------------------
    def _did(self, rule_name: str, **arguments: Any) -> None:
        """Record the step as the Python call that replays it (the reproducer is built from these)."""
        self.steps += 1
        self.config.exploration.steps += 1
        args = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        self.programme.append(f"state.{rule_name}({args})")

    def _spend(self) -> None:
        if self.config.out_of_time():
            raise BudgetSpent("the state machine's time budget is used up")

    @property
    def h(self) -> SchedulerHarness:
        assert self.harness is not None, "begin() runs first"
        return self.harness

    def _harnesses(self) -> list[SchedulerHarness]:
        return [*self.retired, *([self.harness] if self.harness is not None else [])]

    def _new_harness(self, name: str, job_id: int, parallelism: int) -> SchedulerHarness:
        cfg = self.config
        h = SchedulerHarness(cfg.profile.build(parallelism=parallelism), cfg.sandbox, name=name, job_id=job_id,
                             time_model=cfg.time, owner=OWNER)
        self.given_up.watch(h.executor)
        return h.start()

    # -- the event stream, as a whole --------------------------------------------------------------
    def _absorb(self) -> None:
        """Fold every event collected since the last step into the per-key accounting, in order."""
        journal: Journal | None = None
        for h in self._harnesses():
            seen = self._absorbed.get(id(h), 0)
            if len(h.events) > seen and journal is None:
                journal = self.h.journal()
            for event in h.events[seen:]:
                self._fold(event, journal)
            self._absorbed[id(h)] = len(h.events)
        self._withdraw_given_up()

    def _withdraw_given_up(self) -> None:
        """Airflow 2's ``BaseExecutor.trigger_tasks`` gives up on a key queued again while its previous run
        is still running once its retry window has passed: the key leaves ``queued_tasks`` unrun, and the
        scheduler's stuck-in-queued handling owns the TI from then on. That is the installed base's rule,
        not a task the executor lost, so that queue call no longer counts -- on the base's own word (its
        log record), never inferred from timing: a key that left ``queued_tasks`` because it was dispatched
        looks the same until its run starts."""
        for key in self.given_up.take():
            item = self.by_key.get(key)
            if item is not None and item.requeued and item.accepted > 1:
                item.accepted -= 1

    def _fold(self, event: Event, journal: Journal | None) -> None:
        terminal = compat.terminal_states()
        item = self.by_key.get(event.key)
        if item is None:
            if event.key in self.workloads or event.key in self.dropped_workloads:
                if event.state in terminal:
                    self.workload_terminal[event.key] = self.workload_terminal.get(event.key, 0) + 1
                    if self.workload_terminal[event.key] > 1:
                        self.stream_faults.append(f"the workload {event.key!r} got a second terminal event")
            else:
                self.unknown.append(event.key)
            return
        if event.state is not None and not isinstance(event.state, compat.state_enum()):
            self.bad_states.append(f"{item.task.task_id}: {event.state!r} ({type(event.state).__name__})")
        elif event.state is not None and event.state not in _allowed_states():
            self.bad_states.append(f"{item.task.task_id}: {event.state}")
        if item.dropped:
            return  # revoked or reset: whatever was in flight may still be reported
        if item.terminal >= item.accepted:
            # Every queue call already had a terminal event of its own: nothing may follow. (After one event
            # that answered two runs at once, a lagging report of the second run is not counted against it.)
            what = "a second terminal event" if event.state in terminal else f"a {event.state} event"
            self.stream_faults.append(f"{_describe_key(event.key)} got {what} after its terminal event "
                                      f"({item.terminal} terminal for {item.accepted} accepted queue calls)")
        if event.state in terminal:
            item.terminal += 1
            runs = journal.runs_of(item.task.task_id) if journal is not None else []
            ended_by_then = sum(1 for r in runs if r.finished is not None and r.finished <= event.at)
            item.answered = min(max(item.accepted, 1), max(item.answered + 1, ended_by_then))
            item.reports.append((event.state, item.answered - 1))

    # -- rules: the scheduler's moves --------------------------------------------------------------
    @initialize(target=tasks, parallelism=parallelisms(unlimited=not compat.is_airflow3()),
                specs=st.lists(task_specs(), min_size=2, max_size=5))
    @_guarded
    def begin(self, parallelism: int, specs: list[TaskSpec]) -> MultipleResults[int]:
        """A scheduler starts its executor with some parallelism and queues its first loop's TIs."""
        self._did("begin", parallelism=parallelism, specs=specs)
        self.harness = self._new_harness("A", job_id=1, parallelism=parallelism)
        return multiple(*self._queue_specs(specs))

    @precondition(lambda self: not self.ended)
    @rule(target=tasks, specs=st.lists(task_specs(), min_size=1, max_size=4), requeue=st.booleans(),
          same_loop=st.booleans())
    @_guarded
    def queue(self, specs: list[TaskSpec], requeue: bool = False, same_loop: bool = False) -> MultipleResults[int]:
        """The scheduler queues the TIs of one loop -- with ``requeue``, first a deferred TI that resumes
        with the same key (see ``requeue_in_flight``), possibly before the executor noticed its run end."""
        self._did("queue", specs=specs, requeue=requeue, same_loop=same_loop)
        self._absorb()
        if requeue:
            self._requeue(None)
        return self._queued_in_loop(self._queue_specs(specs), same_loop)

    @precondition(lambda self: not self.ended)
    @rule(target=tasks, width=st.integers(min_value=4, max_value=MAX_OUTSTANDING),
          shape=task_specs(held=False), same_loop=st.booleans())
    @_guarded
    def queue_wave(self, width: int, shape: TaskSpec, same_loop: bool = False) -> MultipleResults[int]:
        """The scheduler queues a wide fan-out in one loop (a mapped task's expansion, a dag run's first
        layer): short tasks of one dag run, map indexes 0..width-1. Waves are what put dozens of tasks
        through one executor instance in one programme -- where defects that need history show up (a
        poller that wraps around, a table that fills, a counter that drifts)."""
        self._did("queue_wave", width=width, shape=shape, same_loop=same_loop)
        self._absorb()
        wave = [shape._replace(kind=ProbeKind.OK.value, delay_ms=0, queue=0, map_index=index) for index in range(width)]
        return self._queued_in_loop(self._queue_specs(wave), same_loop)

    def _queued_in_loop(self, numbers: list[int], same_loop: bool) -> MultipleResults[int]:
        """A scheduler loop queues, then heartbeats and reads the buffer; ``same_loop`` queues more first.
        (Queueing that never reaches a heartbeat would explore nothing: the loop is what moves work.)"""
        if not same_loop:
            self._loop()
        return multiple(*numbers)

    def _queue_specs(self, specs: list[TaskSpec]) -> list[int]:
        self._absorb()
        numbers = []
        for spec in specs:
            if sum(1 for t in self.tracked if t.outstanding and not t.dropped) >= MAX_OUTSTANDING:
                break
            if spec.held and (not self.config.can_hold or self._outstanding_where(held=True) >= MAX_HELD):
                spec = spec._replace(kind=ProbeKind.OK.value)
            if spec.unserved and self._outstanding_where(unserved=True) >= MAX_UNSERVED:
                spec = spec._replace(queue=0)
            probe = Probe.new(ProbeKind(spec.kind), delay=spec.delay_ms / 1000)
            task = self.h.make(probe, priority=spec.priority, dag_id=DAGS[spec.dag], run_id=RUNS[spec.run],
                               map_index=spec.map_index, try_number=spec.try_number, queue=QUEUES[spec.queue],
                               executor_config=EXECUTOR_CONFIGS[spec.config])
            item = Tracked(len(self.tracked), spec, task, queued_to=self.h.name)
            self.tracked.append(item)
            self.by_key[task.key] = item
            self._queue_again(item)
            numbers.append(item.number)
        self.config.exploration.tasks += len(numbers)
        self.config.exploration.most_tasks_in_one_programme = max(
            self.config.exploration.most_tasks_in_one_programme, len(self.tracked))
        return numbers

    def _outstanding_where(self, *, held: bool = False, unserved: bool = False) -> int:
        """Outstanding tasks that wait on a rule (held, not yet released) or on nobody (an unserved queue)."""
        return sum(1 for t in self.tracked if t.outstanding and not t.dropped
                   and ((held and t.awaits_release) or (unserved and t.spec.unserved)))

    def _queue_again(self, item: Tracked) -> None:
        duplicate = item.task.key in self.h.executor.queued_tasks  # the scheduler's own dedupe rule
        self.h.queue_task(item.task)
        if not duplicate:
            item.accepted += 1

    @precondition(lambda self: not self.ended)
    @rule(target=tasks, task=tasks, specs=st.lists(task_specs(), min_size=1, max_size=3), same_loop=st.booleans())
    @_guarded
    def requeue_in_flight(self, task: int, specs: list[TaskSpec], same_loop: bool = False) -> MultipleResults[int]:
        """A deferred TI resumes: its run's work ends (the task deferred, its process exits), the trigger
        fires and the scheduler queues the *same key* again (same try) in its next loop -- before that
        loop's heartbeat, so possibly before the executor noticed the first run end -- beside other work
        of the same loop. The key must run again after its previous run, and the rest of the batch is not
        lost.

        Evidence, per version: the scheduler queues every TI it set QUEUED in ``_do_scheduling``
        (``_enqueue_task_instances_with_queued_state``) before ``executor.heartbeat()`` in
        ``_run_scheduler_loop``; a resumed TI keeps its try number (2.10+ and 3.x increment it when the TI is
        scheduled by the dag run, not when it resumes). Airflow 2's ``BaseExecutor.trigger_tasks`` holds such
        a key back while it is still in ``running`` (``RunningRetryAttemptType``); 3.3's does not.

        The situation is built, not hoped for: the key is a held one when any is in flight (it is released --
        it 'defers' -- and re-queued as soon as its work has ended, whatever the machine's speed), and the
        first work beside it is at most as urgent, so the next heartbeat's batch holds the key *before* other
        work -- where a launch that gives up on the key would take the rest of the batch with it."""
        self._did("requeue_in_flight", task=task, specs=specs, same_loop=same_loop)
        self._absorb()
        item = self._requeue(task)
        if item is not None:
            specs = [specs[0]._replace(priority=min(specs[0].priority, item.spec.priority)), *specs[1:]]
        return self._queued_in_loop(self._queue_specs(specs), same_loop)

    def _requeue(self, task: int | None) -> Tracked | None:
        """Defer-and-resume one task that is in flight: end its run's work (release it when held), wait until
        the journal shows the work ended -- a scheduler only re-queues a TI whose run deferred -- then queue
        its key again. Nothing is re-queued when no run ends within an observation window (no situation, no
        judgement)."""
        journal = self.h.journal()

        def in_flight(t: Tracked) -> bool:
            # Only tasks that can defer: a run that succeeds (fails, crashes, ... do not defer), has started,
            # and is still the executor's (not queued, not reported).
            return (not t.dropped and not t.requeued and t.outstanding == 1
                    and t.spec.kind in (ProbeKind.OK.value, HELD)
                    and t.task.key not in self.h.executor.queued_tasks
                    and t.task.key in self.h.tasks and not t.spec.unserved
                    and len(journal.runs_of(t.task.task_id)) == 1)

        # The drawn task if it is in flight, else a held one that is (held work stays in flight until
        # released, so the situation does not depend on timing), else the first one that is. Once per task.
        first = [self.tracked[task]] if task is not None else []
        held = [t for t in self.tracked if t.awaits_release]
        item = next((t for t in (*first, *held, *self.tracked) if in_flight(t)), None)
        if item is None:
            return None
        if item.awaits_release:
            # Its work ends now, its process a little later (a deferring task tears down after it set its
            # state): the re-queue lands while the executor may still see the first run in flight. Far less
            # than the report budget, so that the teardown is never taken for a late terminal event.
            item.released = True
            self.h.release(item.task, linger=min(self.h.budget("window"), self.h.budget("report") / 8))
        try:
            wait_until(lambda: self.h.journal().finished(item.task.task_id), "the deferring task's work to end",
                       self.h.budget("window"), poll=0.01)
        except WaitTimedOut:
            return None  # its work did not end: the scheduler would not have re-queued it
        item.requeued = True
        self._queue_again(item)
        return item

    @precondition(lambda self: not self.ended and any(t.awaits_release for t in self.tracked))
    @rule(task=tasks)
    @_guarded
    def release(self, task: int) -> None:
        """A held task's work finishes (a long task, a sensor's condition met)."""
        self._did("release", task=task)
        # The drawn task if it is held, else the oldest held one: held work left alone fills the slots and
        # the outstanding cap, and the rest of the programme would only wait behind it.
        item = next((t for t in (self.tracked[task], *self.tracked) if t.awaits_release), None)
        if item is not None:
            item.released = True
            for h in self._harnesses():
                if item.task.key in h.tasks:
                    h.release(item.task)
                    break

    @precondition(lambda self: not self.ended)
    @rule()
    @_guarded
    def scheduler_loop(self) -> None:
        """One scheduler loop: heartbeat, then read the whole event buffer (``_run_scheduler_loop``:
        ``executor.heartbeat()``, then ``_process_executor_events`` -> ``get_event_buffer()``, never
        with ``dag_ids`` in 2.7-3.3; a filtered read is EVT-3's own check)."""
        self._did("scheduler_loop")
        self._loop()

    def _loop(self) -> None:
        self._spend()
        self.h.heartbeat()
        self._take_events()

    # After end() the scheduler reads the buffer once more (``_execute``'s ``finally``: ``end()``, then
    # ``_process_executor_events``). Before it, every read follows a heartbeat: scheduler_loop.
    @precondition(lambda self: self.ended)
    @rule()
    @_guarded
    def get_event_buffer(self) -> None:
        self._did("get_event_buffer")
        self._take_events()

    def _take_events(self) -> None:
        taken = self.h.collect()
        left = [k for k in taken if k in self.h.executor.event_buffer]
        if left:
            self._violated("get_event_buffer pops what it returns",
                           f"events returned by get_event_buffer() are still in the buffer: {left}")
        self._absorb()

    @precondition(lambda self: not self.ended)
    @rule()
    @_guarded
    def await_progress(self) -> None:
        """Scheduler loops until the executor or its work moves (an event, a task starting or ending): a
        step costs at most one observation window, and usually much less. Nothing to wait for: no wait."""
        self._did("await_progress")
        self._spend()
        h = self.h
        if not self._progress_possible():
            return
        before = self._progress_mark()

        def loop() -> None:
            # The scheduler reads the buffer after every heartbeat (an executor may rely on it: the buffer
            # keeps one event per key), so a heartbeat here is always followed by a read.
            h.heartbeat()
            self._take_events()

        with contextlib.suppress(WaitTimedOut):  # nothing moved in a window: the invariants judge that
            wait_until(lambda: self._progress_mark() != before, "the executor or its work to move",
                       h.budget("window"), poll=0.02, each=loop)
        self._absorb()

    def _progress_possible(self) -> bool:
        """Whether anything can move without a rule's help: not when all that is left is held work and
        work waiting behind it for a slot (or on a queue the executor keeps waiting)."""
        journal = self.h.journal()
        limit = compat.effective_parallelism(self.h.executor)
        held_running, waiting = 0, 0
        for item in self.tracked:
            if item.dropped or not item.outstanding:
                continue
            runs = journal.runs_of(item.task.task_id)
            if item.spec.held and not item.released and any(r.finished is None for r in runs):
                held_running += 1
            elif len(runs) < item.accepted and item.task.key in self.h.executor.queued_tasks:
                waiting += 0 if item.spec.unserved else 1
            elif item.outstanding == 1 and self._terminal_unread(item):
                continue  # reported (a poller thread wrote it after the last read); the next read takes it
            else:
                return True  # in flight, or ended and not yet reported
        return bool(self._outstanding_workloads()) or (waiting > 0 and (limit is None or held_running < limit))

    def _terminal_unread(self, item: Tracked) -> bool:
        pending = self.h.executor.event_buffer.get(item.task.key)
        return pending is not None and _state_of(pending) in compat.terminal_states()

    def _progress_mark(self) -> tuple[int, int, int]:
        journal = self.h.journal()
        return (len(journal.runs), sum(1 for r in journal.runs if r.finished is not None),
                sum(len(h.events) for h in self._harnesses()) + len(self.h.executor.event_buffer))

    @precondition(lambda self: self.config.can_revoke and not self.ended)
    @rule(task=tasks)
    @_guarded
    def revoke(self, task: int) -> None:
        """Stuck-in-queued handling: the scheduler revokes a TI (queued or already running)."""
        self._did("revoke", task=task)
        self._absorb()

        def revocable(t: Tracked) -> bool:
            return not t.dropped and bool(t.outstanding) and t.task.key in self.h.tasks

        # The drawn task if the scheduler could still revoke it, else the first one it could (a finished
        # task teaches nothing here; one beside others in flight does).
        item = next((t for t in (self.tracked[task], *self.tracked) if revocable(t)), None)
        if item is None:
            return
        self.h.call(f"revoke_task({item.task.task_id})", self.h.executor.revoke_task, ti=item.task.ti)
        item.dropped, item.dropped_at = True, time.monotonic()

    @precondition(lambda self: self.config.can_adopt and not self.ended and self.steps >= 3
                  and len(self.retired) < MAX_ADOPTIONS)
    @rule()
    @_guarded
    def adopt_into_fresh_executor(self) -> None:
        """The scheduler dies; a new one adopts everything outstanding that carries an external id."""
        self._did("adopt_into_fresh_executor")
        self._absorb()
        states = compat.state_enum()
        old = self.h
        old.abandon()
        new = self._new_harness(f"E{len(self.retired) + 1}", job_id=len(self.retired) + 2,
                                parallelism=int(getattr(old.executor, "parallelism", 1) or 0))
        candidates: list[tuple[Tracked, Any]] = []
        for item in self.tracked:
            if item.dropped or not item.outstanding or item.task.key not in old.tasks:
                continue
            ext = next((e.info for e in old.events_for(item.task.key)
                        if e.state in (states.QUEUED, states.RUNNING) and isinstance(e.info, str)), None)
            if item.task.key in old.executor.queued_tasks or ext is None or item.requeued:
                item.dropped, item.dropped_at = True, time.monotonic()  # the scheduler resets it
                continue
            ti = compat.adoption_ready(item.task.handle, job_id=old.job_id, external_executor_id=ext, running=True)
            candidates.append((item, ti))
        returned = {id(ti) for ti in new.adopt([ti for _, ti in candidates])}
        for item, ti in candidates:
            if id(ti) in returned:
                item.dropped, item.dropped_at = True, time.monotonic()
            else:
                new.tasks[item.task.key] = item.task  # adopted: the new scheduler now waits for its event
        for key in self._outstanding_workloads():  # not adopted: the scheduler times them out itself
            self.dropped_workloads[key] = self.workloads.pop(key)
        self.retired.append(old)
        self.harness = new

    @precondition(lambda self: bool(self.config.other_workloads) and not self.ended)
    @rule(target=tasks, pick=st.integers(min_value=0, max_value=1), specs=st.lists(task_specs(), max_size=2),
          same_loop=st.booleans())
    @_guarded
    def queue_other_workload(self, pick: int, specs: list[TaskSpec], same_loop: bool = False) -> MultipleResults[int]:
        """The 3.3 scheduler queues a deadline callback or a connection test (whichever the executor
        declares; its import path / connection id is a no-op probe), and tasks in the same loop."""
        self._did("queue_other_workload", pick=pick, specs=specs, same_loop=same_loop)
        kind = self.config.other_workloads[pick % len(self.config.other_workloads)]
        if len(self._outstanding_workloads()) < 3:
            probe = Probe.new(ProbeKind.OK)
            self.config.sandbox.claim(probe.task_id, OWNER)
            make = compat.make_callback_workload if kind == "callback" else compat.make_connection_test_workload
            workload = make(probe.task_id)
            self.h.call(f"queue_workload({type(workload).__name__})", self.h.executor.queue_workload,
                        workload, None)
            self.workloads[compat.workload_key(workload)] = (kind, probe.task_id)
        return self._queued_in_loop(self._queue_specs(specs), same_loop)

    @precondition(lambda self: not self.ended and self.steps >= 8)
    @rule()
    @_guarded
    def end(self) -> None:
        """The scheduler exits while work -- held work too -- is in flight. Held work is released after an
        observation window (a long task that does finish): ``end()`` must return within its budget."""
        self._did("end")
        self._absorb()
        self._end()

    def _end(self) -> None:
        h = self.h
        held = [t for t in self.tracked if t.spec.held and not t.released and not t.dropped]
        def release_held() -> None:
            for t in held:
                h.release(t.task)

        timer = threading.Timer(h.budget("window"), release_held)
        timer.daemon = True
        self._release_timer = timer
        timer.start()
        began = time.monotonic()
        try:
            h.end()
        except CallTimedOut as exc:
            self.end_took = time.monotonic() - began
            self._violated("end() returns within its budget with work in flight", str(exc))
        finally:
            self.end_took = time.monotonic() - began
            self.ended = True
            self.ended_at = time.monotonic()
            for t in held:
                t.released = True
        self._absorb()

    # -- invariants: SPEC PROP ---------------------------------------------------------------------
    def _violated(self, prop: str, detail: str) -> None:
        self.config.violations.append((prop, list(self.programme), detail))
        if len(self.config.violations) == 1:
            self.config.shrink_deadline = time.monotonic() + self.config.shrink_budget
        transcript = self.harness.format_transcript(30) if self.harness is not None else ""
        raise PropertyViolated(f"SPEC PROP {prop}: {detail}\nSteps so far:\n    "
                               + "\n    ".join(self.programme) + "\n" + transcript)

    @spec_property("event keys are exactly the keys given")
    def only_known_keys(self) -> None:
        # Read events and those still in a buffer (a dag-filtered read leaves other dags' events there): an
        # event under a rebuilt key is this property's finding, not a task gone missing (PROP-8).
        unread = [k for h in self._harnesses() for k in h.executor.event_buffer
                  if k not in self.by_key and k not in self.workloads and k not in self.dropped_workloads
                  and k not in self.unknown]
        unknown = [*self.unknown, *unread]
        if unknown:
            hint = _nearest_known(unknown[0], self.by_key)
            self._violated("event keys are exactly the keys given",
                           f"events for keys never queued: {[_describe_key(k) for k in unknown[:5]]}{hint}")

    @spec_property("only states an executor may report")
    def only_allowed_states(self) -> None:
        if self.bad_states:
            self._violated("only states an executor may report",
                           f"{self.bad_states[:5]}: an executor reports a TaskInstanceState among QUEUED, RUNNING, "
                           "SUCCESS and FAILED (or None); anything else is the scheduler's to set")

    @spec_property("nothing is reported for a key and try after its terminal event")
    def nothing_after_terminal(self) -> None:
        if self.stream_faults:
            self._violated("nothing is reported for a key and try after its terminal event",
                           "; ".join(self.stream_faults[:3]))

    @spec_property("each try runs at most once per accepted queue call, never twice at once")
    def runs_once_per_try(self) -> None:
        journal = self.h.journal()
        now = time.monotonic()
        for item in self.tracked:
            runs = journal.runs_of(item.task.task_id)
            if len(runs) > max(item.accepted, 1):
                self._violated("each try runs at most once per accepted queue call, never twice at once",
                               f"{_describe_key(item.task.key)} ran {len(runs)} times for {item.accepted} "
                               "accepted queue call(s)")
            for i, a in enumerate(runs):
                if any(a.overlaps(b, now) for b in runs[i + 1:]):
                    self._violated("each try runs at most once per accepted queue call, never twice at once",
                                   f"{_describe_key(item.task.key)} ran twice at the same time (queued again "
                                   "while its previous run was in flight)")

    @spec_property("never more than parallelism running")
    def never_above_parallelism(self) -> None:
        limit = compat.effective_parallelism(self.h.executor)
        if limit is None:
            return  # Airflow 2's parallelism 0: unlimited
        # Work this executor started itself: adopted work may exceed parallelism (the scheduler adopts every
        # orphan), and a dead scheduler's work is no longer this executor's.
        ids = [t.task.task_id for t in self.tracked if t.queued_to == self.h.name] + \
              [probe for _, probe in self.workloads.values()]
        ended_by = {t.task.task_id: t.dropped_at for t in self.tracked if t.dropped}
        peak = self.h.journal().max_concurrency(ids, now=time.monotonic(), ended_by=ended_by)
        if peak > limit:
            self._violated("never more than parallelism running", f"{peak} tasks ran at once, parallelism {limit}")

    @spec_property("slots_available + slots_occupied == parallelism")
    def slots_add_up(self) -> None:
        ex = self.h.executor
        if self.ended or compat.effective_parallelism(ex) is None:
            return
        if not hasattr(compat.base_executor_class(), "slots_occupied"):
            return  # Airflow 2.7: the member does not exist yet
        if ex.slots_available + ex.slots_occupied != ex.parallelism:
            self._violated("slots_available + slots_occupied == parallelism",
                           f"{ex.slots_available} + {ex.slots_occupied} != {ex.parallelism}")

    @spec_property("a key is in at most one of queued/running/finished")
    def key_in_one_place(self) -> None:
        if self.ended:
            return
        ex = self.h.executor
        requeued = {t.task.key for t in self.tracked if t.requeued}
        both = (set(ex.queued_tasks) & set(ex.running)) - requeued
        # finished: every queue call had a terminal event of its own (after one event that answered two runs,
        # the second run's own report may still be on its way, and the key rightly still in running)
        finished_but_held = [_describe_key(t.task.key) for t in self.tracked
                             if t.terminal and t.terminal >= t.accepted and not t.dropped
                             and (t.task.key in ex.running or t.task.key in ex.queued_tasks)]
        if both or finished_but_held:
            self._violated("a key is in at most one of queued/running/finished",
                           f"queued and running: {[_describe_key(k) for k in both]}; finished but still "
                           f"queued/running: {finished_but_held}")

    @spec_property("every accepted workload is queued, running or reported")
    def nothing_vanishes(self) -> None:
        """Accepted and not yet reported, yet tracked nowhere -- not in ``queued_tasks``, ``running`` or the
        event buffer: between two scheduler calls a correct executor never has such a task (the base class
        moves a key from queued to running within one heartbeat, ``success``/``fail`` from running to the
        buffer within one call), so the scheduler can no longer account for it: dropped, or untracked."""
        if self.ended:
            return
        ex, journal = self.h.executor, self.h.journal()
        for item in self.tracked:
            if item.dropped or not item.outstanding or item.task.key not in self.h.tasks:
                continue
            key = item.task.key
            if key in ex.queued_tasks or key in ex.running or key in ex.event_buffer:
                continue
            runs = journal.runs_of(item.task.task_id)
            what = ("never started" if not runs else
                    "is still running" if any(r.finished is None for r in runs) else "ended")
            self._violated("every accepted workload is queued, running or reported",
                           f"{_describe_key(key)} (queue {QUEUES[item.spec.queue]!r}) is not in queued_tasks, not in "
                           f"running and not reported, and its work {what}: the scheduler can no longer account "
                           "for it (dropped, or untracked). A task the executor will not run must stay queued or be "
                           "reported FAILED; one that runs stays in running until its terminal event")

    @spec_property("work that ended has its terminal event within the report budget")
    def ended_work_is_reported(self) -> None:
        journal, now, report = self.h.journal(), time.monotonic(), self.h.budget("report")
        for item in self.tracked:
            if item.dropped:
                continue
            ended = [r.finished for r in journal.runs_of(item.task.task_id)
                     if r.finished is not None and now - r.finished > report
                     and not (self.ended and self.config.can_adopt and r.finished > self.ended_at - report)]
            reported = item.answered + (1 if not self.ended and self._terminal_unread(item) else 0)
            if len(ended) > reported:
                self._violated("work that ended has its terminal event within the report budget",
                               f"{_describe_key(item.task.key)}: its work ended {now - max(ended):.1f}s ago "
                               f"({len(ended)} run(s) ended, {item.terminal} terminal event(s), the last read "
                               "before the last run ended) while other work was in flight")

    @spec_property("a running task is tracked (has_task) until its terminal event")
    def work_in_progress_is_tracked(self) -> None:
        if self.ended:
            return
        journal = self.h.journal()
        untracked = [t.task.task_id for t in self.tracked
                     if t.outstanding and not t.dropped and t.task.key in self.h.tasks
                     and any(r.finished is None for r in journal.runs_of(t.task.task_id))
                     and not self.h.executor.has_task(t.task.ti)]
        if untracked and not journal.refresh().finished_all(untracked):
            self._violated("a running task is tracked (has_task) until its terminal event",
                           f"in progress but not tracked by the executor: {untracked}")

    @spec_property("end() returns within its budget with work in flight")
    def end_is_bounded(self) -> None:
        if self.ended and self.end_took > self.h.budget("end"):
            self._violated("end() returns within its budget with work in flight",
                           f"end() took {self.end_took:.1f}s (budget {self.h.budget('end'):.1f}s)")

    #: the invariants in the order they are checked: the most specific cause speaks first
    PROPERTIES = ("only_known_keys", "only_allowed_states", "nothing_after_terminal", "runs_once_per_try",
                  "never_above_parallelism", "slots_add_up", "key_in_one_place", "ended_work_is_reported",
                  "nothing_vanishes", "work_in_progress_is_tracked", "end_is_bounded")

    #: which method judges each SPEC PROP clause (PROP-10's journal match is judged at teardown)
    CLAUSES = {"PROP-1": "only_known_keys", "PROP-2": "only_allowed_states", "PROP-3": "nothing_after_terminal",
               "PROP-4": "runs_once_per_try", "PROP-5": "never_above_parallelism", "PROP-6": "key_in_one_place",
               "PROP-7": "ended_work_is_reported", "PROP-8": "nothing_vanishes",
               "PROP-9": "work_in_progress_is_tracked", "PROP-10": "end_is_bounded",
               "PROP-11": "_guarded"}

    @invariant()
    def spec_prop(self) -> None:
        if self.harness is None:
            return
        self._absorb()
        self.check_properties()

    @classmethod
    def properties(cls) -> list[str]:
        """The names of every SPEC PROP invariant method, found on the class."""
        return sorted(name for name in dir(cls) if hasattr(getattr(cls, name, None), _PROPERTY))

    def check_properties(self) -> None:
        """All invariants in ``PROPERTIES`` order (also what reproducers call after each step)."""
        if self.harness is None:
            return
        self._absorb()
        for name in self.PROPERTIES:
            getattr(self, name)()

    # -- the final drain ---------------------------------------------------------------------------
    def teardown(self) -> None:
        cfg = self.config
        try:
            if self.harness is not None:
                self._final_drain()
        finally:
            if self._release_timer is not None:
                self._release_timer.cancel()
            for h in self._harnesses():
                h.release_all()
            for h in self._harnesses():
                h.close()
            self.given_up.close()
            cfg.sandbox.settle(cfg.time.budget("settle"))
            cfg.sandbox.kill_leaked_probes()
            if any(h.abandoned for h in self.retired):
                # A 'dead scheduler' leaves its workers behind (the scheduler process would be gone and
                # with it their pipes; here it lives on): ended now, as CheckContext.close does, so that
                # they are not counted against the live executor.
                cfg.sandbox.sweep_processes(include_shared_helpers=False, grace=cfg.time.budget("settle"),
                                            wait=False)

    @_guarded
    def _final_drain(self) -> None:
        self._absorb()
        if not self.ended:
            for item in self.tracked:
                if item.spec.held and not item.released:
                    item.released = True
                    self.h.release(item.task)
            self._drain_outstanding()
            self._end()
        self.check_properties()
        self._check_against_journal()

    def _awaited(self) -> list[Any]:
        """What the drain waits for: outstanding tasks (bar unserved ones the executor keeps waiting in
        ``queued_tasks``, its right under HB-7) and workloads."""
        ex = self.h.executor
        left: list[Any] = [t for t in self.tracked if t.outstanding and not t.dropped and t.task.key in self.h.tasks
                           and not (t.spec.unserved and t.task.key in ex.queued_tasks)]
        return left + [_WorkloadView(k, *self.workloads[k]) for k in self._outstanding_workloads()]

    def _drain_outstanding(self) -> None:
        """Heartbeat until every outstanding task has its terminal event (the invariants run at each loop:
        work that ended more than the ``report`` budget ago without one fails at once).

        The budget is an ``event`` budget *without progress*: a backend that works through a long queue at
        parallelism 1 is still reporting, so each terminal event that arrives renews it; only an ``event``
        budget in which nothing was reported at all is evidence that an event will never come."""
        h = self.h

        def loop() -> None:
            h.heartbeat()
            self._take_events()
            self.check_properties()

        def fewer_than(count: int) -> Callable[[], bool]:
            return lambda: len(self._awaited()) < count

        while self._awaited():
            try:
                wait_until(fewer_than(len(self._awaited())), "every outstanding task's terminal event",
                           h.budget("event"), poll=0.02, each=loop, judged=True)
            except WaitTimedOut:
                names = [getattr(t, "task_id", None) or t.task.task_id for t in self._awaited()]
                self._violated("every queued task gets a terminal event",
                               f"after draining for {h.budget('event'):.1f}s with no terminal event arriving, none "
                               f"for {names}")

    def _outstanding_workloads(self) -> list[Any]:
        terminal = compat.terminal_states()  # str enums: a CallbackState.SUCCESS is "success" too
        done = {e.key for h in self._harnesses() for e in h.events if e.state in terminal}
        return [k for k in self.workloads if k not in done]

    def _check_against_journal(self) -> None:
        states = compat.state_enum()
        journal = self.h.journal()
        self._check_workloads_against_journal()
        ex = self.h.executor
        for item in self.tracked:
            if item.dropped or item.task.key not in self.h.tasks:
                continue
            runs = journal.runs_of(item.task.task_id)
            if item.outstanding:
                # After end(), an executor that adopts may leave work running for the next scheduler; work
                # never dispatched (still queued: an unserved queue, or end() before a slot) is no loss.
                left_for_next = self.config.can_adopt and any(
                    r.finished is None or r.finished > self.ended_at for r in runs)
                never_dispatched = item.task.key in ex.queued_tasks or len(runs) < item.accepted
                if not (left_for_next or never_dispatched):
                    self._violated("every queued task gets a terminal event",
                                   f"{_describe_key(item.task.key)} ({len(runs)} runs) never got one after end()")
            if item.reports and not runs:
                self._violated("events match the journal",
                               f"{_describe_key(item.task.key)} reported {item.reports[0][0]} but never ran")
            for state, index in item.reports:
                if index >= len(runs):
                    continue
                run = runs[index]
                expected = _expected_states(item.spec.kind, run.outcome, states)
                if state not in expected:
                    self._violated("events match the journal",
                                   f"{_describe_key(item.task.key)} ({item.spec.kind}, outcome {run.outcome}) "
                                   f"reported {state}; expected {sorted(str(s) for s in expected)}")

    def _check_workloads_against_journal(self) -> None:
        """Each callback / connection test: one terminal event, SUCCESS, with its own key and state
        classes (CallbackKey/CallbackState, ConnectionTestKey/ConnectionTestState), and it ran once."""
        journal = self.h.journal()
        terminal = compat.terminal_states()
        for key, (kind, probe) in self.workloads.items():
            events = [e for h in self._harnesses() for e in h.events if e.key == key and e.state in terminal]
            runs = journal.runs_of(probe)
            if not events:
                if runs or not self.ended:  # as for tasks: never dispatched before end() is no loss
                    self._violated("every queued workload gets a terminal event",
                                   f"the {kind} {key!r} ({len(runs)} runs) never got one")
                continue
            if len(events) > 1:
                self._violated("nothing is reported for a key and try after its terminal event",
                               f"the {kind} {key!r} got {len(events)} terminal events")
            state_class = type(key).__name__.replace("Key", "State")
            if type(events[0].state).__name__ != state_class or str(events[0].state) != "success":
                self._violated("events match the journal", f"the {kind} {key!r} was reported {events[0].state!r} "
                               f"({type(events[0].state).__name__}); a no-op {kind} ends {state_class}.SUCCESS")
            if len(runs) != 1:
                self._violated("events match the journal", f"the {kind} {key!r} ran {len(runs)} times")


class _GiveUps(logging.Handler):
    """Collects the keys an executor's base class logs that it gave up on: Airflow 2's
    ``BaseExecutor.trigger_tasks`` says "could not queue task <key> (still running after N attempts)"."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self._keys: list[Any] = []
        self._loggers: list[logging.Logger] = []
        self._lock_keys = threading.Lock()

    def watch(self, executor: Any) -> None:
        logger = getattr(executor, "log", None)
        if isinstance(logger, logging.Logger) and logger not in self._loggers:
            logger.addHandler(self)
            self._loggers.append(logger)

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        if message.startswith("could not queue task") and "still running" in message and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            with self._lock_keys:
                self._keys.append(args[0])

    def take(self) -> list[Any]:
        with self._lock_keys:
            keys, self._keys = self._keys, []
        return keys

    def close(self) -> None:
        for logger in self._loggers:
            logger.removeHandler(self)
        self._loggers = []
        super().close()


def _state_of(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) and value else value


def _allowed_states() -> frozenset[Any]:
    states = compat.state_enum()
    return frozenset({states.QUEUED, states.RUNNING, states.SUCCESS, states.FAILED})


def _expected_states(kind: str, outcome: str | None, states: Any) -> frozenset[Any]:
    """What a task's terminal event may say, from what its probe really did (SPEC EVT-1, by major)."""
    either = frozenset({states.SUCCESS, states.FAILED})
    if kind == ProbeKind.OK.value or outcome == "released":
        return frozenset({states.SUCCESS})
    if kind == ProbeKind.FAIL.value or outcome == "hang_timeout":
        return either if compat.is_airflow3() else frozenset({states.FAILED})
    return frozenset({states.FAILED})  # raise, crash, kill, killworker: never SUCCESS


def _describe_key(key: Any) -> str:
    if not hasattr(key, "task_id"):
        return repr(key)
    return (f"{key.dag_id}/{key.task_id}/{key.run_id} try {key.try_number}"
            + (f" map_index {key.map_index}" if getattr(key, "map_index", -1) != -1 else ""))


def _nearest_known(unknown: Any, known: dict[Any, Tracked]) -> str:
    """Which queued key an unknown one was probably rebuilt from, and which fields differ."""
    for key in known:
        if getattr(key, "task_id", None) == getattr(unknown, "task_id", object()):
            fields = ("dag_id", "task_id", "run_id", "try_number", "map_index")
            diff = [f"{f} {getattr(key, f, None)!r} -> {getattr(unknown, f, None)!r}" for f in fields
                    if getattr(key, f, None) != getattr(unknown, f, None)]
            return (f"; it looks like the queued key {_describe_key(key)} rebuilt with {', '.join(diff)}: report "
                    "events under the exact key you were given (keep it; do not rebuild it from names)")
    return ""


@dataclass(frozen=True)
class _WorkloadView:
    """A queued callback / connection test as the drain sees it (key, kind, probe task id)."""

    key: Any
    kind: str
    task_id: str


def other_workloads(profile: ExecutorProfile) -> tuple[str, ...]:
    """The non-task workloads the executor declares, where the installed Airflow has them."""
    if not compat.has_other_workloads():
        return ()
    cls = profile.executor_type()
    return tuple(kind for kind, flag in (("callback", "supports_callbacks"),
                                          ("connection test", "supports_connection_test"))
                 if getattr(cls, flag, False))


def machine_for(profile: ExecutorProfile, sandbox: Sandbox | None = None, time_model: TimeModel | None = None,
                capabilities: dict[str, bool] | None = None, hypothesis_profile: str = "ci",
                share: float = 1.0) -> type[ExecutorMachine]:
    """``ExecutorMachine`` bound to ``profile`` (capabilities read once) with its budgets.

    ``share`` is this instance's part of the exploration budget when several explore at once (lanes on
    separate executor instances): the budget is counted in round trips of exploration, so ``n`` lanes
    spend it in 1/n of the wall time -- never below the floor each."""
    caps = capabilities if capabilities is not None else profile.capability_set()
    tm = time_model or TimeModel()
    factor = PROFILES[hypothesis_profile]["budget_factor"] if hypothesis_profile in PROFILES else 1.0
    exploration = max(tm.budget("state_machine") * factor * share, FLOORS["state_machine"] * tm.scale)
    exploration, cut = capped(exploration)
    config = MachineConfig(profile=profile, sandbox=sandbox or ensure_active(), time=tm,
                           can_revoke=bool(caps.get("revoke")), can_adopt=bool(caps.get("adoption")),
                           can_hold=not getattr(profile.executor_type(), "is_single_threaded", False),
                           other_workloads=other_workloads(profile),
                           deadline=time.monotonic() + exploration, ceiling_cut=cut,
                           shrink_budget=capped(tm.budget("shrink") * factor)[0])
    return type("ExecutorMachine", (ExecutorMachine,), {"config": config})


def run_stateful(profile: ExecutorProfile, sandbox: Sandbox, *, hypothesis_profile: str = "ci",
                 derandomize: bool = False, reproducer_dir: Path | None = None, time_model: TimeModel | None = None,
                 capabilities: dict[str, bool] | None = None, seed: int | None = None,
                 shrink: bool = True, examples: int | None = None, share: float = 1.0) -> Exploration:
    """Run the machine; return what it explored, or raise PropertyViolated with the minimal programme and
    a reproducer built from the recorded steps.

    ``seed`` fixes the programmes hypothesis generates (the certificate records it, so a run can be
    repeated exactly); None leaves hypothesis its own random choice. ``shrink=False`` reports the first
    failing programme as found. ``examples`` explores that many programmes whatever they cost, instead of a
    time budget: with ``derandomize`` the same programmes on any machine (the suite's own tests, which ask
    whether a bug is caught and must not depend on how busy the machine is)."""
    explored = Exploration()
    deadline: float | None = None
    for attempt in range(_GENERATION_ATTEMPTS):
        left = None if examples is None else examples - explored.examples
        if left is not None and left <= 0:
            break
        try:
            return _merged(explored, _run_once(
                profile, sandbox, hypothesis_profile=hypothesis_profile, derandomize=derandomize and not attempt,
                reproducer_dir=reproducer_dir, time_model=time_model, capabilities=capabilities,
                seed=seed if not attempt else (seed or 0) + attempt, shrink=shrink, examples=left, share=share,
                deadline=deadline))
        except _GenerationFlaked as flaked:
            # Hypothesis saw a programme draw differently on a second pass (a rule's precondition reads the
            # executor's state, which timing moves): not evidence against the executor. Explore on with the
            # next seed, within what is left of the same budget.
            explored = _merged(explored, flaked.exploration)
            deadline = flaked.deadline
    return explored


#: restarts of generation after hypothesis found its data generation inconsistent (timing-dependent rules)
_GENERATION_ATTEMPTS = 4


class _GenerationFlaked(Exception):
    def __init__(self, exploration: Exploration, deadline: float):
        super().__init__("hypothesis' data generation was inconsistent")
        self.exploration = exploration
        self.deadline = deadline


def _merged(a: Exploration, b: Exploration) -> Exploration:
    return Exploration(examples=a.examples + b.examples, steps=a.steps + b.steps, tasks=a.tasks + b.tasks,
                       most_tasks_in_one_programme=max(a.most_tasks_in_one_programme, b.most_tasks_in_one_programme),
                       seconds=a.seconds + b.seconds)


def _run_once(profile: ExecutorProfile, sandbox: Sandbox, *, hypothesis_profile: str, derandomize: bool,
              reproducer_dir: Path | None, time_model: TimeModel | None, capabilities: dict[str, bool] | None,
              seed: int | None, shrink: bool, examples: int | None, share: float,
              deadline: float | None) -> Exploration:
    machine = machine_for(profile, sandbox, time_model, capabilities, hypothesis_profile, share)
    if deadline is not None:
        machine.config.deadline = deadline
    if examples is not None:
        machine.config.deadline = float("inf")
        machine.config.ceiling_cut = False
    if seed is not None and not derandomize:
        from hypothesis import seed as fix_seed

        machine = fix_seed(seed)(machine)  # run_state_machine_as_test honours @seed on the machine class
    config = machine.config
    started = time.monotonic()
    try:
        run_state_machine_as_test(machine, settings=hypothesis_settings(hypothesis_profile, derandomize, shrink,
                                                                        examples))
    except Exception as exc:
        config.exploration.seconds = time.monotonic() - started
        group = getattr(exc, "exceptions", None)
        if isinstance(group, tuple) and group:  # an exception group: report the first real failure
            exc = next((e for e in group if isinstance(e, PropertyViolated)), group[0])
        if isinstance(exc, CeilingReached) and not config.violations:
            raise CeilingReached(f"{exc} ({config.exploration.describe()})") from None
        if not config.violations and type(exc).__name__ in ("FlakyStrategyDefinition", "FlakyReplay", "Flaky"):
            raise _GenerationFlaked(config.exploration, config.deadline) from None
        if not config.violations:
            if isinstance(exc, BudgetSpent) or config.out_of_time():
                # The budget ended generation (hypothesis may call a programme cut short 'flaky'): every
                # step that ran held.
                return _unless_cut(config)
            raise PropertyViolated(f"the executor broke no named SPEC PROP invariant, but a step raised: "
                                   f"{type(exc).__name__}: {exc}") from None
        shrunk = isinstance(exc, PropertyViolated)
        prop, steps, what = config.violations[-1] if shrunk else min(config.violations, key=lambda v: len(v[1]))
        detail = str(exc) if shrunk else (
            f"SPEC PROP {prop}: {what}\nIt broke {len(config.violations)} times; "
            + ("the shrink budget ended the shrinking" if config.out_of_time() or isinstance(exc, BudgetSpent)
               else "hypothesis could not replay it (the executor's behaviour is timing-dependent)")
            + ". The shortest programme seen is below.")
        path = write_reproducer(profile, steps, reproducer_dir, config.time)
        programme = "\n".join(steps)
        replays = replay_until_recurs(profile, config, steps, capabilities, hypothesis_profile)
        listing = (f"({len(steps)} steps; {config.exploration.describe()}):\n{textwrap.indent(programme, '    ')}"
                   f"\n\nReplay it: pytest {path}")
        if not any(replays):
            raise NotReproduced(
                f"{detail.splitlines()[0]}\n\nThis did not recur: the same programme replayed {len(replays)} "
                f"time(s) under the run's time model kept every invariant, so it is not evidence against the "
                f"executor (a timing-dependent outcome, the executor's or the machine's). "
                f"Programme {listing}") from None
        recurred = next(r for r in replays if r)
        again = (f"It recurred on replay {replays.index(recurred) + 1} of {len(replays)}"
                 + ("" if recurred.split(":", 1)[0] == detail.split(":", 1)[0] else f", as: {recurred}") + ".")
        raise PropertyViolated(f"{detail}\n{again}\n\nMinimal failing programme {listing}") from None
    config.exploration.seconds = time.monotonic() - started
    return _unless_cut(config)


def _unless_cut(config: MachineConfig) -> Exploration:
    """The exploration of a pass -- unless the run's ceiling cut its budget short: then less was explored
    than a certificate promises, and the check is inconclusive, never a pass."""
    if config.ceiling_cut:
        raise CeilingReached(f"the state machine's exploration budget was cut short ({config.exploration.describe()})")
    return config.exploration


#: replays of a failing programme before its verdict: the first that recurs ends them (a deterministic defect
#: costs one replay); more than one only while the shrink budget lasts
REPLAYS = 3


def replay_until_recurs(profile: ExecutorProfile, config: MachineConfig, steps: list[str],
                        capabilities: dict[str, bool] | None, hypothesis_profile: str) -> list[str]:
    """Replay ``steps`` on fresh executors under the run's time model, checking the invariants after each
    step as the machine did, until a violation recurs; returns each replay's finding ('' where none)."""
    found: list[str] = []
    while len(found) < REPLAYS and (not found or time.monotonic() < config.shrink_deadline):
        machine = machine_for(profile, config.sandbox, config.time, capabilities, hypothesis_profile)
        machine.config.deadline = float("inf")  # a replay is not an exploration: no exploration budget
        found.append(_replay_once(machine, steps))
        if found[-1]:
            break
    return found


def _replay_once(machine: type[ExecutorMachine], steps: list[str]) -> str:
    state = machine()
    namespace = {"state": state, "TaskSpec": TaskSpec}
    try:
        try:
            for step in steps:
                exec(step, namespace)  # the recorded call, exactly as the reproducer file replays it
                state.check_properties()
        finally:
            state.teardown()
    except PropertyViolated as exc:
        return str(exc).split("\n", 1)[0]
    return ""


def write_reproducer(profile: ExecutorProfile, steps: list[str], directory: Path | None = None,
                     time_model: TimeModel | None = None) -> Path:
    """A standalone pytest file that rebuilds the executor by its dotted path and replays the recorded
    steps, checking the SPEC PROP invariants after each one, as the machine did."""
    target = directory or Path(tempfile.mkdtemp(prefix="conformance-reproducer-"))
    target.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"        {step}\n        state.check_properties()" for step in steps)
    kwargs = json.dumps(profile.executor_kwargs) if profile.executor_kwargs else None
    name = profile.label.replace(".", "_").replace(":", "_")
    # each lane (a process of its own) writes its own file
    path = target / f"test_reproduce_{name}.py"
    if path.exists():
        path = target / f"test_reproduce_{name}_{os.getpid()}.py"
    tm = time_model or TimeModel()
    timing = f"TimeModel(scale={tm.scale!r}, calibration=Calibration(**{tm.calibration.as_dict()!r}))"
    path.write_text(
        f'''"""Replays a failing executor-conformance state-machine programme for {profile.label}.

Generated by airflow-executor-conformance. Run it with: pytest {path.name}
"""
import atexit

from conformance.groundtruth.sandbox import ensure_active

atexit.register(ensure_active().deactivate)  # a private AIRFLOW_HOME before Airflow is imported; removed at exit

from conformance.harness.profile import ExecutorProfile  # noqa: E402
from conformance.harness.stateful import machine_for  # noqa: E402
from conformance.harness.strategies import TaskSpec  # noqa: E402,F401
from conformance.harness.timing import Calibration, TimeModel  # noqa: E402

#: the failing run's time model: the replay judges by the budgets that judged the run
TIME_MODEL = {timing}


def test_reproduce():
    machine = machine_for(ExecutorProfile.from_path({profile.label!r}, {kwargs!r}), time_model=TIME_MODEL)
    machine.config.deadline = float("inf")  # a replay is not an exploration: no exploration budget
    state = machine()
    try:
{body}
    finally:
        state.teardown()
''')
    return path

"""The scheduler's moves as hypothesis rules (``ExecutorMachine``), the accounting of the event stream
they produce, and the final drain. Each rule is a history the installed scheduler can produce (SPEC PROP's
table); the invariants are ``properties.SpecProperties``."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

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
)

from conformance.groundtruth.journal import Journal
from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.outcomes import describe_exception
from conformance.harness.scheduler import CallTimedOut, Event, SchedulerHarness
from conformance.harness.stateful.model import (
    ADOPTION_BATCH,
    MAX_ADOPTIONS,
    MAX_HELD,
    MAX_OUTSTANDING,
    MAX_UNSERVED,
    OWNER,
    _allowed_states,
    _expected_states,
    _GiveUps,
)
from conformance.harness.stateful.properties import SpecProperties
from conformance.harness.stateful.records import (
    BudgetSpent,
    MachineConfig,
    PropertyViolated,
    Tracked,
    _describe_key,
    _WorkloadView,
)
from conformance.harness.strategies import (
    DAGS,
    EXECUTOR_CONFIGS,
    HELD,
    LONG_WAVE,
    QUEUES,
    RUNS,
    TaskSpec,
    parallelisms,
    task_specs,
)
from conformance.harness.timing import CeilingReached, WaitTimedOut, wait_until

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


class ExecutorMachine(SpecProperties, RuleBasedStateMachine):
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

    def _queue_specs(self, specs: list[TaskSpec], capped: bool = True) -> list[int]:
        """Queue ``specs`` to the live scheduler's executor. ``capped``: within the outstanding, held and
        unserved caps (a rule that builds a situation of its own -- a long wave, an adoption batch -- releases
        what it holds before it returns, and passes False)."""
        self._absorb()
        numbers = []
        for spec in specs:
            if capped and sum(1 for t in self.tracked if t.outstanding and not t.dropped) >= MAX_OUTSTANDING:
                break
            if spec.held and not self.config.can_hold:
                spec = spec._replace(kind=ProbeKind.OK.value)
            if capped and spec.held and self._outstanding_where(held=True) >= MAX_HELD:
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
        def in_flight(t: Tracked, journal: Journal) -> bool:
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
        journal = self.h.journal()
        item = next((t for t in (*first, *held, *self.tracked) if in_flight(t, journal)), None)
        if (item is None or not item.awaits_release) and self._room_for(1):
            # No held task in flight: start one (a task about to defer), so that its process is still tearing
            # down when its key comes back -- a short task's process may be gone before the next heartbeat.
            built = self._start_one_held()
            item = built if built is not None and in_flight(built, self.h.journal()) else item
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

    def _room_for(self, slots: int) -> bool:
        """Whether ``slots`` more tasks of this programme could run now (held work may be added at all)."""
        if not self.config.can_hold or self._outstanding_where(held=True) >= MAX_HELD:
            return False
        limit = compat.effective_parallelism(self.h.executor)
        return limit is None or limit - self._busy() >= slots

    def _start_one_held(self) -> Tracked | None:
        """Queue one held task and loop until it started (an event budget at most); None if it did not."""
        numbers = self._queue_specs([TaskSpec(kind=HELD)])
        if not numbers or not self.tracked[numbers[0]].spec.held:
            return None
        item = self.tracked[numbers[0]]
        self._loop_until(lambda: self.h.journal().started(item.task.task_id), self.h.budget("event"))
        return item if self.h.journal().started(item.task.task_id) else None

    @precondition(lambda self: not self.ended and self.config.can_hold and self._room_for_long_wave())
    @rule(target=tasks, shorts=st.integers(min_value=1, max_value=2))
    @_guarded
    def queue_long_wave(self, shorts: int) -> MultipleResults[int]:
        """Finished work behind long work: ``LONG_WAVE`` long tasks -- more than a status page or a small table
        of job handles holds -- are in flight, then short tasks are queued beside them; each short task must be
        reported within the report budget while the long ones still run (PROP-7), whatever the long ones are.

        The situation is built, not hoped for: the long tasks are held until the short ones are reported (or
        their report is overdue, which the invariants judge), then released. Programmes get the room for it
        from a wide parallelism (``parallelisms``) or Airflow 2's unlimited one."""
        self._did("queue_long_wave", shorts=shorts)
        self._absorb()
        self._make_room(LONG_WAVE + shorts)
        long_ones = self._queue_specs([TaskSpec(kind=HELD, map_index=i) for i in range(LONG_WAVE)], capped=False)
        try:
            self._loop_until(lambda: all(self.h.journal().started(self.tracked[n].task.task_id) for n in long_ones),
                             self.h.budget("event"))
            numbers = self._queue_specs([TaskSpec(run=1, map_index=i) for i in range(shorts)], capped=False)
            report = self.h.budget("report")

            def reported_or_overdue() -> bool:
                journal = self.h.journal()
                for n in numbers:
                    item = self.tracked[n]
                    ended = [r.finished for r in journal.runs_of(item.task.task_id) if r.finished is not None]
                    overdue = bool(ended) and time.monotonic() - max(ended) > report
                    if item.outstanding and not overdue:
                        return False
                return True

            self._loop_until(reported_or_overdue, self.h.budget("event") + report)
            self.check_properties()  # an overdue short task is PROP-7's finding, named while the wave runs
        finally:
            for n in long_ones:
                item = self.tracked[n]
                item.released = True
                self.h.release(item.task)
        return multiple(*long_ones, *numbers)

    def _room_for_long_wave(self) -> bool:
        """A wide executor: a long wave and its short tasks fit in its slots (what is in flight is released and
        drained first, ``_make_room``)."""
        if self.harness is None:
            return False
        limit = compat.effective_parallelism(self.h.executor)
        return limit is None or limit >= LONG_WAVE + 2

    def _make_room(self, wanted: int) -> None:
        """Release held work and loop until ``wanted`` slots are free of this programme's outstanding work (or
        an event budget passed: the wave then waits for slots, which judges nothing)."""
        for item in self.tracked:
            if item.awaits_release and item.task.key in self.h.tasks:
                item.released = True
                self.h.release(item.task)
        limit = compat.effective_parallelism(self.h.executor)
        if limit is None:
            return
        self._loop_until(lambda: limit - self._busy(served_only=True) >= wanted, self.h.budget("event"))

    def _loop_until(self, condition: Callable[[], bool], budget: float,
                    what: str = "the situation to be built") -> None:
        """Scheduler loops until ``condition`` holds or ``budget`` is spent (no verdict here: the invariants
        judge what the loops saw). The scheduler reads the buffer after every heartbeat (an executor may rely
        on it: the buffer keeps one event per key), so a heartbeat here is always followed by a read."""
        def loop() -> None:
            self.h.heartbeat()
            self._take_events()

        with contextlib.suppress(WaitTimedOut):
            wait_until(condition, what, budget, poll=0.02, each=loop)
        self._absorb()

    def _busy(self, *, served_only: bool = False) -> int:
        """Outstanding tasks of the live executor (``served_only``: not on a queue nobody serves)."""
        return sum(1 for t in self.tracked if t.outstanding and not t.dropped and t.task.key in self.h.tasks
                   and not (served_only and t.spec.unserved))

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
        if not self._progress_possible():
            return
        before = self._progress_mark()
        # nothing moved in a window: the invariants judge that
        self._loop_until(lambda: self._progress_mark() != before, self.h.budget("window"),
                         "the executor or its work to move")

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
        self.h.revoke(item.task)
        item.dropped, item.dropped_at = True, time.monotonic()

    @precondition(lambda self: self.config.can_adopt and not self.ended and self.steps >= 3
                  and len(self.retired) < MAX_ADOPTIONS)
    @rule(fewer_slots=st.booleans())
    @_guarded
    def adopt_into_fresh_executor(self, fewer_slots: bool = False) -> None:
        """The scheduler dies; a new one adopts everything outstanding that carries an external id
        (``adopt_or_reset_orphaned_tasks``: every orphan of a dead job, whatever the new executor's
        parallelism -- ``fewer_slots`` gives it fewer slots than it adopts, as a restart with another
        ``[core] parallelism`` or one scheduler adopting several dead ones' work does).

        The situation is built: at least ``ADOPTION_BATCH`` held tasks are in flight (with their external
        ids) when the scheduler dies; after the adoption a short task is queued to the new executor, which
        must not start it while adopted work fills its slots (PROP-5); then the adopted tasks end with
        *different* outcomes (one succeeds, the next crashes), so that an executor watching another task's
        job reports the wrong one (PROP-10's journal match)."""
        self._did("adopt_into_fresh_executor", fewer_slots=fewer_slots)
        self._absorb()
        states = compat.state_enum()
        old = self.h
        self._hold_a_batch_for_adoption()
        old.abandon()
        candidates: list[tuple[Tracked, Any, str]] = []
        for item in self.tracked:
            if item.dropped or not item.outstanding or item.task.key not in old.tasks:
                continue
            ext = next((e.info for e in old.events_for(item.task.key)
                        if e.state in (states.QUEUED, states.RUNNING) and isinstance(e.info, str)), None)
            if item.task.key in old.executor.queued_tasks or ext is None or item.requeued:
                item.dropped, item.dropped_at = True, time.monotonic()  # the scheduler resets it
                continue
            ti = compat.adoption_ready(item.task.handle, job_id=old.job_id, external_executor_id=ext, running=True)
            candidates.append((item, ti, ext))
        parallelism = int(getattr(old.executor, "parallelism", 1) or 0)
        if fewer_slots and len(candidates) >= 2:
            parallelism = len(candidates) - 1 if parallelism == 0 else max(1, min(parallelism, len(candidates) - 1))
        new = self._new_harness(f"E{len(self.retired) + 1}", job_id=len(self.retired) + 2, parallelism=parallelism)
        returned = {id(ti) for ti in new.adopt([ti for _, ti, _ in candidates])}
        adopted: list[Tracked] = []
        for item, ti, _ext in candidates:
            if id(ti) in returned:
                item.dropped, item.dropped_at = True, time.monotonic()
            else:
                new.tasks[item.task.key] = item.task  # adopted: the new scheduler now waits for its event
                adopted.append(item)
        for key in self._outstanding_workloads():  # not adopted: the scheduler times them out itself
            self.dropped_workloads[key] = self.workloads.pop(key)
        self.retired.append(old)
        self.harness = new
        kept = [ext for item, ti, ext in candidates if id(ti) not in returned]
        shared = sorted({ext for ext in kept if kept.count(ext) > 1})
        if shared:
            self._violated("each external id names one task's work",
                           f"the adopting executor kept several TIs for the external id(s) {shared[:3]}: adopted "
                           "work is found by its external id, so one id must name one task's job")
        self._after_adoption(adopted)

    def _hold_a_batch_for_adoption(self) -> None:
        """Held tasks in flight, with external ids, before the scheduler dies (room permitting)."""
        limit = compat.effective_parallelism(self.h.executor)
        in_flight = [t for t in self.tracked if t.awaits_release and t.outstanding and not t.dropped
                     and not t.requeued and t.task.key in self.h.tasks]
        wanted = ADOPTION_BATCH - len(in_flight)
        if not self.config.can_hold or wanted <= 0 or (limit is not None and limit - self._busy() < wanted):
            return
        numbers = self._queue_specs([TaskSpec(kind=HELD, run=2, map_index=i) for i in range(wanted)], capped=False)
        states = compat.state_enum()

        def has_external_id(n: int) -> bool:
            return any(e.state in (states.QUEUED, states.RUNNING) and isinstance(e.info, str)
                       for e in self.h.events_for(self.tracked[n].task.key))

        self._loop_until(lambda: all(has_external_id(n) for n in numbers), self.h.budget("event"))

    def _after_adoption(self, adopted: list[Tracked]) -> None:
        """Work queued to the new executor while adopted work is in flight, then the adopted work ends with
        mixed outcomes."""
        held = [t for t in adopted if t.awaits_release]
        if not held:
            return
        self._queue_specs([TaskSpec(run=2, map_index=len(held))], capped=False)
        self._loop_until(lambda: False, self.h.budget("window"))  # its chance to start too early (PROP-5)
        self.check_properties()
        for index, item in enumerate(held):
            item.released = True
            self.h.release(item.task, crash=index % 2 == 1)

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

    @invariant()
    def spec_prop(self) -> None:
        if self.harness is None:
            return
        self._absorb()
        self.check_properties()

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

"""Property-based testing of an executor: hypothesis drives sequences of scheduler actions.

``ExecutorMachine`` is a module-level ``RuleBasedStateMachine`` (hypothesis' own idiom) whose rules
are the scheduler's moves (queue, heartbeat, wait a little, get_event_buffer with and without a dag
filter, revoke, adopt into a fresh executor, end) -- gated by the executor's capabilities -- and whose
invariants are SPEC PROP, checked after every step and once more after the final drain in ``teardown``.
``machine_for(profile)`` binds it to one executor; ``check_properties`` finds the invariants on the
class, so a new invariant cannot be left out of reproducers.

The whole run -- generation and shrinking -- fits the time model's ``state_machine`` budget. Every
violation is recorded with the invariant and the rules that led to it, so a verdict always names
both, even when hypothesis cannot replay a timing-dependent failure or the budget ends the shrinking.
On failure ``run_stateful`` writes a standalone pytest file that replays the programme.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conformance import airflow_compat as compat
from conformance.harness import QueuedTask, SchedulerHarness
from conformance.probes import Probe, ProbeKind
from conformance.profile import ExecutorProfile
from conformance.sandbox import Sandbox, ensure_active
from conformance.strategies import DAGS, dag_filters, dag_indexes, delays_ms, priorities, probe_kinds
from conformance.timing import TimeModel, WaitTimedOut, wait_until

PARALLELISM = 2
MAX_OUTSTANDING = 6

PROFILES: dict[str, dict[str, Any]] = {
    "ci": dict(max_examples=25, stateful_step_count=15),
    "thorough": dict(max_examples=200, stateful_step_count=25),
}
_PROPERTY = "_spec_property"


def hypothesis_settings(profile: str = "ci", derandomize: bool = False) -> settings:
    """``ci`` (a few dozen examples, seconds) or ``thorough`` (hundreds). No deadline: the time model
    owns budgets. No example database: nothing is written outside the sandbox."""
    if profile not in PROFILES:
        raise ValueError(f"unknown hypothesis profile {profile!r}; choose one of {sorted(PROFILES)}")
    return settings(deadline=None, database=None, derandomize=derandomize, print_blob=True,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink], **PROFILES[profile])


class PropertyViolated(AssertionError):
    """A SPEC PROP invariant failed; the message names the property and the rules that led there."""


class BudgetSpent(Exception):
    """The state machine's time budget is used up: no new example is started."""


def spec_property(text: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """``@invariant()`` that also names the SPEC PROP clause it checks (found by ``check_properties``)."""
    def mark(func: Callable[[Any], None]) -> Callable[[Any], None]:
        wrapped: Callable[[Any], None] = invariant()(func)
        setattr(wrapped, _PROPERTY, text)
        return wrapped
    return mark


@dataclass
class MachineConfig:
    """What one binding of the machine knows: the executor, where it runs, and its budgets."""

    profile: ExecutorProfile
    sandbox: Sandbox
    time: TimeModel
    can_revoke: bool
    can_adopt: bool
    #: the non-task workloads the executor declares (Airflow 3.3+): "callback", "connection test"
    other_workloads: tuple[str, ...] = ()
    deadline: float = float("inf")
    #: every violation seen (invariant, rules): the smallest is reported if hypothesis cannot shrink
    violations: list[tuple[str, list[str]]] = field(default_factory=list)


class ExecutorMachine(RuleBasedStateMachine):
    config: ClassVar[MachineConfig]

    def __init__(self) -> None:
        if time.monotonic() > self.config.deadline:
            raise BudgetSpent("the state machine's time budget is used up")
        super().__init__()
        self.programme: list[str] = []
        self.harness = self._new_harness("A", job_id=1)
        self.retired: list[SchedulerHarness] = []
        self.revoked: set[Any] = set()
        self.revoked_at: dict[str, float] = {}
        self.known: dict[Any, QueuedTask] = {}
        #: callbacks and connection tests queued (key -> (kind, probe task id)); reset ones are dropped
        self.workloads: dict[Any, tuple[str, str]] = {}
        self.dropped_workloads: dict[Any, tuple[str, str]] = {}  # in flight when their scheduler 'died'
        self.ended = False
        self.ended_at = float("inf")
        self.steps = 0  # preconditions may only read deterministic state (hypothesis replays)
        self.heartbeats = 0

    def _new_harness(self, name: str, job_id: int) -> SchedulerHarness:
        cfg = self.config
        h = SchedulerHarness(cfg.profile.build(parallelism=PARALLELISM), cfg.sandbox, name=name, job_id=job_id,
                             time_model=cfg.time, owner="stateful.scheduler_action_sequences")
        return h.start()

    # -- helpers ----------------------------------------------------------------------------
    def _did(self, step: str) -> None:
        self.programme.append(step)

    def _events(self) -> list[Any]:
        return [e for h in (*self.retired, self.harness) for e in h.events]

    def _outstanding(self) -> list[QueuedTask]:
        terminal = compat.terminal_states()
        done = {e.key for e in self._events() if e.state in terminal}
        return [t for k, t in self.known.items() if k not in done and k not in self.revoked]

    def _violated(self, prop: str, detail: str) -> None:
        self.config.violations.append((prop, list(self.programme)))
        raise PropertyViolated(f"SPEC PROP {prop}: {detail}\nRules so far: {' -> '.join(self.programme)}\n"
                               + self.harness.format_transcript(30))

    def _limit(self) -> int | None:
        return compat.effective_parallelism(self.harness.executor)

    # -- rules: the scheduler's moves --------------------------------------------------------
    @initialize(tasks=st.lists(st.tuples(probe_kinds(), delays_ms(), priorities(), dag_indexes()),
                               min_size=2, max_size=4))
    def first_tasks(self, tasks: list[tuple[str, int, int, int]]) -> None:
        """Every programme starts with work queued: an idle executor teaches little."""
        self.queue(tasks)

    @precondition(lambda self: not self.ended)
    @rule(tasks=st.lists(st.tuples(probe_kinds(), delays_ms(), priorities(), dag_indexes()),
                         min_size=1, max_size=3))
    def queue(self, tasks: list[tuple[str, int, int, int]]) -> None:
        """The scheduler queues up to three TIs in one loop (kind, delay ms, priority, dag)."""
        self.steps += 1
        self._did(f"queue({tasks})")
        self._queue_tasks(tasks)

    def _queue_tasks(self, tasks: list[tuple[str, int, int, int]]) -> None:
        for kind, delay_ms, priority, dag in tasks:
            if len(self._outstanding()) >= MAX_OUTSTANDING:
                return
            task = self.harness.queue(Probe.new(ProbeKind(kind), delay=delay_ms / 1000),
                                      priority=priority, dag_id=DAGS[dag])
            self.known[task.key] = task

    @precondition(lambda self: bool(self.config.other_workloads) and not self.ended)
    @rule(pick=st.integers(min_value=0, max_value=1),
          tasks=st.lists(st.tuples(probe_kinds(), delays_ms(), priorities(), dag_indexes()), max_size=2))
    def queue_other_workload(self, pick: int, tasks: list[tuple[str, int, int, int]]) -> None:
        """The 3.3 scheduler queues a deadline callback or a connection test (whichever the executor
        declares; its import path / connection id is a no-op probe), and tasks in the same loop."""
        self.steps += 1
        kind = self.config.other_workloads[pick % len(self.config.other_workloads)]
        self._did(f"queue_other_workload({pick}, {tasks})")
        self._queue_workload(kind)
        self._queue_tasks(tasks)

    def _queue_workload(self, kind: str) -> None:
        if len(self._outstanding()) + len(self._outstanding_workloads()) >= MAX_OUTSTANDING:
            return
        probe = Probe.new(ProbeKind.OK)
        self.config.sandbox.claim(probe.task_id, "stateful.scheduler_action_sequences")
        make = compat.make_callback_workload if kind == "callback" else compat.make_connection_test_workload
        workload = make(probe.task_id)
        self.harness.call(f"queue_workload({type(workload).__name__})", self.harness.executor.queue_workload,
                          workload, None)
        self.workloads[compat.workload_key(workload)] = (kind, probe.task_id)

    def _outstanding_workloads(self) -> list[Any]:
        terminal = compat.terminal_states()  # str enums: a CallbackState.SUCCESS is "success" too
        done = {e.key for e in self._events() if e.state in terminal}
        return [k for k in self.workloads if k not in done]

    @precondition(lambda self: not self.ended)
    @rule(dags=dag_filters())
    def scheduler_loop(self, dags: list[int] | None) -> None:
        """One scheduler loop: heartbeat, then read the event buffer (optionally for some dags)."""
        self.steps += 1
        self.heartbeats += 1
        self._did(f"scheduler_loop({dags})")
        self.harness.heartbeat()
        self._take_events(dags)

    @precondition(lambda self: not self.ended)
    @rule()
    def heartbeat(self) -> None:
        self.steps += 1
        self.heartbeats += 1
        self._did("heartbeat()")
        self.harness.heartbeat()

    @rule(dags=dag_filters())  # also after end(): the scheduler reads the buffer once more
    def get_event_buffer(self, dags: list[int] | None) -> None:
        self.steps += 1
        self._did(f"get_event_buffer({dags})")
        self._take_events(dags)

    def _take_events(self, dags: list[int] | None) -> None:
        taken = self.harness.collect(None if dags is None else [DAGS[i] for i in dags])
        left = [k for k in taken if k in self.harness.executor.event_buffer]
        if left:
            self._violated("get_event_buffer pops what it returns",
                           f"events returned for {dags} are still in the buffer: {left}")

    @precondition(lambda self: not self.ended)
    @rule()
    def wait_a_little(self) -> None:
        """Let work progress for up to 50 ms (or until a task finishes)."""
        self.steps += 1
        self._did("wait_a_little()")
        before = sum(1 for r in self.harness.journal().runs if r.end is not None)
        with contextlib.suppress(WaitTimedOut):
            wait_until(lambda: sum(1 for r in self.harness.journal().runs if r.end is not None) > before,
                       "a task to finish", 0.05, poll=0.005)

    @precondition(lambda self: self.config.can_revoke and not self.ended and self.heartbeats >= 1)
    @rule(pick=st.integers(min_value=0, max_value=MAX_OUTSTANDING - 1))
    def revoke(self, pick: int) -> None:
        self.steps += 1
        self._did(f"revoke({pick})")
        journal = self.harness.journal()
        outstanding = sorted(self._outstanding(), key=lambda t: not journal.started(t.task_id))
        if not outstanding:
            return
        task = outstanding[pick % len(outstanding)]  # small picks: tasks already running
        self.harness.call(f"revoke_task({task.task_id})", self.harness.executor.revoke_task, ti=task.ti)
        self.revoked.add(task.key)
        self.revoked_at[task.task_id] = time.monotonic()

    @precondition(lambda self: self.config.can_adopt and not self.ended and self.heartbeats >= 1)
    @rule()
    def adopt_into_fresh_executor(self) -> None:
        """The scheduler dies; a new one adopts everything outstanding that carries an external id."""
        self.steps += 1
        self._did("adopt_into_fresh_executor()")
        states = compat.state_enum()
        old = self.harness
        old.abandon()
        new = self._new_harness(f"E{len(self.retired) + 1}", job_id=len(self.retired) + 2)
        tis = []
        for task in self._outstanding():
            ext = next((e.info for e in old.events_for(task.key)
                        if e.state in (states.QUEUED, states.RUNNING) and isinstance(e.info, str)), None)
            if task.key in old.executor.queued_tasks or ext is None:
                continue  # never dispatched: the scheduler would re-queue it
            tis.append(compat.adoption_ready(task.handle, job_id=old.job_id, external_executor_id=ext,
                                             running=True))
        returned = {id(ti) for ti in new.adopt(tis)}
        for task in self._outstanding():
            if task.key in old.executor.queued_tasks or id(task.ti) in returned or task.ti not in tis:
                # Reset by the scheduler: no longer expected from anyone, and no longer counted
                # against parallelism (its process may linger after its scheduler 'died').
                self.revoked.add(task.key)
                self.revoked_at[task.task_id] = time.monotonic()
            else:
                new.tasks[task.key] = task  # adopted: the new scheduler now waits for its event
        for key in self._outstanding_workloads():  # not adopted: the scheduler times them out itself
            self.dropped_workloads[key] = self.workloads.pop(key)
        self.retired.append(old)
        self.harness = new

    @precondition(lambda self: not self.ended and self.steps >= 6)
    @rule()
    def end(self) -> None:
        self._did("end()")
        self.harness.end()
        self.ended = True
        self.ended_at = time.monotonic()

    # -- invariants: SPEC PROP --------------------------------------------------------------
    @spec_property("no unknown keys")
    def only_known_keys(self) -> None:
        unknown = [e.key for e in self._events()
                   if e.key not in self.known and e.key not in self.workloads and e.key not in self.dropped_workloads]
        if unknown:
            self._violated("no unknown keys", f"events for keys never queued: {unknown}")

    @spec_property("at most one terminal event per key and try")
    def at_most_one_terminal_event_per_try(self) -> None:
        terminal = compat.terminal_states()
        seen: dict[Any, int] = {}
        for e in self._events():
            if e.state in terminal:
                seen[e.key] = seen.get(e.key, 0) + 1
        dupes = {getattr(k, "task_id", repr(k)): n for k, n in seen.items() if n > 1}
        if dupes:
            self._violated("at most one terminal event per key and try", f"terminal events per task: {dupes}")

    @spec_property("never more than parallelism running")
    def never_above_parallelism(self) -> None:
        limit = self._limit()
        if limit is None:
            return  # Airflow 2's parallelism 0: unlimited
        ids = [t.task_id for t in self.known.values()] + [probe for _, probe in self.workloads.values()]
        peak = self.harness.journal().max_concurrency(ids, now=time.monotonic(), ended_by=self.revoked_at)
        if peak > limit:
            self._violated("never more than parallelism running", f"{peak} tasks ran at once, parallelism {limit}")

    @spec_property("a running task is tracked (has_task) until its terminal event")
    def work_in_progress_is_tracked(self) -> None:
        if self.ended:
            return
        journal = self.harness.journal()
        untracked = [t.task_id for t in self._outstanding()
                     if any(r.end is None for r in journal.runs_of(t.task_id))
                     and not self.harness.executor.has_task(t.ti)]
        if untracked and not journal.refresh().finished_all(untracked):
            self._violated("a running task is tracked (has_task) until its terminal event",
                           f"in progress but not tracked by the executor: {untracked}")

    @spec_property("slots_available + slots_occupied == parallelism")
    def slots_add_up(self) -> None:
        ex = self.harness.executor
        if self.ended or not hasattr(ex, "slots_occupied") or self._limit() is None:
            return
        if ex.slots_available + ex.slots_occupied != ex.parallelism:
            self._violated("slots_available + slots_occupied == parallelism",
                           f"{ex.slots_available} + {ex.slots_occupied} != {ex.parallelism}")

    @spec_property("a key is in at most one of queued/running/finished")
    def key_in_one_place(self) -> None:
        ex = self.harness.executor
        terminal = compat.terminal_states()
        done = {e.key for e in self.harness.events if e.state in terminal}
        both = set(ex.queued_tasks) & set(ex.running)
        finished_but_held = [k for k in done if k in ex.running or k in ex.queued_tasks]
        if both or finished_but_held:
            self._violated("a key is in at most one of queued/running/finished",
                           f"queued and running: {both}; finished but still queued/running: {finished_but_held}")

    @classmethod
    def properties(cls) -> list[str]:
        """The names of every SPEC PROP invariant method, found on the class."""
        return sorted(name for name in dir(cls) if hasattr(getattr(cls, name, None), _PROPERTY))

    def check_properties(self) -> None:
        """All invariants at once (for reproducers, which call rules without hypothesis)."""
        for name in self.properties():
            getattr(self, name)()

    # -- the final drain ----------------------------------------------------------------------
    def teardown(self) -> None:
        cfg = self.config
        try:
            if not self.ended:
                self._drain_outstanding()
                self.harness.end()
            self._check_against_journal()
        finally:
            for h in (*self.retired, self.harness):
                h.release_all()
            for h in (*self.retired, self.harness):
                h.close()
            cfg.sandbox.settle(cfg.time.budget("settle"))
            cfg.sandbox.kill_leaked_probes()
            if any(h.abandoned for h in self.retired):
                # A 'dead scheduler' leaves its workers behind (the scheduler process would be gone and
                # with it their pipes; here it lives on): ended now, as CheckContext.close does, so that
                # they are not counted against the live executor.
                cfg.sandbox.sweep_processes(include_shared_helpers=False, grace=cfg.time.budget("settle"),
                                            wait=False)

    def _drain_outstanding(self) -> None:
        """Heartbeat until every outstanding task has its terminal event. A task whose probe has
        finished gets the ``report`` budget to be reported; the whole drain gets the ``event`` budget."""
        h = self.harness
        finished_at: dict[Any, float] = {}

        def left() -> list[Any]:
            return [t for t in self._outstanding() if t.key in h.tasks] + [
                _WorkloadView(k, *self.workloads[k]) for k in self._outstanding_workloads()]

        def loop() -> None:
            h.heartbeat()
            self._take_events(None)
            journal, now = h.journal(), time.monotonic()
            for t in left():
                if t.key not in finished_at and journal.finished(t.task_id):
                    finished_at[t.key] = now
            overdue = [t.task_id for t in left() if now - finished_at.get(t.key, now) > h.budget("report")]
            if overdue:
                self._violated("every queued task gets a terminal event",
                               f"after draining, no terminal event for {overdue} although their work ended")

        try:
            wait_until(lambda: not left(), "every outstanding task's terminal event", h.budget("event"),
                       poll=0.02, each=loop)
        except WaitTimedOut:
            self._violated("every queued task gets a terminal event",
                           f"after draining, no terminal event for {[t.task_id for t in left()]}")

    def _check_against_journal(self) -> None:
        states = compat.state_enum()
        terminal = compat.terminal_states()
        journal = self.harness.journal()
        self._check_workloads_against_journal()
        for key, task in self.known.items():
            if key in self.revoked:
                continue
            terminal_events = [e for e in self._events() if e.key == key and e.state in terminal]
            runs = journal.runs_of(task.task_id)
            if not terminal_events:
                # SPEC LIFE-1 as the lifecycle check applies it: after end(), an executor that
                # adopts may leave work running for the next scheduler instead of reporting it.
                # Only work still in flight when end() returned counts as left; finished work
                # without an event is lost whatever the executor can adopt.
                left_for_next_scheduler = self.ended and self.config.can_adopt and any(
                    r.finished is None or r.finished > self.ended_at for r in runs)
                if (runs or not self.ended) and not left_for_next_scheduler:
                    self._violated("every queued task gets a terminal event",
                                   f"{task.task_id} ({len(runs)} runs) never got one")
                continue
            state = terminal_events[0].state
            kind = task.probe.kind
            if not runs:
                self._violated("events match the journal", f"{task.task_id} reported {state} but never ran")
            if (kind is ProbeKind.OK and state != states.SUCCESS) or \
                    (kind in (ProbeKind.RAISE, ProbeKind.CRASH) and state != states.FAILED) or \
                    (kind is ProbeKind.FAIL and not compat.is_airflow3() and state != states.FAILED):
                self._violated("events match the journal", f"{task.task_id} ({kind.value}) reported {state}")


    def _check_workloads_against_journal(self) -> None:
        """Each callback / connection test: one terminal event, SUCCESS, with its own key and state
        classes (CallbackKey/CallbackState, ConnectionTestKey/ConnectionTestState), and it ran once."""
        journal = self.harness.journal()
        terminal = compat.terminal_states()
        for key, (kind, probe) in self.workloads.items():
            events = [e for e in self._events() if e.key == key and e.state in terminal]
            runs = journal.runs_of(probe)
            if not events:
                if runs or not self.ended:  # as for tasks: never dispatched before end() is no loss
                    self._violated("every queued workload gets a terminal event",
                                   f"the {kind} {key!r} ({len(runs)} runs) never got one")
                continue
            if len(events) > 1:
                self._violated("at most one terminal event per key and try",
                               f"the {kind} {key!r} got {len(events)} terminal events")
            state_class = type(key).__name__.replace("Key", "State")
            if type(events[0].state).__name__ != state_class or str(events[0].state) != "success":
                self._violated("events match the journal", f"the {kind} {key!r} was reported {events[0].state!r} "
                               f"({type(events[0].state).__name__}); a no-op {kind} ends {state_class}.SUCCESS")
            if len(runs) != 1:
                self._violated("events match the journal", f"the {kind} {key!r} ran {len(runs)} times")


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
                capabilities: dict[str, bool] | None = None) -> type[ExecutorMachine]:
    """``ExecutorMachine`` bound to ``profile`` (capabilities read once)."""
    caps = capabilities if capabilities is not None else profile.capability_set()
    tm = time_model or TimeModel()
    config = MachineConfig(profile=profile, sandbox=sandbox or ensure_active(), time=tm,
                           can_revoke=bool(caps.get("revoke")), can_adopt=bool(caps.get("adoption")),
                           other_workloads=other_workloads(profile),
                           deadline=time.monotonic() + tm.budget("state_machine"))
    return type("ExecutorMachine", (ExecutorMachine,), {"config": config})


def run_stateful(profile: ExecutorProfile, sandbox: Sandbox, *, hypothesis_profile: str = "ci",
                 derandomize: bool = False, reproducer_dir: Path | None = None, time_model: TimeModel | None = None,
                 capabilities: dict[str, bool] | None = None, seed: int | None = None) -> None:
    """Run the machine; on failure raise PropertyViolated with the minimal programme and a reproducer.

    ``seed`` fixes the programmes hypothesis generates (the certificate records it, so a run can be
    repeated exactly); None leaves hypothesis its own random choice."""
    machine = machine_for(profile, sandbox, time_model, capabilities)
    if seed is not None and not derandomize:
        from hypothesis import seed as fix_seed

        machine = fix_seed(seed)(machine)  # run_state_machine_as_test honours @seed on the machine class
    violations = machine.config.violations
    try:
        run_state_machine_as_test(machine, settings=hypothesis_settings(hypothesis_profile, derandomize))
    except Exception as exc:
        group = getattr(exc, "exceptions", None)
        if isinstance(group, tuple) and group:  # an exception group: report the first real failure
            exc = next((e for e in group if isinstance(e, PropertyViolated)), group[0])
        out_of_time = isinstance(exc, BudgetSpent) or time.monotonic() > machine.config.deadline
        unreplayable = "Inconsistent data generation" in str(exc) or type(exc).__name__.startswith("Flaky")
        if (unreplayable or out_of_time) and violations:
            prop, rules = min(violations, key=lambda v: len(v[1]))
            why = ("the state machine's time budget ended the shrinking" if out_of_time
                   else "hypothesis could not replay it (the executor's behaviour is timing-dependent)")
            raise PropertyViolated(
                f"SPEC PROP {prop} broke ({len(violations)} times); {why}. The shortest programme seen:\n"
                f"    {' -> '.join(rules)}") from None
        if out_of_time and not violations:
            return  # the budget ended generation before any violation: every example run held
        if unreplayable:
            raise PropertyViolated(f"the executor broke no named SPEC PROP invariant, but hypothesis saw "
                                   f"a timing-dependent failure: {exc}") from None
        programme = "\n".join(getattr(exc, "__notes__", []))
        path = write_reproducer(profile, programme, reproducer_dir)
        replay = f"Replay it: pytest {path}" if path else "(hypothesis printed no programme: no reproducer written)"
        raise PropertyViolated(
            f"{exc}\n\nMinimal failing programme (hypothesis, shrunk):\n{textwrap.indent(programme, '    ')}\n\n"
            f"{replay}") from None


def write_reproducer(profile: ExecutorProfile, programme: str, directory: Path | None = None) -> Path | None:
    """A standalone pytest file that rebuilds the executor by its dotted path and replays the steps,
    checking the SPEC PROP invariants after each one, as hypothesis did. None when the programme has
    no steps to replay."""
    lines = programme.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("state = ")]
    ends = [i for i, line in enumerate(lines) if line.strip() == "state.teardown()"]
    steps = lines[starts[0] + 1:ends[-1]] if starts and ends else []  # keeps multi-line calls whole
    if not steps:
        return None
    target = directory or Path(tempfile.mkdtemp(prefix="conformance-reproducer-"))
    target.mkdir(parents=True, exist_ok=True)
    body = textwrap.indent(textwrap.dedent("\n".join(steps)), " " * 8)
    kwargs = json.dumps(profile.executor_kwargs) if profile.executor_kwargs else None
    name = profile.label.replace(".", "_").replace(":", "_")
    path = target / f"test_reproduce_{name}.py"
    path.write_text(
        f'''"""Replays a failing executor-conformance state-machine programme for {profile.label}.

Generated by airflow-executor-conformance. Run it with: pytest {path.name}
"""
import atexit

from conformance.sandbox import ensure_active

atexit.register(ensure_active().deactivate)  # a private AIRFLOW_HOME before Airflow is imported; removed at exit

from conformance.profile import ExecutorProfile  # noqa: E402
from conformance.stateful import machine_for  # noqa: E402


def test_reproduce():
    machine = machine_for(ExecutorProfile.from_path({profile.label!r}, {kwargs!r}))
    state = machine()
    try:
        state.check_properties()
{body}
    finally:
        state.teardown()
''')
    return path

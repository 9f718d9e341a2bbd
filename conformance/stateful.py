"""Property-based testing of an executor: hypothesis drives sequences of scheduler actions.

``machine_for(profile)`` builds a ``RuleBasedStateMachine`` whose rules are the scheduler's moves
(queue, heartbeat, wait a little, get_event_buffer with and without a dag filter, revoke, adopt into a
fresh executor, end) -- gated by the executor's capabilities -- and whose invariants are SPEC PROP,
checked after every step and once more after the final drain in ``teardown``.

On failure hypothesis shrinks the programme to a minimal one; ``run_stateful`` turns it into a
standalone pytest file that rebuilds the executor by its dotted path and replays the steps.
"""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

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

PARALLELISM = 2
MAX_OUTSTANDING = 6

PROFILES: dict[str, dict[str, Any]] = {
    "ci": dict(max_examples=25, stateful_step_count=15),
    "thorough": dict(max_examples=200, stateful_step_count=25),
}
ENV_PROFILE = "CONFORMANCE_HYPOTHESIS_PROFILE"


def hypothesis_settings(profile: str | None = None, derandomize: bool = False) -> settings:
    """``ci`` (a few dozen examples, seconds) or ``thorough`` (hundreds). No deadline: the harness
    owns time budgets. No example database: nothing is written outside the sandbox."""
    name = profile or os.environ.get(ENV_PROFILE, "ci")
    if name not in PROFILES:
        raise ValueError(f"unknown hypothesis profile {name!r}; choose one of {sorted(PROFILES)}")
    return settings(deadline=None, database=None, derandomize=derandomize, print_blob=True,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink], **PROFILES[name])


class PropertyViolated(AssertionError):
    """A SPEC PROP invariant failed; the message names the property."""


def machine_for(profile: ExecutorProfile, sandbox: Sandbox | None = None) -> type[RuleBasedStateMachine]:
    """A state machine class bound to ``profile`` (capabilities read once)."""
    box = sandbox or ensure_active()
    caps = profile.capability_set()
    can_revoke = bool(caps.get("revoke"))
    can_adopt = bool(caps.get("adoption"))
    states = compat.state_enum()
    terminal = compat.terminal_states()

    class ExecutorMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.harness = self._new_harness("A", job_id=1)
            self.retired: list[SchedulerHarness] = []
            self.revoked: set[Any] = set()
            self.revoked_at: dict[str, float] = {}
            self.known: dict[Any, QueuedTask] = {}
            self.ended = False
            self.ended_at = float("inf")
            self.steps = 0  # preconditions may only read deterministic state (hypothesis replays)
            self.heartbeats = 0

        def _new_harness(self, name: str, job_id: int) -> SchedulerHarness:
            h = SchedulerHarness(profile.build(parallelism=PARALLELISM), box, name=name, job_id=job_id)
            return h.start()

        # -- helpers ----------------------------------------------------------------------------
        def _events(self) -> list[Any]:
            return [e for h in (*self.retired, self.harness) for e in h.events]

        def _outstanding(self) -> list[QueuedTask]:
            done = {e.key for e in self._events() if e.state in terminal}
            return [t for k, t in self.known.items() if k not in done and k not in self.revoked]

        def _violated(self, prop: str, detail: str) -> None:
            raise PropertyViolated(f"SPEC PROP {prop}: {detail}\n" + self.harness.format_transcript(40))

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
            for kind, delay_ms, priority, dag in tasks:
                if len(self._outstanding()) >= MAX_OUTSTANDING:
                    return
                task = self.harness.queue(Probe.new(ProbeKind(kind), delay=delay_ms / 1000),
                                          priority=priority, dag_id=DAGS[dag])
                self.known[task.key] = task

        @precondition(lambda self: not self.ended)
        @rule(dags=dag_filters())
        def scheduler_loop(self, dags: list[int] | None) -> None:
            """One scheduler loop: heartbeat, then read the event buffer (optionally for some dags)."""
            self.steps += 1
            self.heartbeats += 1
            self.harness.heartbeat()
            self._take_events(dags)

        @precondition(lambda self: not self.ended)
        @rule()
        def heartbeat(self) -> None:
            self.steps += 1
            self.heartbeats += 1
            self.harness.heartbeat()

        @rule(dags=dag_filters())  # also after end(): the scheduler reads the buffer once more
        def get_event_buffer(self, dags: list[int] | None) -> None:
            self.steps += 1
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
            before = sum(1 for r in self.harness.journal().runs if r.end is not None)
            limit = time.monotonic() + 0.05
            waiter = threading.Event()
            while time.monotonic() < limit:
                if sum(1 for r in self.harness.journal().runs if r.end is not None) > before:
                    return
                waiter.wait(0.005)

        @precondition(lambda self: can_revoke and not self.ended and self.heartbeats >= 1)
        @rule(pick=st.integers(min_value=0, max_value=MAX_OUTSTANDING - 1))
        def revoke(self, pick: int) -> None:
            self.steps += 1
            journal = self.harness.journal()
            outstanding = sorted(self._outstanding(), key=lambda t: not journal.started(t.task_id))
            if not outstanding:
                return
            task = outstanding[pick % len(outstanding)]  # small picks: tasks already running
            self.harness.call(f"revoke_task({task.task_id})", self.harness.executor.revoke_task, ti=task.ti)
            self.revoked.add(task.key)
            self.revoked_at[task.task_id] = time.monotonic()

        @precondition(lambda self: can_adopt and not self.ended and self.heartbeats >= 1)
        @rule()
        def adopt_into_fresh_executor(self) -> None:
            """The scheduler dies; a new one adopts everything outstanding that carries an external id."""
            self.steps += 1
            old = self.harness
            old.note("abandoned: the scheduler process 'died'")
            old.ended = True
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
            self.retired.append(old)
            self.harness = new

        @precondition(lambda self: not self.ended and self.steps >= 6)
        @rule()
        def end(self) -> None:
            self.harness.end()
            self.ended = True
            self.ended_at = time.monotonic()

        # -- invariants: SPEC PROP --------------------------------------------------------------
        @invariant()
        def only_known_keys(self) -> None:
            unknown = [e.key for e in self._events() if e.key not in self.known]
            if unknown:
                self._violated("no unknown keys", f"events for keys never queued: {unknown}")

        @invariant()
        def at_most_one_terminal_event_per_try(self) -> None:
            seen: dict[Any, int] = {}
            for e in self._events():
                if e.state in terminal:
                    seen[e.key] = seen.get(e.key, 0) + 1
            dupes = {k.task_id: n for k, n in seen.items() if n > 1}
            if dupes:
                self._violated("at most one terminal event per key and try", f"terminal events per task: {dupes}")

        @invariant()
        def never_above_parallelism(self) -> None:
            ids = [t.task_id for t in self.known.values()]
            peak = self.harness.journal().max_concurrency(ids, now=time.monotonic(), ended_by=self.revoked_at)
            if peak > PARALLELISM:
                self._violated("never more than parallelism running", f"{peak} tasks ran at once, "
                               f"parallelism {PARALLELISM}")

        @invariant()
        def work_in_progress_is_tracked(self) -> None:
            if self.ended:
                return
            journal = self.harness.journal()
            untracked = [t.task_id for t in self._outstanding()
                         if any(r.end is None for r in journal.runs_of(t.task_id))
                         and not self.harness.executor.has_task(t.ti)]
            if untracked and not self.harness.journal().finished_all(untracked):
                self._violated("a running task is tracked (has_task) until its terminal event",
                               f"in progress but not tracked by the executor: {untracked}")

        @invariant()
        def slots_add_up(self) -> None:
            ex = self.harness.executor
            if self.ended or not hasattr(ex, "slots_occupied"):
                return
            if ex.slots_available + ex.slots_occupied != ex.parallelism:
                self._violated("slots_available + slots_occupied == parallelism",
                               f"{ex.slots_available} + {ex.slots_occupied} != {ex.parallelism}")

        @invariant()
        def key_in_one_place(self) -> None:
            ex = self.harness.executor
            done = {e.key for e in self.harness.events if e.state in terminal}
            both = set(ex.queued_tasks) & set(ex.running)
            finished_but_held = [k for k in done if k in ex.running or k in ex.queued_tasks]
            if both or finished_but_held:
                self._violated("a key is in at most one of queued/running/finished",
                               f"queued and running: {both}; finished but still queued/running: {finished_but_held}")

        def check_properties(self) -> None:
            """All invariants at once (for reproducers, which call rules without hypothesis)."""
            self.only_known_keys()
            self.at_most_one_terminal_event_per_try()
            self.never_above_parallelism()
            self.slots_add_up()
            self.key_in_one_place()
            self.work_in_progress_is_tracked()

        # -- the final drain ----------------------------------------------------------------------
        def teardown(self) -> None:
            try:
                if not self.ended:
                    self._drain_outstanding()
                    self.harness.end()
                self._check_against_journal()
            finally:
                for h in (*self.retired, self.harness):
                    h.close()
                box.settle()
                box.kill_leaked_probes()

        def _drain_outstanding(self) -> None:
            """Heartbeat until every outstanding task has its terminal event. A task whose probe has
            finished gets the harness's wait budget to be reported (a distributed executor may need seconds)."""
            h = self.harness
            finished_at: dict[Any, float] = {}
            waiter = threading.Event()
            limit = time.monotonic() + h.budgets.wait
            while True:
                h.heartbeat()
                self._take_events(None)
                left = [t for t in self._outstanding() if t.key in h.tasks]
                if not left:
                    return
                journal = h.journal()
                now = time.monotonic()
                for t in left:
                    if t.key not in finished_at and journal.finished(t.task_id):
                        finished_at[t.key] = now
                overdue = [t for t in left if now - finished_at.get(t.key, now) > h.budgets.wait]
                if overdue or now > limit:
                    late = overdue or left
                    self._violated("every queued task gets a terminal event",
                                   f"after draining, no terminal event for {[t.task_id for t in late]}")
                waiter.wait(0.02)

        def _check_against_journal(self) -> None:
            journal = self.harness.journal()
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
                    left_for_next_scheduler = self.ended and can_adopt and any(
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

    ExecutorMachine.__name__ = "ExecutorMachine"
    ExecutorMachine.__qualname__ = "ExecutorMachine"
    return ExecutorMachine


def run_stateful(profile: ExecutorProfile, sandbox: Sandbox, *, hypothesis_profile: str | None = None,
                 derandomize: bool = False, reproducer_dir: Path | None = None) -> None:
    """Run the machine; on failure raise PropertyViolated with the minimal programme and a reproducer."""
    machine = machine_for(profile, sandbox)
    try:
        run_state_machine_as_test(machine, settings=hypothesis_settings(hypothesis_profile, derandomize))
    except Exception as exc:
        if "Inconsistent data generation" in str(exc) or type(exc).__name__.startswith("Flaky"):
            raise PropertyViolated(
                "the executor broke a SPEC PROP invariant, but differently when hypothesis replayed the same "
                f"programme (its behaviour is timing-dependent), so no minimal programme exists: {exc}") from None
        group = getattr(exc, "exceptions", None)
        if isinstance(group, tuple) and group:  # an exception group: report the first failure
            exc = group[0]
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

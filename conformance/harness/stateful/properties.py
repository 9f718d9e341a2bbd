"""SPEC PROP: the invariants the state machine checks after every step, as a mixin of ``ExecutorMachine``
(the rules live in ``machine``). Each judges what the scheduler can observe, with the base class's
semantics (SPEC PROP preamble)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from conformance.harness import airflow_compat as compat
from conformance.harness.scheduler import SchedulerHarness
from conformance.harness.stateful.model import _state_of
from conformance.harness.stateful.records import (
    _PROPERTY,
    MachineConfig,
    PropertyViolated,
    Tracked,
    _describe_key,
    _nearest_known,
    spec_property,
)
from conformance.harness.strategies import QUEUES


class SpecProperties:
    """The SPEC PROP invariants over the machine's state (declared here, kept by ``ExecutorMachine``)."""

    config: ClassVar[MachineConfig]
    harness: SchedulerHarness | None
    retired: list[SchedulerHarness]
    tracked: list[Tracked]
    by_key: dict[Any, Tracked]
    workloads: dict[Any, tuple[str, str]]
    dropped_workloads: dict[Any, tuple[str, str]]
    stream_faults: list[str]
    unknown: list[Any]
    bad_states: list[str]
    ended: bool
    ended_at: float
    end_took: float
    programme: list[str]

    @property
    def h(self) -> SchedulerHarness:
        assert self.harness is not None, "begin() runs first"
        return self.harness

    def _harnesses(self) -> list[SchedulerHarness]:
        return [*self.retired, *([self.harness] if self.harness is not None else [])]

    def _terminal_unread(self, item: Tracked) -> bool:
        pending = self.h.executor.event_buffer.get(item.task.key)
        return pending is not None and _state_of(pending) in compat.terminal_states()

    def _absorb(self) -> None:
        """Fold new events into the accounting (the machine's; every check reads after it)."""
        raise NotImplementedError

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
        """Work this executor started itself never exceeds parallelism, and it starts nothing while adopted
        work fills its slots: adopted work may exceed parallelism on its own (the scheduler adopts every orphan
        of a dead job), but the base counts it in ``running`` -- ``heartbeat``'s ``open_slots = parallelism -
        len(running)`` is then <= 0 and ``trigger_tasks`` dispatches nothing (2.x, 3.x). A dead scheduler's
        work is no longer this executor's."""
        limit = compat.effective_parallelism(self.h.executor)
        if limit is None:
            return  # Airflow 2's parallelism 0: unlimited
        own = [t.task.task_id for t in self.tracked if t.queued_to == self.h.name] + \
              [probe for _, probe in self.workloads.values()]
        adopted = [t.task.task_id for t in self.tracked
                   if t.queued_to != self.h.name and t.task.key in self.h.tasks and not t.dropped]
        ended_by = {t.task.task_id: t.dropped_at for t in self.tracked if t.dropped}
        journal, now = self.h.journal(), time.monotonic()
        peak = journal.max_concurrency(own, now=now, ended_by=ended_by)
        if peak > limit:
            self._violated("never more than parallelism running", f"{peak} tasks ran at once, parallelism {limit}")
        if not adopted:
            return
        mine, theirs = set(own), set(adopted)
        runs = [r for r in journal.runs if r.task_id in mine | theirs]
        for start in (r for r in runs if r.task_id in mine):
            at = start.started
            alongside = [r for r in runs if r is not start and r.started <= at
                         and (r.finished is None or r.finished > at) and at < ended_by.get(r.task_id, now)]
            carried = sum(1 for r in alongside if r.task_id in theirs)
            if carried and len(alongside) + 1 > limit:
                self._violated("never more than parallelism running",
                               f"{start.task_id} started while {len(alongside)} task(s) already ran, {carried} of "
                               f"them adopted, parallelism {limit}: adopted work holds slots (keep adopted keys in "
                               "running, and start nothing while running fills parallelism)")

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
               "PROP-11": "_guarded", "PROP-12": "adopt_into_fresh_executor"}

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

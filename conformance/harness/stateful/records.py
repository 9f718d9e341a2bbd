"""What the state machine records: its findings (exceptions), what it explored, its configuration and
budgets, and each task it queued with how the executor answered for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conformance.groundtruth.sandbox import Sandbox
from conformance.harness.profile import ExecutorProfile
from conformance.harness.scheduler import QueuedTask
from conformance.harness.strategies import TaskSpec
from conformance.harness.timing import TimeModel


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

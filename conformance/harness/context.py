"""The typed floor every check stands on: the run options and the check context.

A check is ``func(ctx: CheckContext) -> None``. It builds harnesses through the context (so that the
context can tear them down), reads budgets from the run's one time model, and ends in one of the
outcome exceptions of ``conformance.harness.outcomes`` -- usually through ``ctx.fail`` / ``ctx.expect``, which
write the message an author needs: SPEC clause, what the executor did, what Airflow's scheduler
expects, how to fix it, and the harness transcript.

Run options are built once by whoever starts the run (the pytest session, the CLI, a test) and handed
down here; nothing travels through environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from conformance.groundtruth.journal import Journal
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness import airflow_compat as compat
from conformance.harness.capabilities import Capabilities
from conformance.harness.outcomes import AdviceGiven, ConformanceFailure, NotApplicable, NotSupported
from conformance.harness.profile import DEFAULT_PARALLELISM, ExecutorProfile
from conformance.harness.scheduler import SchedulerHarness
from conformance.harness.timing import TimeModel


class CheckIdentity(Protocol):
    """What a context needs of its check's catalogue entry (``catalog.CheckSpec`` is one): its id, to own
    what the check starts, and its SPEC clause and prose, for the messages. A protocol, so that the context
    does not import the catalogue that imports it."""

    @property
    def id(self) -> str: ...
    @property
    def clause(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def expects(self) -> str: ...
    @property
    def fix(self) -> str: ...


@dataclass(frozen=True)
class RunOptions:
    """Everything about *how* to run that is not the executor: built once per run, handed down."""

    time: TimeModel = field(default_factory=TimeModel)
    hypothesis_profile: str = "ci"
    derandomize: bool = False  # a fixed seed for the state machine (the suite's own tests use it)
    seed: int | None = None
    reproducer_dir: Path | None = None
    #: this run's part of the state machine's exploration (lanes on separate instances: 1/lanes each)
    exploration_share: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.time.as_dict(), "hypothesis_profile": self.hypothesis_profile,
                "derandomize": self.derandomize, "seed": self.seed}


@dataclass
class CheckContext:
    """What a check function gets: builders for harnesses, the journal, budgets and ``fail``."""

    spec: CheckIdentity
    profile: ExecutorProfile
    sandbox: Sandbox
    capabilities: Capabilities
    options: RunOptions = field(default_factory=RunOptions)
    harnesses: list[SchedulerHarness] = field(default_factory=list)
    #: what a passing check wants on the record (the state machine: what it explored)
    notes: list[str] = field(default_factory=list)

    def can(self, capability: str) -> bool:
        """Whether the executor has ``capability`` -- a declared name, or this raises (a typo must not read
        as "no")."""
        return self.capabilities[capability]

    @property
    def time(self) -> TimeModel:
        return self.options.time

    def budget(self, kind: str) -> float:
        return self.options.time.budget(kind)

    def build(self, parallelism: int = DEFAULT_PARALLELISM, **extra: Any) -> Any:
        return self.profile.build(parallelism=parallelism, **extra)

    def harness(self, parallelism: int = DEFAULT_PARALLELISM, *, name: str = "A", job_id: int = 1,
                start: bool = True, executor: Any = None) -> SchedulerHarness:
        ex = executor if executor is not None else self.build(parallelism)
        h = SchedulerHarness(ex, self.sandbox, name=name, job_id=job_id, time_model=self.options.time,
                             owner=self.spec.id)
        self.harnesses.append(h)
        return h.start() if start else h

    def journal(self) -> Journal:
        return self.sandbox.journal()

    @property
    def states(self) -> Any:
        return compat.state_enum()

    def fail(self, did: str, harness: SchedulerHarness | None = None) -> ConformanceFailure:
        """Build the failure a check raises: clause, what happened, what Airflow expects, a fix."""
        spec = self.spec
        parts = [
            f"[{spec.id}] violates SPEC {spec.clause}: {spec.title}",
            f"What the executor did: {bounded(did)}",
            f"What Airflow's scheduler expects: {spec.expects}",
            f"How to fix: {spec.fix}",
        ]
        h = harness or (self.harnesses[-1] if self.harnesses else None)
        if h is not None and h.transcript:
            parts.append("Harness transcript (latest calls last):\n" + h.format_transcript())
        return ConformanceFailure("\n".join(parts))

    def expect(self, condition: bool, did: str, harness: SchedulerHarness | None = None) -> None:
        if not condition:
            raise self.fail(did, harness)

    def note(self, text: str) -> None:
        """Put a line on the record of a check that passes (a failure's message says it all)."""
        self.notes.append(text)

    def advise(self, text: str) -> AdviceGiven:
        return AdviceGiven(f"[{self.spec.id}] advice (SPEC {self.spec.clause}): {text}")

    def not_supported(self, reason: str) -> NotSupported:
        return NotSupported(reason)

    def not_applicable(self, reason: str) -> NotApplicable:
        return NotApplicable(reason)

    def close(self) -> tuple[list[str], list[str]]:
        """Isolation: end what this check started and wait until none of its work still runs.

        Returns (problems of this check, late work of earlier checks). Every harness is ended (or
        terminated when end() hangs); the check's probes get the ``settle`` budget to finish and are
        killed after it; processes the check left behind are ended. Problems are always reported,
        whatever the check's own verdict was."""
        problems: list[str] = []
        for h in self.harnesses:
            h.release_all()
        for h in reversed(self.harnesses):
            problems += h.close()
        settle = self.budget("settle")
        mine = self.sandbox.owned_by(self.spec.id)
        still = self.sandbox.settle(settle, mine)
        if still:
            killed = self.sandbox.kill_leaked_probes()
            problems.append("task work was still running after the executor was ended and was killed: "
                            + "; ".join(r.describe() for r in killed if r.task_id in mine))
        problems += self._held_by_backend(mine)
        self.sandbox.close_owner(self.spec.id)
        late = [f"{owner}: {run.describe()}" for owner, run in self.sandbox.late_runs()]
        abandoned = any(h.abandoned for h in self.harnesses)  # a 'dead scheduler' leaves its workers
        leftovers = self.sandbox.sweep_processes(include_shared_helpers=False, grace=settle, wait=not abandoned)
        if leftovers and not abandoned:
            problems.append("processes outlived end() and were ended by the suite: "
                            + "; ".join(p.describe() for p in leftovers))
        return problems, late


    def _held_by_backend(self, task_ids: set[str]) -> list[str]:
        """What the backend driver says it still holds of this check's tasks after the executor was ended
        (``BackendDriver.outstanding``, optional); a driver that cannot answer is named, not trusted."""
        ask = getattr(self.profile.backend, "outstanding", None)
        if ask is None or not task_ids:
            return []
        try:
            held = [str(line) for line in ask(sorted(task_ids))]
        except Exception as exc:
            self.notes.append(f"the backend driver could not say what it still holds: {type(exc).__name__}: {exc}")
            return []
        if not held:
            return []
        if self.can("adoption"):  # its tasks may outlive the scheduler: a next one adopts them (LIFE-1)
            self.notes.append("the backend still holds (for a next scheduler to adopt): " + "; ".join(held))
            return []
        return ["task work was still running after the executor was ended, held by the backend (its driver "
                "says): " + "; ".join(held)]


#: the longest "what the executor did" a failure shows: past it the middle is cut, saying how much
MAX_FINDING = 12000


def bounded(text: str, limit: int = MAX_FINDING) -> str:
    """One cause, one message: a sentence repeated (``; ``-separated, as checks join their findings) is
    shown once with a count, and what is still too long loses its middle, with the number of characters
    cut -- a sentence per poll once made a 56 KB failure."""
    counts: dict[str, int] = {}
    for sentence in text.split("; "):
        counts[sentence] = counts.get(sentence, 0) + 1
    text = "; ".join(s if n == 1 else f"{s} (x{n})" for s, n in counts.items())
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]} ... [{len(text) - 2 * keep} characters cut] ... {text[-keep:]}"

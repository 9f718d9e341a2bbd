"""Runs one check against one profile, independent of any test runner.

The pytest plugin is a thin adapter over ``run_check`` (SQLAlchemy's testing layout): the suite's own
negative-control tests call it directly, which is how every check is shown to fail on a broken
executor without going through a nested pytest session.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from conformance import airflow_compat as compat
from conformance.catalog import CheckSpec
from conformance.harness import Budgets, CallTimedOut, DeadlineExceeded, SchedulerHarness
from conformance.profile import DEFAULT_PARALLELISM, ExecutorProfile
from conformance.sandbox import Sandbox


class Outcome(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_SUPPORTED = "not supported"
    NOT_APPLICABLE = "not applicable"
    ADVICE = "advice"


class ConformanceFailure(AssertionError):
    """A check found the executor breaking its contract clause."""


class NotSupported(Exception):
    """The executor lacks a capability the check needs (reported, not failed)."""


class AdviceGiven(Exception):
    """An ATTR-2a convention is not followed: reported as advice, never as a failure."""


@dataclass
class CheckResult:
    check_id: str
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0


@dataclass
class CheckContext:
    """What a check function gets: builders for harnesses, the journal, and ``fail``."""

    spec: CheckSpec
    profile: ExecutorProfile
    sandbox: Sandbox
    capabilities: dict[str, bool]
    harnesses: list[SchedulerHarness] = field(default_factory=list)
    budgets: Budgets = field(default_factory=Budgets)

    def build(self, parallelism: int = DEFAULT_PARALLELISM, **extra: Any) -> Any:
        return self.profile.build(parallelism=parallelism, **extra)

    def harness(self, parallelism: int = DEFAULT_PARALLELISM, *, name: str = "A", job_id: int = 1,
                start: bool = True, executor: Any = None) -> SchedulerHarness:
        ex = executor if executor is not None else self.build(parallelism)
        h = SchedulerHarness(ex, self.sandbox, name=name, job_id=job_id, budgets=self.budgets)
        self.harnesses.append(h)
        return h.start() if start else h

    def journal(self) -> Any:
        return self.sandbox.journal()

    @property
    def states(self) -> Any:
        return compat.state_enum()

    def fail(self, did: str, harness: SchedulerHarness | None = None) -> ConformanceFailure:
        """Build the failure a check raises: clause, what happened, what Airflow expects, a fix."""
        spec = self.spec
        parts = [
            f"[{spec.id}] violates SPEC {spec.clause}: {spec.title}",
            f"What the executor did: {did}",
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

    def advise(self, text: str) -> AdviceGiven:
        return AdviceGiven(f"[{self.spec.id}] advice (SPEC {self.spec.clause}): {text}")

    def not_supported(self, reason: str) -> NotSupported:
        return NotSupported(reason)

    def close(self) -> list[str]:
        problems: list[str] = []
        for h in reversed(self.harnesses):
            problems += h.close()
        self.sandbox.settle()
        leaked = self.sandbox.kill_leaked_probes()
        if leaked:
            problems.append("probe processes were still running after the executor was ended and "
                            "were killed: " + "; ".join(r.describe() for r in leaked))
        return problems


def missing_capabilities(spec: CheckSpec, capabilities: dict[str, bool]) -> list[str]:
    """Needs not met; ``"!name"`` means the capability must be absent."""
    missing = []
    for need in spec.needs:
        name, wanted = (need[1:], False) if need.startswith("!") else (need, True)
        if bool(capabilities.get(name, False)) is not wanted:
            missing.append(need)
    return missing


def run_check(spec: CheckSpec, profile: ExecutorProfile, sandbox: Sandbox,
              capabilities: dict[str, bool] | None = None, budgets: Budgets | None = None) -> CheckResult:
    """Run ``spec`` against ``profile``; never raises for a verdict, only for harness bugs."""
    started = time.monotonic()
    if not spec.applies():
        return CheckResult(spec.id, Outcome.NOT_APPLICABLE,
                           f"applies to {spec.applies_text}, not Airflow {compat.version_string()}")
    caps = capabilities if capabilities is not None else profile.capability_set()
    missing = missing_capabilities(spec, caps)
    if missing:
        from conformance.profile import CAPABILITIES

        why = "; ".join(f"{m.lstrip('!')}: {CAPABILITIES.get(m.lstrip('!'), m)}"
                        + (" (must be absent)" if m.startswith("!") else "") for m in missing)
        return CheckResult(spec.id, Outcome.NOT_SUPPORTED, f"needs {why}")
    ctx = CheckContext(spec, profile, sandbox, caps, budgets=budgets or Budgets())
    outcome, message = Outcome.PASSED, ""
    try:
        with _verdicts(ctx) as verdict:
            spec.func(ctx)
        outcome, message = verdict.get("outcome", outcome), verdict.get("message", message)
    finally:
        problems = ctx.close()
    if problems and outcome is Outcome.PASSED:
        outcome, message = Outcome.FAILED, str(ctx.fail("; ".join(problems)))
    return CheckResult(spec.id, outcome, message, time.monotonic() - started)


@contextlib.contextmanager
def _verdicts(ctx: CheckContext) -> Iterator[dict[str, Any]]:
    verdict: dict[str, Any] = {}
    try:
        yield verdict
    except ConformanceFailure as exc:
        verdict.update(outcome=Outcome.FAILED, message=str(exc))
    except (CallTimedOut, DeadlineExceeded) as exc:
        verdict.update(outcome=Outcome.FAILED, message=str(ctx.fail(str(exc))))
    except NotSupported as exc:
        verdict.update(outcome=Outcome.NOT_SUPPORTED, message=str(exc))
    except AdviceGiven as exc:
        verdict.update(outcome=Outcome.ADVICE, message=str(exc))
    except Exception as exc:
        # An executor call raising where the contract says it must not is a failure of the clause.
        verdict.update(outcome=Outcome.FAILED,
                       message=str(ctx.fail(f"raised {type(exc).__name__}: {exc}")))

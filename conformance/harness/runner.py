"""Runs one check against one profile, independent of any test runner.

The pytest plugin is a thin adapter over ``run_check`` (SQLAlchemy's testing layout): the suite's own
negative-control tests call it directly, which is how every check is shown to fail on a broken
executor without going through a nested pytest session.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from conformance.groundtruth.sandbox import Sandbox
from conformance.harness import airflow_compat as compat
from conformance.harness.capabilities import Capabilities, explain_unmet, unmet
from conformance.harness.catalog import CheckSpec
from conformance.harness.context import CheckContext, RunOptions
from conformance.harness.outcomes import (
    AdviceGiven,
    CheckResult,
    ConformanceFailure,
    Inconclusive,
    NotApplicable,
    NotSupported,
    Outcome,
    cause_of,
    describe_exception,
)
from conformance.harness.profile import ExecutorProfile
from conformance.harness.scheduler import CallTimedOut
from conformance.harness.timing import CeilingReached, WaitTimedOut

#: the one cause every check cut short by ``--max-minutes`` shares (grouped in the summary)
CEILING_CAUSE = "the --max-minutes ceiling was reached"


def run_check(spec: CheckSpec, profile: ExecutorProfile, sandbox: Sandbox,
              capabilities: dict[str, bool] | None = None, options: RunOptions | None = None) -> CheckResult:
    """Run ``spec`` against ``profile``; never raises for a verdict, only for harness bugs."""
    started = time.monotonic()
    if not spec.applies():
        return CheckResult(spec.id, Outcome.NOT_APPLICABLE,
                           f"applies to {spec.applies_text}; this is Airflow {compat.version_string()}")
    # a plain mapping must answer for every declared capability (one left out would read as "no")
    caps = Capabilities.of(capabilities) if capabilities is not None else profile.capability_set()
    missing = unmet(spec.needs, caps)
    if missing:
        return CheckResult(spec.id, Outcome.NOT_SUPPORTED, explain_unmet(missing))
    ctx = CheckContext(spec, profile, sandbox, caps, options=options or RunOptions())
    verdict: dict[str, Any] = {"outcome": Outcome.PASSED, "message": ""}
    try:
        with _verdicts(ctx, verdict):
            spec.func(ctx)
    finally:
        problems, late = ctx.close()
    if problems:
        teardown, cause = teardown_finding(spec, problems)
        if verdict["outcome"] is Outcome.FAILED:
            verdict["message"] += "\n\nAlso found while tearing the check down:\n" + teardown
        else:
            verdict.update(outcome=Outcome.FAILED, message=teardown, cause=cause)
    if verdict["outcome"] is Outcome.PASSED and ctx.notes:
        verdict["message"] = "; ".join(ctx.notes)
    return CheckResult(spec.id, verdict["outcome"], verdict["message"], time.monotonic() - started, leaks=late,
                       cause=str(verdict.get("cause") or ""))


#: teardown problems are findings of the lifecycle clauses, not of whichever check happened to tear down
_TEARDOWN_CLAUSES = (
    ("end() did not return", "lifecycle.end_returns_with_work_in_flight", "end() blocks past its budget"),
    ("end() raised", "lifecycle.end_returns_with_work_in_flight", "end() raises"),
    ("still running after the executor was ended", "lifecycle.end_waits_and_flushes",
     "task work outlives end()"),
    ("outlived end()", "lifecycle.end_waits_and_flushes", "processes outlive end()"),
)


def teardown_finding(spec: CheckSpec, problems: list[str]) -> tuple[str, str]:
    """What tearing ``spec``'s check down found, as a finding of the clause it breaks (LIFE-7: end() is
    bounded; LIFE-1: nothing outlives end()) and a cause that groups it with the same problem in other
    checks -- never with ``spec``'s own title and fix, which would send the author to the wrong clause."""
    from conformance import checks

    text = "; ".join(problems)
    check_id, cause = next(((cid, why) for needle, cid, why in _TEARDOWN_CLAUSES if needle in text),
                           ("lifecycle.end_returns_with_work_in_flight", "teardown problem"))
    owner = checks.get(check_id)
    message = "\n".join([
        f"[{spec.id}] tearing this check down found a problem of SPEC {owner.clause}: {owner.title} "
        f"(judged by {owner.id}; this check found its own clause, {spec.clause}, unbroken)",
        f"What the executor did: {text}",
        f"What Airflow's scheduler expects: {owner.expects}",
        f"How to fix: {owner.fix}"])
    return message, f"teardown: {cause}"


@contextlib.contextmanager
def _verdicts(ctx: CheckContext, verdict: dict[str, Any]) -> Iterator[None]:
    try:
        yield
    except ConformanceFailure as exc:
        verdict.update(outcome=Outcome.FAILED, message=str(exc))
    except Inconclusive as exc:
        verdict.update(outcome=Outcome.INCONCLUSIVE, message=f"[{ctx.spec.id}] (SPEC {ctx.spec.clause}) {exc}",
                       cause=exc.cause)
    except CeilingReached as exc:
        verdict.update(outcome=Outcome.INCONCLUSIVE, cause=CEILING_CAUSE,
                       message=f"[{ctx.spec.id}] (SPEC {ctx.spec.clause}) {exc}: the budget was exhausted by the "
                               "run's ceiling, not by the executor (raise --max-minutes, or leave it unset)")
    except CallTimedOut as exc:
        verdict.update(outcome=Outcome.FAILED, message=str(ctx.fail(str(exc))),
                       cause=f"{exc.label} blocks past its budget" if exc.label else "")
    except WaitTimedOut as exc:
        verdict.update(outcome=Outcome.FAILED, message=str(ctx.fail(str(exc))), cause=exc.cause)
    except NotSupported as exc:
        verdict.update(outcome=Outcome.NOT_SUPPORTED, message=str(exc))
    except NotApplicable as exc:
        verdict.update(outcome=Outcome.NOT_APPLICABLE, message=str(exc))
    except AdviceGiven as exc:
        verdict.update(outcome=Outcome.ADVICE, message=str(exc))
    except Exception as exc:
        # An executor call raising where the contract says it must not is a failure of the clause.
        verdict.update(outcome=Outcome.FAILED, message=str(ctx.fail(f"raised {describe_exception(exc)}")),
                       cause=cause_of(exc))

"""SPEC PRE: before anything else, one no-op task and one failing task run end to end."""

from __future__ import annotations

from conformance.harness.catalog import check
from conformance.harness.context import CheckContext

PREFLIGHT_ID = "preflight.task_runs_end_to_end"


@check(PREFLIGHT_ID, clause="PRE-1",
       title="the executor starts, runs a no-op task and a failing task end to end, and ends",
       expects="Everything the scheduler does rests on this round trip: queue_* then heartbeat() starts the "
               "task, sync() reports SUCCESS or FAILED in the event buffer, end() returns.",
       fix="Follow the diagnosis: it says which step of the round trip broke and what the journal saw.")
def task_runs_end_to_end(ctx: CheckContext) -> None:
    """Build, start, idle heartbeats, three no-op tasks to SUCCESS, one failing task to FAILED, end().
    When this fails every other check is *not run*: they could only fail for the same reason."""
    from conformance.certification.preflight import run_preflight

    result = run_preflight(ctx.profile, ctx.sandbox, ctx.time)
    ctx.expect(result.passed, result.diagnosis)


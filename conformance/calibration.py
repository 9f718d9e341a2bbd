"""Calibration: what a few no-op tasks cost with this executor on this machine, once per session.

The time model (``conformance.timing``) scales every budget from these figures, so that a remote
executor whose round trip is 13 s gets budgets made for it, and a local one on an idle machine keeps
its floors. Calibration is not a verdict: its own budget is generous, and when it cannot finish the
floors apply and the checks say what is wrong.
"""

from __future__ import annotations

import time

from conformance.harness import CallTimedOut, SchedulerHarness
from conformance.outcomes import describe_exception
from conformance.probes import Probe, ProbeKind
from conformance.profile import ExecutorProfile
from conformance.sandbox import Sandbox
from conformance.timing import Calibration, TimeModel

_OWNER = "calibration"
#: Calibration may take this many event budgets (at the floors) before it gives up.
_PATIENCE = 6.0


def calibrate(profile: ExecutorProfile, sandbox: Sandbox, model: TimeModel, samples: int = 3) -> Calibration:
    """Queue ``samples`` no-op tasks together and measure them; the worst sample counts."""
    h = SchedulerHarness(profile.build(), sandbox, name="calibration", time_model=model, owner=_OWNER)
    try:
        h.start()
        idle = []
        for _ in range(3):
            began = time.monotonic()
            h.heartbeat()
            idle.append(time.monotonic() - began)
        tasks = [h.queue(Probe.new(ProbeKind.OK)) for _ in range(samples)]
        h.drain_terminal(tasks, deadline=model.budget("event") * _PATIENCE)
        journal = h.journal()
        starts, reports, trips = [], [], []
        for task in tasks:
            event = h.terminal_events(task.key)[0]
            runs = journal.runs_of(task.task_id)
            trips.append(event.at - task.queued_at)
            if runs:
                starts.append(runs[0].started - task.queued_at)
                if runs[0].finished is not None:
                    reports.append(max(0.0, event.at - runs[0].finished))
        return Calibration(round_trip=max(trips), start_latency=max(starts, default=0.0),
                           report_latency=max(reports, default=0.0), heartbeat=max(idle), samples=samples)
    except Exception as exc:
        if isinstance(exc, CallTimedOut):
            h.abandon()  # it already blocked once: teardown must not wait on it again (the checks will)
        return Calibration(error=f"calibration could not finish: {describe_exception(exc)}")
    finally:
        h.close()
        sandbox.reclaim(_OWNER, model.budget("settle"))

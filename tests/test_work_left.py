"""Work left behind is named: tasks the suite queued that neither started nor were reported may still wait on
the executor's backend after the session (on a paid backend they cost); the summary lists them per check."""

from __future__ import annotations

import uuid

from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.groundtruth.sandbox import WORK_LEFT, Sandbox
from conformance.harness.profile import ExecutorProfile
from conformance.harness.scheduler import SchedulerHarness
from reference_executors import LocalExecutor
from tests.controls.preflight import NeverStarts


def _left_by(sandbox: Sandbox, owner: str) -> list[str]:
    return [line for line in sandbox.work_left_queued() if f"queued by {owner} " in line]


def test_work_handed_over_and_never_started_is_named(sandbox: Sandbox) -> None:
    owner = f"test-{uuid.uuid4().hex[:6]}"
    h = SchedulerHarness(ExecutorProfile(executor_class=NeverStarts).build(parallelism=2), sandbox,
                         owner=owner).start()
    tasks = [h.queue(Probe.new(ProbeKind.OK)) for _ in range(2)]
    h.heartbeat()  # handed over (off queued_tasks), never started
    h.collect()
    h.close()
    left = _left_by(sandbox, owner)
    assert len(left) == 1 and left[0].startswith(WORK_LEFT), left
    assert "2 task(s)" in left[0] and tasks[0].task_id in left[0] and "may still be queued on your backend" in left[0]


def test_reported_or_never_handed_over_work_is_not_named(sandbox: Sandbox) -> None:
    owner = f"test-{uuid.uuid4().hex[:6]}"
    h = SchedulerHarness(ExecutorProfile(executor_class=LocalExecutor).build(parallelism=1), sandbox,
                         owner=owner).start()
    ran = h.queue(Probe.new(ProbeKind.OK))
    h.drain_terminal([ran])
    h.queue(Probe.new(ProbeKind.OK), queue="a-queue-nobody-serves")  # stays in queued_tasks
    h.close()
    assert not _left_by(sandbox, owner)

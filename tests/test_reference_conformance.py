"""The reference executors pass every check that applies to them (and only skip what they lack)."""

from __future__ import annotations

import pytest

from conformance import checks
from conformance.harness import airflow_compat as compat
from conformance.harness.outcomes import Outcome
from conformance.harness.profile import ExecutorProfile
from conformance.harness.runner import run_check
from reference_executors.faults import StateDirectoryOutage
from tests.broken_executors import REFERENCE, area_marks, missing_on_this_airflow

#: What each reference executor legitimately does not support (anything else must pass).
NOT_SUPPORTED = {
    "LocalExecutor": {"attributes.single_threaded_never_overlaps", "attributes.multi_team_accepts_team_name",
                      "lifecycle.end_waits_and_flushes"},
    "SequentialExecutor": {"attributes.parallel_executor_overlaps", "attributes.multi_team_accepts_team_name",
                           "heartbeat.respects_parallelism", "heartbeat.does_not_block",
                           "heartbeat.starts_queued_work_while_busy",
                           "lifecycle.requeued_while_running_never_overlaps",
                           "stuck.revoked_running_task_untracked", "cli.commands_are_valid",
                           "adoption.adopted_tasks_finish_without_rerun",
                           "adoption.adopting_twice_is_idempotent",
                           "e2e.stuck_in_queued_handled"},
}

CASES = [pytest.param(name, check_id, id=f"{name}-{check_id}", marks=area_marks(check_id))
         for name in REFERENCE for check_id in sorted(checks.catalogue())]


@pytest.mark.parametrize(("executor_name", "check_id"), CASES)
def test_reference_executor_passes(executor_name: str, check_id: str, sandbox: object) -> None:
    spec = checks.get(check_id)
    profile = ExecutorProfile(executor_class=REFERENCE[executor_name], backend=StateDirectoryOutage())
    result = run_check(spec, profile, sandbox)  # type: ignore[arg-type]
    if not spec.applies():
        assert result.outcome is Outcome.NOT_APPLICABLE
        return
    if check_id in NOT_SUPPORTED[executor_name] or missing_on_this_airflow(check_id):
        assert result.outcome is Outcome.NOT_SUPPORTED, result.message
    else:
        assert result.outcome is Outcome.PASSED, result.message


def test_sequential_reports_adoption_not_supported_on_this_airflow(sandbox: object) -> None:
    spec = checks.get("adoption.adopted_tasks_finish_without_rerun")
    result = run_check(spec, ExecutorProfile(executor_class=REFERENCE["SequentialExecutor"]), sandbox)  # type: ignore[arg-type]
    assert result.outcome is Outcome.NOT_SUPPORTED
    assert "try_adopt_task_instances" in result.message, compat.version_string()


def test_single_threaded_executor_that_adopts_nothing_is_not_judged_on_adoption(sandbox: object) -> None:
    """Confirmed by behaviour, also without a held task in a blocking heartbeat: a single-threaded executor
    whose override hands every TI back cannot adopt, so ADOPT-2/3 are not supported (never failed)."""
    from conformance.certification.confirm import confirmed_capabilities
    from tests.broken_executors import SequentialDeclinesAdoption

    profile = ExecutorProfile(executor_class=SequentialDeclinesAdoption)
    caps = confirmed_capabilities(profile, sandbox)  # type: ignore[arg-type]
    assert caps["adoption"] is False, caps
    for check_id in ("adoption.adopted_tasks_finish_without_rerun", "adoption.adopting_twice_is_idempotent"):
        result = run_check(checks.get(check_id), profile, sandbox, caps)  # type: ignore[arg-type]
        assert result.outcome is Outcome.NOT_SUPPORTED, (check_id, result.message)

"""One ``Capabilities`` object per executor: every declared capability answered, where each answer came
from, and a typo that is an error rather than a silent "no"."""

from __future__ import annotations

import pytest

from conformance.harness.capabilities import DECLARED, Capabilities, CapabilityState
from conformance.harness.profile import ExecutorProfile
from reference_executors import LocalExecutor, SequentialExecutor


def test_a_misspelt_capability_is_refused_with_the_nearest_name() -> None:
    caps = ExecutorProfile(executor_class=LocalExecutor).capability_set()
    with pytest.raises(KeyError, match="'adoptoin' is not a declared capability \\(did you mean 'adoption'\\?\\)"):
        caps.get("adoptoin")
    with pytest.raises(KeyError, match="not a declared capability"):
        caps["single_thread"]


def test_a_capability_never_computed_is_an_error_not_false() -> None:
    states = {name: CapabilityState(name, False) for name in DECLARED if name != "callbacks"}
    with pytest.raises(KeyError, match=r"\['callbacks'\] were never computed"):
        Capabilities(states)


def test_plain_answers_must_answer_every_capability() -> None:
    """What a worker process receives, or a caller passes to ``run_check``: a left-out name is an error."""
    answers = {name: False for name in DECLARED}
    assert Capabilities.of(answers)["adoption"] is False
    del answers["revoke"]
    with pytest.raises(KeyError, match=r"\['revoke'\] were never computed"):
        Capabilities.of(answers)
    with pytest.raises(KeyError, match="not declared"):
        Capabilities.of({**answers, "revoke": True, "revokes": True})


def test_the_author_declares_behaviour_confirms_and_airflow_decides_what_exists() -> None:
    assert CapabilityState("adoption", detected=True, confirmed=False).value is False
    assert CapabilityState("adoption", detected=True, declared=True, confirmed=False).value is True
    assert CapabilityState("revoke", detected=True, declared=True, exists=False).value is False


def test_the_profile_answers_every_capability_with_its_provenance() -> None:
    caps = ExecutorProfile(executor_class=SequentialExecutor, capabilities={"local": False}).capability_set()
    assert set(caps) == set(DECLARED)
    assert caps["single_threaded"] is True and caps["parallel"] is False
    assert caps.states["local"].detected is True and caps.states["local"].declared is False and not caps["local"]
    confirmed = caps.confirm("adoption", False)
    assert confirmed.provenance()["adoption"]["confirmed"] is False and confirmed["adoption"] is False


def test_work_the_backend_still_holds_after_end_is_reported_against_the_check(sandbox: object) -> None:
    """A driver that can say what its backend still holds (``BackendDriver.outstanding``): what it names
    for a check's tasks after the executor was ended is that check's LIFE-1 finding, not the next check's
    mystery."""
    from conformance import checks
    from conformance.harness.outcomes import Outcome
    from conformance.harness.runner import run_check
    from reference_executors.faults import StateDirectoryOutage

    class KeepsJobs(StateDirectoryOutage):
        asked: list[str] = []

        def outstanding(self, task_ids: list[str]) -> list[str]:
            self.asked.extend(task_ids)
            return [f"job {task_ids[0]} PENDING"]

    driver = KeepsJobs()
    profile = ExecutorProfile(executor_class=SequentialExecutor, backend=driver)  # cannot adopt
    result = run_check(checks.get("heartbeat.triggers_queued_work"), profile, sandbox)  # type: ignore[arg-type]
    assert driver.asked, "the driver was never asked"
    assert result.outcome is Outcome.FAILED, result
    assert "held by the backend (its driver says): job cfp-" in result.message
    assert "SPEC LIFE-1" in result.message and result.cause == "teardown: task work outlives end()"


class LeavesHelperRunning(SequentialExecutor):
    """start() launches a helper process that end() forgets: it outlives the scheduler (SPEC LIFE-1)."""

    def start(self) -> None:
        import subprocess

        super().start()
        self._helper = subprocess.Popen(["sleep", "300"])


def test_a_teardown_problem_of_the_preflight_is_reported_and_stops_nothing(sandbox: object) -> None:
    from conformance import checks
    from conformance.certification.preflight import preflight_result, run_preflight
    from conformance.checks.preflight import PREFLIGHT_ID
    from conformance.harness.outcomes import Outcome
    from conformance.harness.timing import TimeModel

    found = run_preflight(ExecutorProfile(executor_class=LeavesHelperRunning), sandbox, TimeModel())  # type: ignore[arg-type]
    assert found.passed and not found.stops_the_run, found
    assert any("outlived end()" in problem and "sleep 300" in problem for problem in found.teardown), found.teardown
    result = preflight_result(checks.get(PREFLIGHT_ID), found.diagnosis, found.cut, found.teardown)
    assert result.outcome is Outcome.FAILED and result.cause == "teardown: processes outlive end()"
    assert "SPEC LIFE-1" in result.message and "this check found its own clause, PRE-1, unbroken" in result.message

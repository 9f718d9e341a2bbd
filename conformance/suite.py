"""The suite as pytest tests: one test per catalogued check, parametrised by its stable id.

Collected automatically with ``pytest --executor pkg.mod.Class``. A project that prefers a conftest
``executor_profile`` fixture imports it into one of its own test modules (SQLAlchemy-style)::

    from conformance.suite import test_check  # noqa: F401
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import checks
from conformance.catalog import CheckSpec
from conformance.checks.preflight import PREFLIGHT_ID
from conformance.context import RunOptions
from conformance.outcomes import CheckResult, Outcome
from conformance.runner import run_check
from conformance.session import record

_FALLBACK: dict[int, tuple[RunOptions, dict[str, bool], str]] = {}


def _shared(request: pytest.FixtureRequest, profile: Any, sandbox: Any) -> tuple[RunOptions, dict[str, bool], str]:
    """Run options, capabilities and the preflight's diagnosis: the session's (the preflight runs once
    per worker) or, for a conftest profile without ``--executor``, computed once per profile here."""
    from conformance.plugin import session_state

    state = session_state(request.config)
    if state is not None and state.profile is profile:
        return state.run_options(), state.capabilities(), state.preflight_diagnosis()
    if id(profile) not in _FALLBACK:
        from dataclasses import replace

        from conformance.confirm import confirmed_capabilities
        from conformance.preflight import run_preflight

        options = RunOptions()
        preflight = run_preflight(profile, sandbox, options.time)
        options = replace(options, time=options.time.calibrated(preflight.calibration))
        caps = (profile.capability_set() if preflight.diagnosis
                else confirmed_capabilities(profile, sandbox, options.time))
        _FALLBACK[id(profile)] = (options, caps, preflight.diagnosis)
    return _FALLBACK[id(profile)]


def _preflight_result(spec: CheckSpec, diagnosis: str) -> CheckResult:
    if not diagnosis:
        return CheckResult(spec.id, Outcome.PASSED)
    message = "\n".join([f"[{spec.id}] violates SPEC {spec.clause}: {spec.title}",
                          f"What the executor did: {diagnosis}",
                          f"What Airflow's scheduler expects: {spec.expects}", f"How to fix: {spec.fix}"])
    return CheckResult(spec.id, Outcome.FAILED, message, cause=f"preflight: {diagnosis}")


@pytest.mark.parametrize("check_id", sorted(checks.catalogue()))
def test_check(conformance_sandbox: Any, executor_profile: Any, check_id: str,
               request: pytest.FixtureRequest) -> None:
    spec = checks.get(check_id)
    options, capabilities, preflight_failed = _shared(request, executor_profile, conformance_sandbox)
    if preflight_failed and check_id != PREFLIGHT_ID:
        result = CheckResult(check_id, Outcome.NOT_RUN, f"not run: the preflight failed ({preflight_failed}); "
                             "fix that first -- this check could only have failed for the same reason",
                             cause=f"preflight: {preflight_failed}")
    elif check_id == PREFLIGHT_ID:  # the session ran it already (it calibrated the run): its verdict stands
        result = _preflight_result(spec, preflight_failed)
    else:
        result = run_check(spec, executor_profile, conformance_sandbox, capabilities, options)
    record(request.node, result)
    expected = executor_profile.expected_failures.get(check_id)
    if result.outcome in (Outcome.NOT_APPLICABLE, Outcome.NOT_SUPPORTED, Outcome.NOT_RUN):
        pytest.skip(f"{result.outcome.value}: {result.message}")
    if result.outcome is Outcome.INCONCLUSIVE:
        pytest.fail(f"INCONCLUSIVE: {result.message}", pytrace=False)
    if result.outcome is Outcome.FAILED:
        if expected:
            pytest.xfail(f"expected failure: {expected}")
        pytest.fail(result.message, pytrace=False)
    if expected:
        pytest.fail(f"[{check_id}] is listed as an expected failure ({expected!r}) but it passed: "
                    "remove it from the expected failures", pytrace=False)

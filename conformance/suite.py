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
from conformance.outcomes import CheckResult, Outcome
from conformance.runner import run_check
from conformance.session import record


def _session(request: pytest.FixtureRequest, profile: Any, sandbox: Any) -> Any:
    """The run's session, bound to the profile on first use (for a conftest ``executor_profile``, this
    is where the profile becomes known): the preflight and the capability confirmation run once per
    worker session, whichever route started it."""
    from conformance.plugin import session_state

    state = session_state(request.config)
    if state is None:
        raise RuntimeError("test_check runs only with the executor-conformance plugin active")
    if state.profile is None:
        state.bind(profile, sandbox)
    elif state.profile is not profile:
        raise pytest.UsageError(f"two executor profiles in one run ({state.profile.label} and {profile.label}): "
                                "certify one executor per pytest run")
    return state


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
    state = _session(request, executor_profile, conformance_sandbox)
    options, capabilities, preflight_failed = state.run_options(), state.capabilities(), state.preflight_diagnosis()
    if preflight_failed and check_id != PREFLIGHT_ID:
        result = CheckResult(check_id, Outcome.NOT_RUN, f"not run: the preflight failed ({preflight_failed}); "
                             "fix that first -- this check could only have failed for the same reason",
                             cause=f"preflight: {preflight_failed}")
    elif check_id == PREFLIGHT_ID:  # the session ran it already (it calibrated the run): its verdict stands
        result = _preflight_result(spec, state.preflight_finding())
    else:
        result = run_check(spec, executor_profile, conformance_sandbox, capabilities, options)
    record(request.node, result, state.run_info())
    expected = executor_profile.expected_failures.get(check_id)
    strict = state.settings.strict
    if result.outcome in (Outcome.NOT_APPLICABLE, Outcome.NOT_SUPPORTED, Outcome.NOT_RUN):
        pytest.skip(f"{result.outcome.value}: {result.message}")
    if result.outcome is Outcome.INCONCLUSIVE:
        pytest.fail(f"INCONCLUSIVE: {result.message}", pytrace=False)
    if result.outcome is Outcome.FAILED:
        if expected and not strict:
            pytest.xfail(f"expected failure: {expected}")
        if expected:
            pytest.fail(f"{result.message}\n\n(listed as an expected failure, {expected!r}; --strict accepts no "
                        "exceptions)", pytrace=False)
        pytest.fail(result.message, pytrace=False)
    if result.outcome is Outcome.ADVICE and strict:
        pytest.fail(f"{result.message}\n\n(advice; --strict accepts no exceptions)", pytrace=False)
    if expected:
        pytest.fail(f"[{check_id}] is listed as an expected failure ({expected!r}) but it passed: "
                    "remove it from the expected failures", pytrace=False)

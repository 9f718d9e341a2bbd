"""The suite as pytest tests: one test per catalogued check, parametrised by its stable id.

Collected automatically with ``pytest --executor pkg.mod.Class``. A project that prefers a conftest
``executor_profile`` fixture imports it into one of its own test modules (SQLAlchemy-style)::

    from conformance.pytest_plugin.suite import test_check  # noqa: F401
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import checks
from conformance.certification.core import not_run, not_started
from conformance.certification.preflight import preflight_result
from conformance.checks.preflight import PREFLIGHT_ID
from conformance.harness import timing
from conformance.harness.outcomes import Outcome, with_expectation
from conformance.harness.runner import CEILING_CAUSE, run_check
from conformance.pytest_plugin.session import record


def _session(request: pytest.FixtureRequest, profile: Any, sandbox: Any) -> Any:
    """The run's session, bound to the profile on first use (for a conftest ``executor_profile``, this
    is where the profile becomes known): the preflight and the capability confirmation run once per
    worker session, whichever route started it."""
    from conformance.pytest_plugin.plugin import session_state

    state = session_state(request.config)
    if state is None:
        raise RuntimeError("test_check runs only with the executor-conformance plugin active")
    if state.profile is None:
        state.bind(profile, sandbox)
    elif state.profile is not profile:
        raise pytest.UsageError(f"two executor profiles in one run ({state.profile.label} and {profile.label}): "
                                "certify one executor per pytest run")
    return state


@pytest.mark.parametrize("check_id", sorted(checks.catalogue()))
def test_check(conformance_sandbox: Any, executor_profile: Any, check_id: str,
               request: pytest.FixtureRequest) -> None:
    spec = checks.get(check_id)
    state = _session(request, executor_profile, conformance_sandbox)
    options, capabilities, preflight_failed = state.run_options(), state.capabilities(), state.preflight_diagnosis()
    if preflight_failed and check_id != PREFLIGHT_ID:
        result = not_run(check_id, preflight_failed)
    elif timing.remaining() == 0.0:
        result = not_started(check_id, CEILING_CAUSE)
    elif check_id == PREFLIGHT_ID:  # the session ran it already (it calibrated the run): its verdict stands
        result = preflight_result(spec, state.preflight_finding(), state.preflight_cut(), state.preflight_teardown())
    else:
        result = run_check(spec, executor_profile, conformance_sandbox, capabilities, options)
    stated = with_expectation(result, executor_profile.expected_failures.get(check_id), state.settings.strict)
    record(request.node, stated, state.run_info())
    if stated.outcome in (Outcome.NOT_APPLICABLE, Outcome.NOT_SUPPORTED, Outcome.NOT_RUN):
        pytest.skip(f"{stated.outcome.value}: {stated.message}")
    if stated.outcome is Outcome.INCONCLUSIVE:
        pytest.fail(f"INCONCLUSIVE: {stated.message}", pytrace=False)
    if stated.outcome is Outcome.EXPECTED_FAILURE:
        pytest.xfail(stated.message)
    if stated.outcome is Outcome.FAILED:
        pytest.fail(stated.message, pytrace=False)

"""The suite as pytest tests: one test per catalogued check, parametrised by its stable id.

Collected automatically with ``pytest --executor pkg.mod.Class``. A project that prefers a conftest
``executor_profile`` fixture imports it into one of its own test modules (SQLAlchemy-style)::

    from conformance.suite import test_check  # noqa: F401
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import checks
from conformance.context import RunOptions
from conformance.outcomes import Outcome
from conformance.runner import run_check
from conformance.session import record

_FALLBACK: dict[int, tuple[RunOptions, dict[str, bool]]] = {}


def _shared(request: pytest.FixtureRequest, profile: Any, sandbox: Any) -> tuple[RunOptions, dict[str, bool]]:
    """Run options and capabilities: the session's (calibrated once per worker) or, for a conftest
    profile without ``--executor``, computed once per profile here."""
    from conformance.plugin import session_state

    state = session_state(request.config)
    if state is not None and state.profile is profile:
        return state.run_options(), state.capabilities()
    if id(profile) not in _FALLBACK:
        from conformance.confirm import confirmed_capabilities

        options = RunOptions()
        _FALLBACK[id(profile)] = (options, confirmed_capabilities(profile, sandbox, options.time))
    return _FALLBACK[id(profile)]


@pytest.mark.parametrize("check_id", sorted(checks.catalogue()))
def test_check(conformance_sandbox: Any, executor_profile: Any, check_id: str,
               request: pytest.FixtureRequest) -> None:
    spec = checks.get(check_id)
    options, capabilities = _shared(request, executor_profile, conformance_sandbox)
    result = run_check(spec, executor_profile, conformance_sandbox, capabilities, options)
    record(request.node, result)
    expected = executor_profile.expected_failures.get(check_id)
    if result.outcome in (Outcome.NOT_APPLICABLE, Outcome.NOT_SUPPORTED):
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

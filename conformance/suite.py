"""The suite as pytest tests: one test per catalogued check, parametrised by its stable id.

Collected automatically with ``pytest --executor pkg.mod.Class``. A project that prefers a conftest
``executor_profile`` fixture imports it into one of its own test modules (SQLAlchemy-style)::

    from conformance.suite import test_check  # noqa: F401
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import catalog
from conformance.runner import Outcome, run_check

_CAPABILITIES: dict[int, dict[str, bool]] = {}


def _capabilities(profile: Any) -> dict[str, bool]:
    key = id(profile)
    if key not in _CAPABILITIES:
        _CAPABILITIES[key] = profile.capability_set()
    return _CAPABILITIES[key]


@pytest.mark.parametrize("check_id", sorted(catalog.load()))
def test_check(conformance_sandbox: Any, executor_profile: Any, check_id: str,
               request: pytest.FixtureRequest) -> None:
    spec = catalog.get(check_id)
    result = run_check(spec, executor_profile, conformance_sandbox, _capabilities(executor_profile))
    expected = executor_profile.expected_failures.get(check_id)
    if result.outcome is Outcome.NOT_APPLICABLE:
        pytest.skip(f"not applicable: {result.message}")
    if result.outcome is Outcome.NOT_SUPPORTED:
        pytest.skip(f"not supported: {result.message}")
    if result.outcome is Outcome.FAILED:
        if expected:
            pytest.xfail(f"expected failure: {expected}")
        pytest.fail(result.message, pytrace=False)
    if expected:
        pytest.fail(f"[{check_id}] is listed as an expected failure ({expected!r}) but it passed: "
                    "remove it from the expected failures", pytrace=False)
    if result.outcome is Outcome.ADVICE:
        request.node.user_properties.append(("advice", result.message))

"""The suite's own tests run inside one sandbox per session (per xdist worker).

It is activated here, at conftest import, so that AIRFLOW_HOME points into the sandbox before any
test module imports Airflow.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.groundtruth.sandbox import Sandbox, ensure_active

pytest_plugins = ["pytester"]

_SANDBOX = ensure_active()

# Airflow's ORM models, imported once for the whole session: ``pytester`` restores ``sys.modules`` after
# each test that uses it, and a model module first imported during such a test would be imported again
# later -- SQLAlchemy then refuses to define its table twice and every later test in that worker fails.
import airflow.models.dagrun  # noqa: E402
import airflow.models.taskinstance  # noqa: E402, F401


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    yield _SANDBOX


@pytest.fixture(autouse=True)
def _no_leaks(sandbox: Sandbox) -> Iterator[None]:
    """After every test: no probe process alive, nothing written to ~/airflow (checked, not hoped)."""
    yield
    leaked = sandbox.kill_leaked_probes()
    assert not leaked, f"probe processes leaked by this test (killed): {[r.describe() for r in leaked]}"
    assert not sandbox.outside_writes(), f"files written outside the sandbox: {sandbox.outside_writes()}"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop what lives in the sandbox (the e2e tier's Airflow deployment) and remove it."""
    _SANDBOX.deactivate()

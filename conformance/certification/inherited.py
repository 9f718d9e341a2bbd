"""Inherited deviations: failures that the executor's Airflow base class has too.

An author who subclasses Airflow's own LocalExecutor (or a provider's CeleryExecutor) inherits its
deviations from the contract (reports/FINDINGS.md lists them per version). Failing the author for them
without saying so sends them hunting in their own code. So when the executor under test subclasses one
of Airflow's executors, every check it failed is run once more against that base class, in the same
session, and the ones the base fails too are named -- with ready-to-paste expected failures, so that
the certificate then speaks about the author's own code.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance import checks
from conformance.certification.confirm import confirmed_capabilities
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness import airflow_compat as compat
from conformance.harness.context import RunOptions
from conformance.harness.outcomes import Outcome
from conformance.harness.profile import ExecutorProfile
from conformance.harness.runner import run_check

#: Areas not re-run against the base: minutes each (the e2e tier), or whole-run properties.
_SKIPPED_AREAS = ("e2e", "stateful", "preflight")


@dataclass(frozen=True)
class Inherited:
    base: type
    check_ids: list[str]

    @property
    def base_path(self) -> str:
        return f"{self.base.__module__}.{self.base.__qualname__}"

    def expected_failures_toml(self) -> str:
        reason = f"inherited from {self.base.__qualname__} of Airflow {compat.version_string()}"
        entries = ", ".join(f'"{cid}" = "{reason}"' for cid in self.check_ids)
        return f"expected_failures = {{ {entries} }}"


def airflow_base(cls: type) -> type | None:
    """The nearest ancestor that is one of Airflow's (or a provider's) executors, not BaseExecutor."""
    base_executor = compat.base_executor_class()
    for klass in cls.__mro__[1:]:
        if klass is base_executor or not isinstance(klass, type) or not issubclass(klass, base_executor):
            continue
        if klass.__module__.split(".")[0] == "airflow":
            return klass
    return None


def inherited_failures(profile: ExecutorProfile, sandbox: Sandbox, options: RunOptions,
                       failed: list[str]) -> Inherited | None:
    """Re-run ``failed`` checks against the Airflow base class; those it fails too are inherited."""
    if profile.executor_class is None:
        return None
    base = airflow_base(profile.executor_class)
    if base is None:
        return None
    base_profile = ExecutorProfile(executor_class=base)
    caps = confirmed_capabilities(base_profile, sandbox, options.time)
    shared = []
    for check_id in failed:
        spec = checks.get(check_id)
        if spec.area in _SKIPPED_AREAS:
            continue
        if run_check(spec, base_profile, sandbox, caps, options).outcome is Outcome.FAILED:
            shared.append(check_id)
    return Inherited(base, shared) if shared else None

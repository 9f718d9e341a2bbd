"""airflow-executor-conformance: certify an Airflow executor against the scheduler's contract.

This package must stay cheap to import: the pytest plugin is loaded by every pytest run in an
environment where it is installed, and the probe shim runs once per probe task. Nothing here may
import Airflow at module level; the heavy pieces are imported lazily where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Certificate", "CertifyOptions", "ExecutorProfile", "__version__", "certify", "declare_environment"]

if TYPE_CHECKING:
    from conformance.certification import Certificate, CertifyOptions, certify
    from conformance.harness.profile import ExecutorProfile


def declare_environment(*pids: int) -> None:
    """Declare processes your fixtures or backend started *after* the first executor was built as your
    environment: the suite never ends them (nor what they start). Those alive before it are declared
    automatically."""
    from conformance.groundtruth.processes import declare_environment as declare

    declare(*pids)


def __getattr__(name: str) -> Any:
    # Lazy re-export so that ``from conformance import ExecutorProfile`` works without
    # importing the profile machinery (and Airflow) when the package is merely loaded.
    if name == "ExecutorProfile":
        from conformance.harness.profile import ExecutorProfile

        return ExecutorProfile
    if name in ("certify", "CertifyOptions", "Certificate"):
        from conformance import certification

        return getattr(certification, name)
    raise AttributeError(name)

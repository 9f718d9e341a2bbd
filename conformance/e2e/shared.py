"""The session's deployment: built by the first e2e check, reused by the others, closed with the sandbox.

A deployment takes seconds to build (``db migrate``, components), so scenarios share it; each scenario
triggers its own DAG run and reads only that run's rows and journal lines. Certifying another executor
in the same session (the suite's own negative controls) restarts the scheduler with the new executor
when the database kind allows, and builds a new deployment otherwise.
"""

from __future__ import annotations

import atexit
import itertools
import sys
from typing import Any

from conformance.e2e.deployment import Deployment
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness import airflow_compat as compat

_CURRENT: dict[str, Any] = {}
_COUNTER = itertools.count(1)


class NotStartable(Exception):
    """The executor cannot be started by a real scheduler (no importable dotted path)."""


class NotConfigurable(Exception):
    """Airflow itself cannot be configured with this executor's dotted path."""


def dotted_path(profile: Any) -> str:
    cls = profile.executor_class
    if cls is None or cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise NotStartable("the e2e tier starts the executor the way Airflow does, from [core] executor = "
                           "an importable dotted path; this profile has none (a factory, or a class "
                           "defined in __main__ or inside a function)")
    path = f"{cls.__module__}.{cls.__qualname__}"
    if compat.major() >= 3 and "SequentialExecutor" in path:
        # Airflow 3 upgrades the deprecated value: every "SequentialExecutor" in [core] executor becomes
        # "LocalExecutor" (airflow/configuration.py, deprecated_values), so this path cannot be configured.
        module = sys.modules[cls.__module__]
        aliases = [name for name, value in vars(module).items()
                   if value is cls and "SequentialExecutor" not in name]
        if not aliases:
            raise NotConfigurable(
                f"Airflow 3 rewrites 'SequentialExecutor' to 'LocalExecutor' in [core] executor (a deprecated-value "
                f"upgrade in airflow/configuration.py), so {path} cannot be configured for a real scheduler: rename "
                f"the class, or bind it to a second name in its module without 'SequentialExecutor' in it")
        path = f"{cls.__module__}.{aliases[0]}"
    return path


def needs_server_database(profile: Any) -> bool:
    """Airflow 2 refuses sqlite for executors that are not single-threaded (executor_loader)."""
    return compat.major() < 3 and not getattr(profile.executor_class, "is_single_threaded", False)


def deployment_for(profile: Any, sandbox: Sandbox, scale: float = 1.0) -> Deployment:
    executor = dotted_path(profile)
    server_db = needs_server_database(profile)
    current: Deployment | None = _CURRENT.get("deployment")
    if (current is not None and current.root.parent == sandbox.root and (current.postgres is not None) == server_db
            and current.backend is profile.backend):
        if current.executor_path != executor:
            current.executor_path = executor
            current.restart_scheduler()
        return current
    close_current()
    root = sandbox.root / f"e2e-{next(_COUNTER)}"
    root.mkdir()
    deployment = Deployment(root, executor, server_database=server_db, scale=scale, backend=profile.backend)
    _CURRENT["deployment"] = deployment
    sandbox.on_deactivate(close_current)
    atexit.register(close_current)  # a runner that never deactivates the sandbox still stops it
    return deployment


def close_current() -> None:
    deployment: Deployment | None = _CURRENT.pop("deployment", None)
    if deployment is None:
        return
    leaked = deployment.close()
    if leaked:
        print(f"executor-conformance e2e: killed {len(leaked)} process(es) still running after the "
              f"deployment stopped: {'; '.join(leaked)}", file=sys.stderr)

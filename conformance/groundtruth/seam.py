"""The probe seam: intercept task execution where Airflow runs a task, without the executor's help.

Where Airflow runs a task, and how the seam gets there:

* 3.3: ``BaseExecutor.run_workload`` -> ``airflow.sdk.execution_time.supervisor.supervise_task``;
  3.0-3.2: executors call ``supervisor.supervise`` directly; a remote worker runs
  ``python -m airflow.sdk.execution_time.execute_workload``, which ends in the same functions.
* 2.x: ``airflow tasks run ...`` either forked and parsed in-process (2.x LocalExecutor's default),
  which ends in ``airflow.cli.commands.task_command.task_run``, or as a subprocess through the
  ``airflow`` found on PATH (SequentialExecutor, Celery workers) -- see ``conformance.groundtruth.seam_cli``.

``install()`` wraps those functions in this process: immediately if their module is already imported,
otherwise when it gets imported (a meta-path hook), so forked children inherit the wrapper. Spawned
children and subprocesses get it from ``_seam_site/sitecustomize.py``, which the sandbox puts on
PYTHONPATH. A task whose id does not decode as a probe is passed to the original function untouched.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from conformance.groundtruth import probes

_MARK = "__conformance_seam__"


def _identity(ti: Any) -> dict[str, Any]:
    return {name: getattr(ti, name, None) for name in ("dag_id", "task_id", "run_id", "try_number", "map_index")}


def _wrap_supervisor(func: Callable[..., Any], via: str) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ti = kwargs.get("ti", args[0] if args else None)
        probe = probes.decode(str(getattr(ti, "task_id", "")))
        if probe is None:
            return func(*args, **kwargs)
        return probes.run(probe, _identity(ti), via=via)

    setattr(wrapper, _MARK, True)
    return wrapper


def _wrap_task_run(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(args: Any, *rest: Any, **kwargs: Any) -> Any:
        probe = probes.decode(str(getattr(args, "task_id", "")))
        if probe is None:
            return func(args, *rest, **kwargs)
        identity = {"dag_id": args.dag_id, "task_id": args.task_id,
                    "run_id": getattr(args, "execution_date_or_run_id", None),
                    "try_number": None, "map_index": getattr(args, "map_index", -1)}
        code = probes.run(probe, identity, via="task_run")
        if code:
            raise SystemExit(code)
        return None

    setattr(wrapper, _MARK, True)
    return wrapper


def _patch_supervisor(module: ModuleType) -> None:
    for name in ("supervise_task", "supervise"):
        func = getattr(module, name, None)
        if func is not None and not getattr(func, _MARK, False):
            setattr(module, name, _wrap_supervisor(func, via=name))


def _wrap_keyword(func: Callable[..., Any], via: str, name_arg: str, kind: str) -> Callable[..., Any]:
    """For workloads that are not tasks: the probe instruction is in one keyword argument (a callback's
    import path, a connection test's connection id)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        probe = probes.decode(str(kwargs.get(name_arg, "")))
        if probe is None:
            return func(*args, **kwargs)
        identity = {"dag_id": f"conformance_{kind}", "task_id": probe.task_id, "run_id": None,
                    "try_number": None, "map_index": -1}
        return probes.run(probe, identity, via=via)

    setattr(wrapper, _MARK, True)
    return wrapper


def _patch_callback_supervisor(module: ModuleType) -> None:
    func = getattr(module, "supervise_callback", None)
    if func is not None and not getattr(func, _MARK, False):
        setattr(module, "supervise_callback",  # noqa: B010
                _wrap_keyword(func, "supervise_callback", "callback_path", "callback"))


def _patch_connection_test_supervisor(module: ModuleType) -> None:
    func = getattr(module, "supervise_connection_test", None)
    if func is not None and not getattr(func, _MARK, False):
        setattr(module, "supervise_connection_test",  # noqa: B010
                _wrap_keyword(func, "supervise_connection_test", "connection_id", "connection_test"))


def _patch_task_command(module: ModuleType) -> None:
    func = getattr(module, "task_run", None)
    if func is not None and not getattr(func, _MARK, False):
        setattr(module, "task_run", _wrap_task_run(func))  # noqa: B010


_TARGETS: dict[str, Callable[[ModuleType], None]] = {
    "airflow.sdk.execution_time.supervisor": _patch_supervisor,
    "airflow.cli.commands.task_command": _patch_task_command,
    "airflow.sdk.execution_time.callback_supervisor": _patch_callback_supervisor,
    "airflow.sdk.execution_time.connection_test_supervisor": _patch_connection_test_supervisor,
}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, patch: Callable[[ModuleType], None]):
        self._inner = inner
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        self._patch(module)


class _SeamFinder(importlib.abc.MetaPathFinder):
    """Patches the target modules right after they are imported for the first time."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        patch = _TARGETS.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def install() -> None:
    """Install the seam in this process (idempotent)."""
    for name, patch in _TARGETS.items():
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
    if not any(isinstance(f, _SeamFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SeamFinder())

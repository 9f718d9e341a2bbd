"""ExecutorProfile: how to build the executor under test, and what it can do.

Capabilities are read from the executor itself -- its compatibility attributes and which optional
methods it overrides -- so that an author needs to declare nothing for the common case. A profile
can add or override capabilities, pass a backend driver, and list expected failures as data.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from conformance.harness.capabilities import DECLARED, Capabilities, CapabilityState


class ProfileError(Exception):
    """Bad input from the user (dotted path, kwargs, expected failures). One line, no traceback."""


#: Parallelism the suite asks for when it builds an executor (an executor may choose less).
DEFAULT_PARALLELISM = 4


@dataclass
class ExecutorProfile:
    """What the suite certifies. ``factory(**kw)`` builds a fresh executor; kw carries parallelism."""

    executor_class: type | None = None
    factory: Callable[..., Any] | None = None
    executor_kwargs: dict[str, Any] = field(default_factory=dict)
    backend: Any = None  # a conformance.backends.driver.BackendDriver
    capabilities: dict[str, bool] = field(default_factory=dict)
    expected_failures: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    #: multiplies every time budget for this executor (a backend known to be slow); see conformance.harness.timing
    time_scale: float = 1.0
    #: at most this many checks at once against this executor's backend (``certify`` overlaps checks on
    #: worker processes; a backend with few slots says how many it can take); None: the machine decides
    max_overlap: int | None = None
    #: the class a factory was seen to build (names the executor in reports)
    _built: type | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.executor_class is None and self.factory is None:
            raise ProfileError("an ExecutorProfile needs an executor_class or a factory")
        for check_id, reason in self.expected_failures.items():
            if not isinstance(reason, str) or not reason.strip():
                raise ProfileError(f"expected failure {check_id!r} needs a reason (a non-empty string)")

    @classmethod
    def from_path(cls, dotted: str, kwargs_json: str | None = None) -> ExecutorProfile:
        return cls(executor_class=load_executor_class(dotted), executor_kwargs=parse_kwargs(kwargs_json),
                   name=dotted)

    @property
    def label(self) -> str:
        """What reports call the executor: its name, its class, or -- for a factory that is a lambda or a local
        function -- the class it was seen to build (a factory's own name says nothing)."""
        if self.name:
            return self.name
        target = self.executor_class or self.factory
        qualname = getattr(target, "__qualname__", repr(target))
        if self.executor_class is None and "<" in qualname and self._built is not None:
            target, qualname = self._built, self._built.__qualname__
        return f"{getattr(target, '__module__', '?')}.{qualname}"

    def build(self, parallelism: int = DEFAULT_PARALLELISM, **extra: Any) -> Any:
        """A fresh executor, built the way the loader does plus the parallelism the check wants.

        ``[core] parallelism`` is set to the same value while the constructor runs, so executors that
        take no ``parallelism`` argument and read the config get it too. Checks then use the
        executor's own ``parallelism`` (it may differ: an executor may choose less)."""
        with _core_parallelism(parallelism):
            if self.factory is not None:
                built = self.factory(parallelism=parallelism, **{**self.executor_kwargs, **extra})
                self._built = type(built)
                return built
            assert self.executor_class is not None
            kwargs = {**self.executor_kwargs, **extra}
            if _accepts(self.executor_class, "parallelism"):
                kwargs["parallelism"] = parallelism
            return self.executor_class(**kwargs)

    def probe_instance(self) -> Any:
        return self.build()

    def executor_type(self) -> type[Any]:
        return self.executor_class if self.executor_class is not None else type(self.probe_instance())

    def capability_set(self) -> Capabilities:
        """Every declared capability, as the class shows it (*detected*), overridden by what the author
        declared (``capabilities``), and only where the installed Airflow has it (*exists*)."""
        from conformance.harness import airflow_compat as compat

        unknown = sorted(set(self.capabilities) - set(DECLARED))
        if unknown:
            raise ProfileError(f"capabilities {unknown} are not declared; known: {sorted(DECLARED)}")
        cls = self.executor_type()
        base = compat.base_executor_class()
        instance = self.probe_instance()
        single = bool(getattr(cls, "is_single_threaded", False))

        def overrides(name: str) -> bool:
            mine = inspect.getattr_static(cls, name, None)
            return mine is not None and mine is not inspect.getattr_static(base, name, None)

        limit = compat.effective_parallelism(instance)
        detected = {
            "parallel": not single and (limit is None or limit >= 2),
            "single_threaded": single,
            "local": bool(getattr(cls, "is_local", False)),
            "adoption": overrides("try_adopt_task_instances"),
            "revoke": overrides("revoke_task"),
            "cleanup_stuck": overrides("cleanup_stuck_queued_tasks"),
            "cli_commands": overrides("get_cli_commands"),
            "task_log": overrides("get_task_log"),
            "multi_team": bool(getattr(cls, "supports_multi_team", False)),
            "callbacks": bool(getattr(cls, "supports_callbacks", False)),
            "backend": self.backend is not None,
        }
        exists = {"revoke": hasattr(base, "revoke_task"),
                  "cleanup_stuck": hasattr(base, "cleanup_stuck_queued_tasks")}
        states = {name: CapabilityState(name, detected[name], self.capabilities.get(name), None,
                                        exists.get(name, True)) for name in detected}
        handles = states["revoke"].value or states["cleanup_stuck"].value
        states["stuck_handling"] = CapabilityState("stuck_handling", handles, self.capabilities.get("stuck_handling"))
        return Capabilities(states)


@contextlib.contextmanager
def _core_parallelism(value: int) -> Iterator[None]:
    saved = os.environ.get(_PARALLELISM_ENV)
    os.environ[_PARALLELISM_ENV] = str(value)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(_PARALLELISM_ENV, None)
        else:
            os.environ[_PARALLELISM_ENV] = saved


_PARALLELISM_ENV = "AIRFLOW__CORE__PARALLELISM"


def _accepts(cls: type, name: str) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def load_executor_class(dotted: str) -> type:
    """Resolve ``pkg.mod.Class`` or ``pkg.mod:Class``; every failure is one ProfileError line."""
    if ":" in dotted:
        module_name, _, attr = dotted.partition(":")
    else:
        module_name, _, attr = dotted.rpartition(".")
    if not module_name or not attr:
        raise ProfileError(f"executor {dotted!r}: expected a dotted path like 'pkg.module.ExecutorClass'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ProfileError(f"executor {dotted!r}: module {module_name!r} could not be imported: "
                           f"{type(exc).__name__}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ProfileError(f"executor {dotted!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not inspect.isclass(obj):
        raise ProfileError(f"executor {dotted!r}: {attr!r} is a {type(obj).__name__}, not a class")
    from conformance.harness import airflow_compat as compat

    base = compat.base_executor_class()
    if not issubclass(obj, base):
        raise ProfileError(f"executor {dotted!r}: {obj.__qualname__} is not a subclass of "
                           f"airflow.executors.base_executor.BaseExecutor (Airflow {compat.version_string()})")
    return obj


def load_backend_driver(dotted: str) -> Any:
    """Resolve and instantiate ``--backend-driver pkg.mod.Driver`` (a class or factory called with no
    arguments); the result must have ``transient_error()``. Every failure is one ProfileError line."""
    module_name, _, attr = dotted.partition(":") if ":" in dotted else dotted.rpartition(".")
    if not module_name or not attr:
        raise ProfileError(f"--backend-driver {dotted!r}: expected a dotted path like 'pkg.module.Driver'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise ProfileError(f"--backend-driver {dotted!r} could not be loaded: {type(exc).__name__}: {exc}") from None
    try:
        driver = factory()
    except Exception as exc:
        raise ProfileError(f"--backend-driver {dotted!r}: calling it raised {type(exc).__name__}: {exc}") from None
    if not callable(getattr(driver, "transient_error", None)):
        raise ProfileError(f"--backend-driver {dotted!r}: {type(driver).__name__} has no transient_error() "
                           "(see conformance.backends.driver.BackendDriver)")
    return driver


def parse_kwargs(kwargs_json: str | None) -> dict[str, Any]:
    if not kwargs_json:
        return {}
    try:
        value = json.loads(kwargs_json)
    except ValueError as exc:
        raise ProfileError(f"--executor-kwargs is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProfileError(f"--executor-kwargs must be a JSON object, got {type(value).__name__}")
    return value


def check_constructible(profile: ExecutorProfile) -> None:
    """Build one executor up front so that a raising constructor is one clear line."""
    try:
        profile.build()
    except Exception as exc:
        from conformance.harness.outcomes import raised_at

        where = raised_at(exc)
        raise ProfileError(f"executor {profile.label}: the constructor raised {type(exc).__name__}: {exc}"
                           + (f" (at {where})" if where else "")) from None

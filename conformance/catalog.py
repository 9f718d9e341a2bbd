"""The catalogue: every check's stable id, its SPEC clause, what it demands, and what it needs.

Like SQLAlchemy's requirements and scikit-learn's check names: ids are stable (``area.behaviour``)
so that expected failures, ``-k`` selection and reports can refer to them across releases. Checks
declare *capabilities* they need (``needs``); the profile says which ones the executor has, and a
check whose capability is absent is reported "not supported" rather than passed.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

AREAS = ("attributes", "heartbeat", "lifecycle", "events", "adoption", "stuck", "stateful", "cli", "logs", "e2e")


@dataclass(frozen=True)
class CheckSpec:
    id: str
    clause: str
    title: str
    needs: tuple[str, ...]
    func: Callable[[Any], None]
    expects: str  # what Airflow's scheduler expects, in one or two sentences
    fix: str  # a hint for the executor author
    applies: Callable[[], bool]  # e.g. only on Airflow 3.3+
    applies_text: str
    advice: bool = False  # ATTR-2a conventions: reported, never failed

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def doc(self) -> str:
        return (self.func.__doc__ or "").strip()


CATALOG: dict[str, CheckSpec] = {}


def check(check_id: str, *, clause: str, title: str, expects: str, fix: str, needs: tuple[str, ...] = (),
          applies: Callable[[], bool] = lambda: True, applies_text: str = "all",
          advice: bool = False) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register a check function ``func(ctx)`` under a stable id."""
    area = check_id.split(".", 1)[0]
    if area not in AREAS:
        raise ValueError(f"check id {check_id!r} is not in a known area {AREAS}")

    def register(func: Callable[[Any], None]) -> Callable[[Any], None]:
        if check_id in CATALOG:
            raise ValueError(f"duplicate check id {check_id}")
        CATALOG[check_id] = CheckSpec(check_id, clause, title, needs, func, expects, fix, applies,
                                      applies_text, advice)
        return func

    return register


def load() -> dict[str, CheckSpec]:
    """Import every check module (cheap: none of them imports Airflow at import time)."""
    import conformance.checks as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    return CATALOG


def get(check_id: str) -> CheckSpec:
    load()
    try:
        return CATALOG[check_id]
    except KeyError:
        raise KeyError(f"unknown check id {check_id!r}") from None

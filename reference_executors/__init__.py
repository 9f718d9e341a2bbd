"""Reference executors: a Sequential and a Local executor, correct on Airflow 2 and 3.

Use them by dotted path, e.g. ``[core] executor = reference_executors.LocalExecutor``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["LocalExecutor", "SequentialExecutor"]

if TYPE_CHECKING:
    from reference_executors.local import LocalExecutor
    from reference_executors.sequential import SequentialExecutor


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not import Airflow (the pytest plugin imports it cheaply).
    if name == "LocalExecutor":
        from reference_executors.local import LocalExecutor

        return LocalExecutor
    if name == "SequentialExecutor":
        from reference_executors.sequential import SequentialExecutor

        return SequentialExecutor
    raise AttributeError(name)

"""The suite: one module per contract area (SPEC.md). Checks register in ``conformance.harness.catalog``.

``catalogue()`` imports every area module (cheap: none imports Airflow at import time) and returns
the registry; ``get(check_id)`` is one entry of it.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from conformance.harness.catalog import CATALOG, CheckSpec


def catalogue() -> dict[str, CheckSpec]:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return CATALOG


def suggest(check_id: str) -> str | None:
    """The known check id nearest to a typo, if one is near enough."""
    close = difflib.get_close_matches(check_id, list(catalogue()), n=1)
    return close[0] if close else None


def get(check_id: str) -> CheckSpec:
    known = catalogue()
    try:
        return known[check_id]
    except KeyError:
        hint = suggest(check_id)
        raise KeyError(f"unknown check id {check_id!r}{f' (did you mean {hint}?)' if hint else ''}") from None

"""Settings from ``[tool.executor-conformance]`` in pyproject.toml and from ini lines."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from conformance.harness.profile import ProfileError


@functools.lru_cache(maxsize=8)
def pyproject_settings(rootpath: Path) -> dict[str, Any]:
    """The ``[tool.executor-conformance]`` table of ``rootpath/pyproject.toml`` (empty if none).

    Cached: the plugin asks for several keys during start-up and must stay cheap when unused."""
    path = Path(rootpath) / "pyproject.toml"
    if not path.is_file():
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text())
    except Exception as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("executor-conformance", {})
    return {key.replace("-", "_"): value for key, value in table.items()}


def parse_expected_failures(lines: list[str]) -> dict[str, str]:
    """``check.id: reason`` lines into a mapping; a reason is required."""
    result: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        check_id, sep, reason = line.partition(":")
        if not sep or not reason.strip():
            raise ProfileError(f"expected failure {line.strip()!r} needs the form 'check.id: reason'")
        result[check_id.strip()] = reason.strip()
    return result

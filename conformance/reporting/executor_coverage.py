"""Coverage of the executor under test during its certification (the coverage library).

Which lines of an executor no check reached is where its untested behaviour lives. Measured in every
process of the run: the pytest process (and each xdist worker) where the scheduler side runs, and
the task processes the executor starts. Those inherit the sandbox's ``PYTHONPATH``, whose
``sitecustomize`` calls ``coverage.process_startup()`` when ``COVERAGE_PROCESS_START`` names this run's
configuration; forked children are followed and ``os._exit`` saves (coverage's ``patch`` option).
Every data file lives in a temporary folder of the run, removed once the report has its numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

ENV_VAR = "COVERAGE_PROCESS_START"
_DIR_VAR = "CONFORMANCE_COVERAGE_DIR"


def measured_package(dotted: str) -> str:
    """The package whose coverage is reported: the executor's top-level package, except inside Airflow
    itself (whose executors live in ``airflow.executors`` or a provider), where it is the module's package."""
    module = dotted.partition(":")[0] if ":" in dotted else dotted.rpartition(".")[0]
    parts = module.split(".")
    if parts[0] == "airflow" and len(parts) > 1:
        return ".".join(parts[:-1]) if len(parts) > 2 else module
    return parts[0]


def prepare(package: str) -> Path:
    """Write this run's coverage configuration and point every process started from now on at it.

    Called by the process that starts the run (before xdist starts its workers, which inherit the
    environment). Returns the configuration file."""
    directory = Path(tempfile.mkdtemp(prefix="executor-conformance-coverage-"))
    rc = directory / "coveragerc"
    rc.write_text("\n".join([
        "[run]", "branch = True", "parallel = True", _source_setting(package),
        f"data_file = {directory / 'data' / '.coverage'}", "patch = _exit, fork",
        "disable_warnings = no-data-collected, module-not-measured, module-imported-but-not-measured", ""]))
    (directory / "data").mkdir()
    os.environ[ENV_VAR] = str(rc)
    os.environ[_DIR_VAR] = str(directory)
    return rc


def _source_setting(package: str) -> str:
    """What to measure, named so that coverage imports nothing to find it. ``source_pkgs`` of a dotted
    package makes coverage import its parents when it starts -- for ``airflow.executors`` that is Airflow
    itself, in every process of the run, before anything else is ready. A dotted package is given as its
    directory instead, located from the top-level package's spec (finding a top-level spec runs no code)."""
    top, _, rest = package.partition(".")
    spec = importlib.util.find_spec(top) if rest else None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        return f"source_pkgs = {package}"
    return f"source = {Path(locations[0], *rest.split('.'))}"


def start_here() -> Any:
    """Start measuring in this process (idempotent); None when the run measures nothing."""
    if not os.environ.get(ENV_VAR):
        return None
    import coverage

    coverage.process_startup()  # returns None when the sandbox's sitecustomize already started it
    return coverage.Coverage.current()


def save_here(cov: Any) -> None:
    """Write this process's data now (an xdist worker must before the controller combines)."""
    if cov is not None:
        cov.stop()
        cov.save()


def discard() -> None:
    """Remove the run's data folder (a run that wrote no report)."""
    directory = os.environ.pop(_DIR_VAR, None)
    os.environ.pop(ENV_VAR, None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


def collect(package: str) -> dict[str, Any] | None:
    """Combine every process's data and summarise it for the report; removes the run's data folder."""
    directory = os.environ.get(_DIR_VAR)
    rc = os.environ.get(ENV_VAR)
    if not directory or not rc:
        return None
    import warnings

    import coverage
    from coverage.exceptions import CoverageWarning

    try:
        cov = coverage.Coverage(config_file=rc)
        with warnings.catch_warnings():  # a task process killed while writing leaves a torn file: skipped
            warnings.simplefilter("ignore", CoverageWarning)
            cov.combine(strict=False)
        if not cov.get_data().measured_files():
            return {"package": package, "percent": 0.0, "files": [],
                    "note": "no line of the package ran under measurement"}
        out = Path(directory) / "coverage.json"
        cov.json_report(outfile=str(out))
        data = json.loads(out.read_text())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        os.environ.pop(ENV_VAR, None)
        os.environ.pop(_DIR_VAR, None)
    files = [{"file": _relative(name, package), "percent": round(info["summary"]["percent_covered"], 1),
              "missing": _ranges(info.get("missing_lines", []))}
             for name, info in sorted(data["files"].items())]
    return {"package": package, "percent": round(data["totals"]["percent_covered"], 1), "files": files}


def _relative(path: str, package: str) -> str:
    top = package.split(".")[0]
    parts = Path(path).parts
    return str(Path(*parts[parts.index(top):])) if top in parts else path


def _ranges(lines: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5, 9"."""
    spans: list[list[int]] = []
    for line in sorted(lines):
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)

"""One overlapped certification worker: a process with its own sandbox and executor instances.

Started by ``conformance.certification.overlap`` as ``python -m conformance.certification.worker CMD RES``
(two inherited pipe descriptors, one JSON object per line). It creates its sandbox *before* anything
imports Airflow -- Airflow reads its config at import -- loads the executor by its dotted path, says
ready, waits for the parent's calibration, then runs the checks it is handed, one at a time, and on
``stop`` (or the parent going away) ends everything it started and reports what had to be ended.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from typing import IO, Any


def _send(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message, default=str) + "\n")
    channel.flush()


def _receive(channel: IO[str]) -> dict[str, Any]:
    line = channel.readline()
    if not line:
        return {"stop": True}  # the parent went away: stop cleanly
    message: dict[str, Any] = json.loads(line)
    return message


def serve(commands: IO[str], results: IO[str]) -> None:
    setup = _receive(commands)
    if setup.get("stop"):
        return
    from conformance.groundtruth.sandbox import Sandbox

    sandbox = Sandbox.create().activate()
    try:
        _run(setup, sandbox, commands, results)
    finally:
        found = sandbox.session_leftovers()
        sandbox.deactivate()
        _send(results, {"leftovers": found})


def _run(setup: dict[str, Any], sandbox: Any, commands: IO[str], results: IO[str]) -> None:
    from conformance import checks
    from conformance.harness import timing
    from conformance.harness.capabilities import Capabilities
    from conformance.harness.context import RunOptions
    from conformance.harness.profile import ExecutorProfile, load_backend_driver
    from conformance.harness.runner import run_check
    from conformance.harness.timing import Calibration, TimeModel

    try:
        backend = load_backend_driver(setup["backend_driver"]) if setup.get("backend_driver") else None
        profile = ExecutorProfile.from_path(setup["executor"], json.dumps(setup.get("executor_kwargs") or {}))
        profile.backend = backend
        profile.capabilities = {str(k): bool(v) for k, v in (setup.get("declared_capabilities") or {}).items()}
    except Exception as exc:
        _send(results, {"error": f"{type(exc).__name__}: {exc}"})
        return
    sandbox.declare_present_as_environment()
    _send(results, {"ready": True, "root": str(sandbox.root), "pid": os.getpid()})
    run = _receive(commands)
    if run.get("stop"):
        return
    timing.set_ceiling(run.get("ceiling"))
    time = TimeModel(scale=float(run["scale"]), calibration=Calibration(**run["calibration"]))
    options = RunOptions(time=time, hypothesis_profile=run["hypothesis_profile"], seed=run.get("seed"),
                         reproducer_dir=None if run.get("reproducer_dir") is None else _path(run["reproducer_dir"]))
    capabilities = Capabilities.of({str(k): bool(v) for k, v in run["capabilities"].items()})
    while True:
        job = _receive(commands)
        if job.get("stop"):
            return
        seed = options.seed + job["lane"] if options.seed is not None else None
        lane_options = replace(options, seed=seed, exploration_share=1.0 / job["lanes"])
        result = run_check(checks.get(job["check_id"]), profile, sandbox, capabilities, lane_options)
        _send(results, {"result": {"check_id": result.check_id, "outcome": result.outcome.value,
                                   "message": result.message, "seconds": result.seconds,
                                   "leaks": list(result.leaks), "cause": result.cause}})


def _path(raw: str) -> Any:
    from pathlib import Path

    return Path(raw)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with os.fdopen(int(args[0]), "r") as commands, os.fdopen(int(args[1]), "w") as results:
        serve(commands, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

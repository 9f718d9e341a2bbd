"""The ``airflow`` shim the sandbox puts first on PATH (2.x subprocess execution path).

2.x executors that run ``airflow tasks run <dag> <task> <run> ...`` in a new interpreter find this
shim instead of the real ``airflow``. For a probe task it runs the probe here -- without importing
Airflow, so a probe costs an interpreter start, not an Airflow import. Anything else is handed to the
real ``airflow`` executable (the next one on PATH), untouched.
"""

from __future__ import annotations

import os
import shutil
import sys

from conformance.groundtruth import probes

ENV_SHIM_DIR = "CONFORMANCE_SHIM_DIR"


def _probe_identity(argv: list[str]) -> dict[str, object] | None:
    if argv[:2] != ["tasks", "run"]:
        return None
    positional = [a for a in argv[2:] if not a.startswith("-")]
    if len(positional) < 3:
        return None
    map_index = -1
    if "--map-index" in argv:
        map_index = int(argv[argv.index("--map-index") + 1])
    return {"dag_id": positional[0], "task_id": positional[1], "run_id": positional[2],
            "try_number": None, "map_index": map_index}


def _real_airflow() -> str | None:
    """The ``airflow`` installed next to this interpreter, else the next one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "airflow")
    if os.access(beside, os.X_OK):
        return beside
    shim_dir = os.environ.get(ENV_SHIM_DIR, "")
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != shim_dir]
    return shutil.which("airflow", path=os.pathsep.join(rest))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    identity = _probe_identity(args)
    probe = probes.decode(str(identity["task_id"])) if identity else None
    if identity is not None and probe is not None:
        return probes.run(probe, identity, via="airflow-shim")
    real = _real_airflow()
    if real is None:
        print("conformance shim: no real 'airflow' executable on PATH", file=sys.stderr)
        return 127
    os.execv(real, [real, *args])
    return 127  # unreachable


if __name__ == "__main__":
    sys.exit(main())

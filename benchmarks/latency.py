"""The latency sweep: what a certification costs as the backend's round trip grows.

The reference LocalExecutor behind an injected latency (``tests/slow_backend.py``: half of the round trip
before each start, half before each terminal event), certified by ``executor-conformance certify`` in a
new process, on an idle machine and beside CPU-bound loops (two per core). Per point: wall time, the state
machine's share, the tasks it explored, the checks overlapped, and the verdict. Broken executors behind the
largest latency show that a slow backend does not hide a defect. Measured, never asserted.

    python benchmarks/bench.py --only latency [--latencies 0,1,3,5] [--json out.json] [--svg plot.svg]
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STATE_MACHINE = "stateful.scheduler_action_sequences"
#: defects a remote backend must not hide, behind the largest latency of the sweep
BROKEN_BEHIND_LATENCY = ("tests.slow_backend.SlowReversedPriority", "tests.slow_backend.SlowRunsEachTaskTwice")


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy(on: bool) -> Iterator[None]:
    """Two CPU-bound loops per core beside the measured run (what ``shared/tools/busy`` does)."""
    loops = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(2 * (os.cpu_count() or 1))] if on else []
    for loop in loops:
        loop.start()
    try:
        yield
    finally:
        for loop in loops:
            loop.terminate()
            loop.join()


def certify_point(executor: str, round_trip: float) -> dict[str, Any]:
    """One certification through the CLI (the user's route), in a new process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONFORMANCE_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "conformance.cli", "certify", executor]
    if round_trip:
        command += ["--executor-kwargs", json.dumps({"latency": round_trip / 2})]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([*command, "--report", str(Path(tmp) / "report")], cwd=tmp, env=env, capture_output=True,
                       text=True, timeout=3600, check=False)
        wall = time.perf_counter() - started
        report = json.loads((Path(tmp) / "report" / "report.json").read_text())
    machine = next(c for c in report["checks"] if c["id"] == STATE_MACHINE)
    explored = [int(n) for n in re.findall(r"(\d+) tasks", machine["message"])]
    failed = sorted(c["id"] for c in report["checks"] if c["status"] in ("failed", "inconclusive"))
    return {"round_trip_s": round_trip, "wall_s": round(wall, 1), "verdict": report["verdict"],
            "state_machine_s": round(float(machine["seconds"]), 1),
            "state_machine_share": round(float(machine["seconds"]) / wall, 2) if wall else 0.0,
            "tasks_explored": sum(explored), "overlap": (report.get("options") or {}).get("overlap"),
            "calibrated_round_trip_s": round(float(report["time_model"]["calibration"]["round_trip"]), 2),
            "not_passed": failed}


def sweep(latencies: list[float], loads: tuple[str, ...] = ("idle", "busy")) -> dict[str, Any]:
    points = []
    for load in loads:
        for round_trip in latencies:
            executor = "tests.slow_backend.SlowReferenceLocal" if round_trip else "reference_executors.LocalExecutor"
            with busy(load == "busy"):
                point = {"load": load, **certify_point(executor, round_trip)}
            points.append(point)
            print(f"{load:>4} round trip {round_trip:>3.0f} s: {point['verdict']} in {point['wall_s']} s "
                  f"(state machine {point['state_machine_s']} s, {point['tasks_explored']} tasks)", flush=True)
    broken = []
    for executor in BROKEN_BEHIND_LATENCY:
        point = {"executor": executor, **certify_point(executor, max(latencies))}
        broken.append(point)
        print(f"{executor} behind {max(latencies):.0f} s: {point['verdict']} ({', '.join(point['not_passed'])})",
              flush=True)
    return {"points": points, "broken": broken}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| load | round trip | verdict | wall | state machine | share | tasks explored | calibrated RT |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for p in result["points"]:
        lines.append(f"| {p['load']} | {p['round_trip_s']:.0f} s | {p['verdict']} | {p['wall_s']:.0f} s | "
                     f"{p['state_machine_s']:.0f} s | {p['state_machine_share']:.0%} | {p['tasks_explored']} | "
                     f"{p['calibrated_round_trip_s']:.1f} s |")
    lines += ["", "| broken executor (behind the largest latency) | verdict | wall | caught by |", "|---|---|---:|---|"]
    for b in result["broken"]:
        lines.append(f"| `{b['executor']}` | {b['verdict']} | {b['wall_s']:.0f} s | {', '.join(b['not_passed'])} |")
    return "\n".join(lines) + "\n"


def svg(result: dict[str, Any], width: int = 560, height: int = 320) -> str:
    """Wall time against round trip, one line per load (no plotting library on the machine: plain SVG)."""
    points = result["points"]
    top = max(180.0, max(p["wall_s"] for p in points)) * 1.1
    right = max(p["round_trip_s"] for p in points) or 1.0
    left, bottom, pad = 60, height - 40, 20

    def xy(rt: float, wall: float) -> tuple[float, float]:
        return left + (width - left - pad) * rt / right, bottom - (bottom - pad) * wall / top

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<line x1="{left}" y1="{bottom}" x2="{width - pad}" y2="{bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{bottom}" stroke="black"/>']
    goal_y = xy(0, 180)[1]
    out.append(f'<line x1="{left}" y1="{goal_y:.0f}" x2="{width - pad}" y2="{goal_y:.0f}" stroke="grey" '
               'stroke-dasharray="4"/><text x="{0}" y="{1:.0f}" fill="grey">goal: 180 s at 5 s</text>'
               .format(left + 6, goal_y - 4))
    for rt in sorted({p["round_trip_s"] for p in points}):
        x = xy(rt, 0)[0]
        out.append(f'<text x="{x:.0f}" y="{bottom + 16}" text-anchor="middle">{rt:.0f} s</text>')
    for wall in range(0, int(top) + 1, 60):
        y = xy(0, wall)[1]
        out.append(f'<text x="{left - 6}" y="{y + 4:.0f}" text-anchor="end">{wall} s</text>')
    for load, colour in (("idle", "#1f77b4"), ("busy", "#d62728")):
        mine = sorted((p for p in points if p["load"] == load), key=lambda p: p["round_trip_s"])
        if not mine:
            continue
        path = " ".join(f"{x:.0f},{y:.0f}" for x, y in (xy(p["round_trip_s"], p["wall_s"]) for p in mine))
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        last = xy(mine[-1]["round_trip_s"], mine[-1]["wall_s"])
        out.append(f'<text x="{last[0] - 4:.0f}" y="{last[1] - 6:.0f}" text-anchor="end" fill="{colour}">{load}</text>')
    out.append(f'<text x="{(left + width) / 2:.0f}" y="{height - 6}" text-anchor="middle">backend round trip '
               '(contract tier, wall time of a whole certification)</text></svg>')
    return "\n".join(out) + "\n"

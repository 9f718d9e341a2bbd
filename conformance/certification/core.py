"""The certification core: ``certify()`` runs a whole certification without pytest.

Given an executor (a dotted path or an ``ExecutorProfile``) and ``CertifyOptions`` it runs, in this
order: the sandbox, the profile and its constructor, the preflight (which calibrates the time model),
the capabilities confirmed by behaviour, every selected check -- overlapped on worker processes where
the executor can be rebuilt there -- the expected failures and ``--strict``, the inherited deviations,
and returns a ``Certificate``. The CLI is a front end to it; the pytest plugin is the other route to the
same certificate (``conformance.pytest_plugin.session``), for authors who want pytest's selection and reporting.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.certification.certificate import Certificate, executor_package
from conformance.certification.options import CertifyOptions
from conformance.harness.outcomes import CheckResult, Outcome, with_expectation

if TYPE_CHECKING:
    from conformance.certification.overlap import Rebuild
from conformance.certification.progress import OnProgress, Ticker, plan

#: the state machine's exploration is split into this many lanes at most (one executor instance each)
MAX_LANES = 4
_STATE_MACHINE = "stateful.scheduler_action_sequences"

OnResult = Callable[[CheckResult], None]


def certify(executor: Any, options: CertifyOptions | None = None, *,
            on_result: OnResult | None = None, on_progress: OnProgress | None = None) -> Certificate:
    """Certify ``executor`` (``"pkg.mod.Class"``, ``"pkg.mod:Class"`` or an ``ExecutorProfile``).

    Returns the certificate (``.verdict``, ``.results``, ``.record()``, ``.write(dir)``); raises
    ``ProfileError`` -- one line naming the problem -- for an executor that cannot be imported or built.
    ``on_result`` is called with each check's result as it is known (a progress display); ``on_progress``
    with lines about the run itself: the time plan once calibrated, and what is in flight at least every
    30 s (``conformance.certification.progress``)."""
    from conformance.certification.overlap import rebuildable
    from conformance.harness import timing

    opts = options or CertifyOptions()
    started = datetime.now(timezone.utc)
    timing.set_ceiling(time.time() + opts.max_minutes * 60 if opts.max_minutes else None)
    pool = _start_pool(rebuildable(executor, opts.executor_kwargs), opts)
    from conformance.groundtruth.sandbox import Sandbox  # the sandbox before anything imports Airflow

    sandbox = Sandbox.create().activate()
    try:
        return _certify(executor, opts, sandbox, pool, started, on_result or (lambda result: None),
                        on_progress or (lambda line: None))
    finally:
        if pool is not None:
            pool.close(30.0)
        sandbox.deactivate()
        timing.set_ceiling(None)


def _start_pool(rebuild: Rebuild | None, opts: CertifyOptions) -> Any:
    if rebuild is None or opts.overlap == 1:
        return None
    import tempfile

    from conformance.certification.overlap import Overlap

    pool = Overlap({"executor": rebuild.path, "executor_kwargs": rebuild.kwargs,
                    "declared_capabilities": rebuild.capabilities, "backend_driver": opts.backend_driver},
                   Path(tempfile.mkdtemp(prefix="executor-conformance-workers-")))
    pool.grow(min(2, opts.overlap or 2))  # they import Airflow while the parent calibrates
    return pool


def _certify(executor: Any, opts: CertifyOptions, sandbox: Any, pool: Any, started: datetime,
             on_result: OnResult, on_progress: OnProgress) -> Certificate:
    from conformance import checks
    from conformance.certification.confirm import confirmed_capabilities
    from conformance.certification.preflight import run_preflight
    from conformance.harness.context import RunOptions
    from conformance.harness.profile import ExecutorProfile, check_constructible, load_backend_driver
    from conformance.harness.timing import TimeModel

    if isinstance(executor, ExecutorProfile):
        profile = executor
    else:
        profile = ExecutorProfile.from_path(str(executor), json.dumps(opts.executor_kwargs))
    if opts.backend_driver and profile.backend is None:
        profile.backend = load_backend_driver(opts.backend_driver)
    profile.expected_failures.update(opts.expected_failures)
    check_constructible(profile)
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(2**32)
    sandbox.declare_present_as_environment()
    model = TimeModel(scale=opts.time_scale * profile.time_scale)
    preflight = run_preflight(profile, sandbox, model)
    model = model.calibrated(preflight.calibration)
    stops = preflight.stops_the_run
    capabilities = profile.capability_set() if stops else confirmed_capabilities(profile, sandbox, model)
    run_options = RunOptions(time=model, hypothesis_profile=opts.hypothesis_profile, seed=seed,
                             reproducer_dir=opts.reproducer_dir)
    selected = _selection(opts)
    raw: dict[str, CheckResult] = {}

    in_parent_now: list[str] = []
    ticker = Ticker(on_progress, lambda: [*(pool.in_flight() if pool is not None else []), *in_parent_now])

    def done(result: CheckResult) -> None:
        raw[result.check_id] = result
        ticker.spoke()
        on_result(with_expectation(result, profile.expected_failures.get(result.check_id), opts.strict))

    from conformance.certification.preflight import preflight_result
    from conformance.checks.preflight import PREFLIGHT_ID

    if PREFLIGHT_ID in selected:
        done(preflight_result(checks.get(PREFLIGHT_ID), preflight.diagnosis, preflight.cut, preflight.teardown))
    others = [cid for cid in selected if cid != PREFLIGHT_ID]
    leftovers: list[str] = []
    if preflight.cut:
        from conformance.harness.runner import CEILING_CAUSE

        for cid in others:
            done(not_started(cid, CEILING_CAUSE))
    elif stops:
        for cid in others:
            done(not_run(cid, preflight.diagnosis))
    else:
        ticker.start()
        try:
            if pool is None:
                _say_plan(on_progress, run_options.time, len(others), 1, 1)
            in_parent = (_run_overlapped(pool, others, profile, capabilities, run_options, opts, done, on_progress)
                         if pool else others)
            for cid in in_parent:
                in_parent_now[:] = [cid]
                done(_run_here(cid, profile, sandbox, capabilities, run_options))
            in_parent_now.clear()
        finally:
            ticker.stop()
    if pool is not None:
        leftovers += pool.close(30.0)
    leftovers += sandbox.session_leftovers()
    results = {cid: with_expectation(r, profile.expected_failures.get(cid), opts.strict) for cid, r in raw.items()}
    inherited = None
    failed = sorted(cid for cid, r in results.items() if r.outcome is Outcome.FAILED)
    if opts.inherited and failed and not stops:
        from conformance.certification.inherited import inherited_failures

        inherited = inherited_failures(profile, sandbox, run_options, failed)
    run = {"executor": profile.label, "executor_package": executor_package(profile.label),
           "capabilities": dict(capabilities), "time_model": model.as_dict(),
           "preflight": preflight.diagnosis if stops else "passed", "seed": seed, "seeds": [seed],
           "expected_failures": dict(profile.expected_failures),
           "overlap": pool.size if pool is not None else 1}
    record_options = opts.as_dict()
    record_options["hypothesis"]["seed"] = seed
    return Certificate(label=profile.label, results=results, run=run, options=record_options, e2e=opts.e2e,
                       strict=opts.strict, started=started, leftovers=leftovers, inherited=inherited)


def _selection(opts: CertifyOptions) -> list[str]:
    """The checks this run asks for: the selection, or every catalogued check of the tiers that run (those
    that do not apply to this Airflow are recorded as such, as the pytest route does)."""
    from conformance import checks

    if opts.checks:
        return sorted(set(opts.checks))
    return sorted(cid for cid in checks.catalogue() if opts.e2e or not cid.startswith("e2e."))


def _run_here(check_id: str, profile: Any, sandbox: Any, capabilities: dict[str, bool], options: Any) -> CheckResult:
    from conformance import checks
    from conformance.harness import timing
    from conformance.harness.runner import CEILING_CAUSE, run_check

    if timing.remaining() == 0.0:
        return not_started(check_id, CEILING_CAUSE)
    return run_check(checks.get(check_id), profile, sandbox, capabilities, options)


def not_run(check_id: str, diagnosis: str) -> CheckResult:
    """A check the failed preflight stops: it could only have failed for the same reason."""
    return CheckResult(check_id, Outcome.NOT_RUN, f"not run: the preflight failed ({diagnosis}); fix that first -- "
                       "this check could only have failed for the same reason", cause=f"preflight: {diagnosis}")


def not_started(check_id: str, cause: str) -> CheckResult:
    """A check whose turn came after the run's ceiling: nothing was judged."""
    return CheckResult(check_id, Outcome.INCONCLUSIVE, f"[{check_id}] not started: {cause} before its turn came; "
                       "nothing was judged (raise --max-minutes, or leave it unset)", cause=cause)


def _say_plan(say: OnProgress, model: Any, checks: int, workers: int, lanes: int) -> None:
    from conformance.harness import timing

    for line in plan(model, checks, workers, lanes, timing.remaining()):
        say(line)


def _run_overlapped(pool: Any, check_ids: list[str], profile: Any, capabilities: dict[str, bool],
                    options: Any, opts: CertifyOptions, done: OnResult, say: OnProgress) -> list[str]:
    """Run ``check_ids`` on the pool (the state machine in lanes); returns the ids the parent must run
    itself: the e2e tier (one deployment, in the parent's sandbox) and whatever no worker could take."""
    from conformance import checks
    from conformance.certification.overlap import Job, auto_workers
    from conformance.harness import timing
    from conformance.harness.runner import CEILING_CAUSE

    workers = opts.overlap or auto_workers(options.time.calibration, os.cpu_count() or 1,
                                           getattr(profile, "max_overlap", None))
    pool.grow(workers)
    here = [cid for cid in check_ids if cid.startswith("e2e.") or not checks.get(cid).applies()]
    remote = [cid for cid in check_ids if cid not in here]
    lanes = lanes_for(options, workers) if _STATE_MACHINE in remote else 1
    jobs = [Job(_STATE_MACHINE, lane, lanes) for lane in range(lanes)] if _STATE_MACHINE in remote else []
    jobs += [Job(cid) for cid in remote if cid != _STATE_MACHINE]
    model = options.time
    lane_results: dict[int, CheckResult] = {}
    _say_plan(say, model, len(check_ids), workers, lanes)

    def guard(job: Job) -> float:
        own = float(4 * (model.budget("state_machine") / job.lanes + model.budget("shrink"))
                    + 20 * model.budget("event") + 4 * model.budget("end"))
        left = timing.remaining()
        return own if left is None else min(own, left + timing.CEILING_GRACE)

    def arrived(job: Job, result: CheckResult) -> None:
        if job.lanes == 1:
            done(result)
            return
        lane_results[job.lane] = result
        if len(lane_results) == job.lanes:
            done(merge_lanes([lane_results[i] for i in range(job.lanes)]))

    run = {"scale": model.scale, "calibration": model.calibration.as_dict(), "capabilities": dict(capabilities),
           "hypothesis_profile": options.hypothesis_profile, "seed": options.seed, "ceiling": timing.ceiling(),
           "reproducer_dir": str(options.reproducer_dir) if options.reproducer_dir else None}
    left = pool.run(jobs, run, guard, arrived, may_start=lambda: timing.remaining() != 0.0)
    for job in left:  # no worker could take it: the parent runs it, whole (not as a lane)
        if job.check_id == _STATE_MACHINE and job.lane:
            continue
        if timing.remaining() == 0.0:
            done(not_started(job.check_id, CEILING_CAUSE))
        else:
            here.append(job.check_id)
    return here


def lanes_for(options: Any, workers: int) -> int:
    """Into how many lanes the state machine's exploration is split: one per worker (at most
    ``MAX_LANES``), but no more than its budget holds floors: a fast executor's exploration is the floor
    already, and splitting it would only take workers from the other checks."""
    from conformance.harness.stateful import PROFILES
    from conformance.harness.timing import FLOORS

    model = options.time
    factor = float(PROFILES.get(options.hypothesis_profile, {}).get("budget_factor", 1.0))
    holds = int(model.budget("state_machine") * factor // (FLOORS["state_machine"] * model.scale))
    return max(1, min(MAX_LANES, workers, holds))


def merge_lanes(lanes: list[CheckResult]) -> CheckResult:
    """One state-machine result from its lanes: a failing lane is evidence (its minimal programme is the
    message); otherwise an inconclusive lane leaves the whole inconclusive; all passing pass, with what
    each lane explored."""
    first = lanes[0]
    seconds = max(r.seconds for r in lanes)
    for outcome in (Outcome.FAILED, Outcome.INCONCLUSIVE):
        bad = [r for r in lanes if r.outcome is outcome]
        if bad:
            return replace(bad[0], seconds=seconds)
    notes = "; ".join(f"lane {i + 1}: {r.message}" for i, r in enumerate(lanes) if r.message)
    return CheckResult(first.check_id, first.outcome, f"{len(lanes)} executor instances explored at once -- {notes}",
                       seconds, [leak for r in lanes for leak in r.leaks])

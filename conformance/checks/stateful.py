"""SPEC PROP: hypothesis-generated sequences of scheduler actions keep every invariant."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from conformance.catalog import check

ENV_REPRODUCER_DIR = "CONFORMANCE_REPRODUCER_DIR"


@check("stateful.scheduler_action_sequences", clause="PROP",
       title="any sequence of queue/heartbeat/get_event_buffer/revoke/adopt/end keeps the SPEC PROP invariants",
       expects="The scheduler interleaves these calls freely; every invariant the other checks test in "
               "isolation (no unknown keys, one terminal event per try, parallelism, slot accounting, a key "
               "in one place, events matching what ran) must survive any interleaving.",
       fix="Replay the generated reproducer, which rebuilds your executor and runs the minimal failing "
           "programme step by step.")
def scheduler_action_sequences(ctx: Any) -> None:
    """A RuleBasedStateMachine (profile ``ci`` by default, ``thorough`` via
    --conformance-hypothesis-profile) drives the executor; invariants are checked after every step."""
    from conformance.stateful import PropertyViolated, run_stateful

    target = os.environ.get(ENV_REPRODUCER_DIR)
    try:
        run_stateful(ctx.profile, ctx.sandbox, reproducer_dir=Path(target) if target else None,
                     derandomize=bool(os.environ.get("CONFORMANCE_HYPOTHESIS_DERANDOMIZE")))
    except PropertyViolated as exc:
        raise ctx.fail(str(exc)) from None

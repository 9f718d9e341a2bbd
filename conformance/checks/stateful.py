"""SPEC PROP: hypothesis-generated sequences of scheduler actions keep every invariant."""

from __future__ import annotations

from conformance.harness.catalog import check
from conformance.harness.context import CheckContext


@check("stateful.scheduler_action_sequences", clause="PROP",
       title="any sequence of queue/heartbeat/get_event_buffer/revoke/adopt/end keeps the SPEC PROP invariants",
       expects="The scheduler interleaves these calls freely; every invariant the other checks test in "
               "isolation (no unknown keys, one terminal event per try, parallelism, slot accounting, a key "
               "in one place, events matching what ran) must survive any interleaving.",
       fix="Replay the generated reproducer, which rebuilds your executor and runs the minimal failing "
           "programme step by step.")
def scheduler_action_sequences(ctx: CheckContext) -> None:
    """A RuleBasedStateMachine (profile ``ci`` by default, ``thorough`` via
    --conformance-hypothesis-profile) drives the executor; invariants are checked after every step.
    Generation fits the time model's ``state_machine`` budget (round trips), shrinking its ``shrink``
    budget; a passing run records what it explored."""
    from conformance.harness.outcomes import Inconclusive
    from conformance.harness.stateful import NotReproduced, PropertyViolated, run_stateful

    opts = ctx.options
    try:
        explored = run_stateful(ctx.profile, ctx.sandbox, hypothesis_profile=opts.hypothesis_profile,
                                derandomize=opts.derandomize, reproducer_dir=opts.reproducer_dir,
                                time_model=opts.time, capabilities=ctx.capabilities, seed=opts.seed,
                                share=opts.exploration_share)
    except PropertyViolated as exc:
        raise ctx.fail(str(exc)) from None
    except NotReproduced as exc:
        raise Inconclusive(str(exc), cause="a state-machine finding did not recur when its programme was "
                                           "replayed (timing-dependent; no evidence)") from None
    ctx.note(explored.describe())

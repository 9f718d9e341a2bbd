"""Hypothesis strategies for probes and scheduler inputs, for the state machine and for authors who
write their own properties against the harness.

Values are plain ints and strings so that a falsifying example prints as runnable Python.
"""

from __future__ import annotations

from hypothesis import strategies as st

from conformance.probes import ProbeKind

#: Probe kinds the state machine uses: all finish on their own (no HANG), so any order of steps
#: terminates, and CRASH covers "the process running the task died".
FINITE_KINDS = (ProbeKind.OK.value, ProbeKind.FAIL.value, ProbeKind.RAISE.value, ProbeKind.CRASH.value)
DAGS = ("conformance_dag_a", "conformance_dag_b", "conformance_dag_c")


def probe_kinds() -> st.SearchStrategy[str]:
    return st.sampled_from(FINITE_KINDS)


def delays_ms() -> st.SearchStrategy[int]:
    """Short, so examples stay cheap; non-zero ones let tasks overlap and finish together."""
    return st.sampled_from((0, 50, 150))


def priorities() -> st.SearchStrategy[int]:
    return st.integers(min_value=1, max_value=20)


def dag_indexes() -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=len(DAGS) - 1)


def dag_filters() -> st.SearchStrategy[list[int] | None]:
    """``None`` (take everything, as the scheduler does) or one or two dags (as backfill/tests do)."""
    return st.none() | st.lists(dag_indexes(), min_size=1, max_size=2, unique=True)

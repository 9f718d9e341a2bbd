"""Hypothesis strategies for the workloads the scheduler can produce, for the state machine and for
authors who write their own properties against the harness.

Everything drawn is a plain value (ints, strings, a ``TaskSpec`` named tuple), so a falsifying example
prints -- and the step recorder writes -- as runnable Python.
"""

from __future__ import annotations

from typing import NamedTuple

from hypothesis import strategies as st

from conformance.groundtruth.probes import ProbeKind

#: Kinds that finish on their own. ``hang`` is *held*: it runs until a rule releases it.
FINITE_KINDS = (ProbeKind.OK.value, ProbeKind.FAIL.value, ProbeKind.RAISE.value, ProbeKind.CRASH.value,
                ProbeKind.KILLWORKER.value)
HELD = ProbeKind.HANG.value

#: Dag ids of the shapes Airflow accepts (``[\w.-]+``, up to 250 characters): dots, dashes, capitals, long.
DAGS = ("conformance_dag_a", "conformance.dag.b", "Conformance-DAG--c", "conformance_" + "d" * 90)
#: Run ids of the shapes the scheduler writes (manual, scheduled, microseconds) and a user's own within
#: ``[scheduler] allowed_run_id_pattern``.
RUNS = ("conformance_run", "manual__2026-12-03T10:00:00.123456+00:00", "scheduled__2026-01-01T00:00:00+00:00",
        "user.run~1:a+b-c")
#: Map indexes: -1 is an unmapped TI; the others are instances of a mapped task.
MAP_INDEXES = (-1, -1, 0, 1, 7)
#: A queue nobody serves: the executor must hold, run or fail its task -- never raise, never drop it.
UNSERVED_QUEUE = "conformance-queue-nobody-serves"
QUEUES = ("default", "default", "default", UNSERVED_QUEUE)
EXECUTOR_CONFIGS: tuple[dict[str, str] | None, ...] = (None, None, {"conformance": "config"})


class TaskSpec(NamedTuple):
    """One TI as the scheduler would queue it, and what its probe does."""

    kind: str = ProbeKind.OK.value
    delay_ms: int = 0
    priority: int = 1
    dag: int = 0  # index into DAGS
    run: int = 0  # index into RUNS
    map_index: int = -1
    try_number: int = 1
    queue: int = 0  # index into QUEUES
    config: int = 0  # index into EXECUTOR_CONFIGS

    @property
    def held(self) -> bool:
        return self.kind == HELD

    @property
    def unserved(self) -> bool:
        return QUEUES[self.queue] == UNSERVED_QUEUE


def probe_kinds(held: bool = True) -> st.SearchStrategy[str]:
    """Mostly no-op tasks (dozens pass through one executor), the rest fail, raise, crash, lose their
    worker or are held until released."""
    kinds = [ProbeKind.OK.value] * 4 + list(FINITE_KINDS[1:]) + ([HELD, HELD] if held else [])
    return st.sampled_from(kinds)


def delays_ms() -> st.SearchStrategy[int]:
    """Short, so examples stay cheap; non-zero ones let tasks overlap and finish together."""
    return st.sampled_from((0, 0, 30, 120))


def priorities() -> st.SearchStrategy[int]:
    return st.integers(min_value=1, max_value=20)


def dag_indexes() -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=len(DAGS) - 1)


def task_specs(held: bool = True) -> st.SearchStrategy[TaskSpec]:
    """Any TI the scheduler can queue: mapped or not, tries above 1, any dag and run id shape, served and
    unserved queues, with or without an executor_config."""
    return st.builds(
        TaskSpec,
        kind=probe_kinds(held),
        delay_ms=delays_ms(),
        priority=priorities(),
        dag=dag_indexes(),
        run=st.integers(min_value=0, max_value=len(RUNS) - 1),
        map_index=st.sampled_from(MAP_INDEXES),
        try_number=st.sampled_from((1, 1, 2, 3)),
        queue=st.integers(min_value=0, max_value=len(QUEUES) - 1),
        config=st.integers(min_value=0, max_value=len(EXECUTOR_CONFIGS) - 1),
    )


#: a wide executor: room for a long wave (``LONG_WAVE`` long tasks, more than a status page holds) and
#: short tasks beside it
WIDE_PARALLELISM = 12
LONG_WAVE = 9


def parallelisms(unlimited: bool) -> st.SearchStrategy[int]:
    """1 to 6 slots, sometimes (about one programme in eight) ``WIDE_PARALLELISM``; 0 too where it means
    "unlimited" (Airflow 2)."""
    return st.integers(min_value=0 if unlimited else 1, max_value=7).map(lambda p: WIDE_PARALLELISM if p == 7 else p)

"""The false-alarm corpus: correct executors of designs unlike the reference executors'.

Each one is written the way an executor author outside this project would write it, directly on Airflow's
``BaseExecutor`` (no reference-executor code but ``_bridge.run_here``, the seam that runs a task in the
current process). A conformance suite that fails any of them is wrong, not the executor: they must be
CERTIFIED on every Airflow the suite supports, on any seed, idle or busy (``tests/test_false_alarms.py``;
``benchmarks/bench.py --only false-alarms`` sweeps many seeds).
"""

from __future__ import annotations

from tests.corpus.designs import CORPUS, airflow_own_correct_executors

__all__ = ["CORPUS", "airflow_own_correct_executors"]

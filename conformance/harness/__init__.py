"""The harness: driving an executor the way Airflow's scheduler does, and the check API.

``scheduler`` (SchedulerHarness: queue, heartbeat, read events, adopt, end -- every call bounded),
``timing`` (the one time model), ``profile`` and ``capabilities`` (what is certified, what it can do),
``catalog``/``context``/``outcomes``/``runner`` (a check is a function of a context that ends in an
outcome), ``airflow_compat`` (one API over Airflow 2 and 3), and the generated state machine
(``stateful`` over ``strategies``).
"""

"""The end-to-end tier: the executor under a real Airflow scheduler (opt-in: ``--e2e`` or ``-m e2e``).

The contract tier plays the scheduler; this tier runs the real one, in its own Airflow home inside the
session's sandbox: a database (sqlite, or a private PostgreSQL when Airflow refuses sqlite for the
executor), ``airflow db migrate``, a probe DAG folder, the scheduler (and on Airflow 3 the API server
and the DAG processor) on 127.0.0.1. Real task code runs: the probe DAGs write their own journal.

Modules: ``services`` (processes and a private PostgreSQL, stopped by PID), ``probe_dags`` (the DAG
file), ``deployment`` (one Airflow deployment and what the scenarios ask of it).
"""

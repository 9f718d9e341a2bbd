"""Ground truth: what really happened, independent of what the executor says.

Probe tasks (``probes``) write their own journal (``journal``) from inside whatever process runs them,
through a seam installed in Airflow's task runner (``seam``, ``seam_cli``, ``_seam_site``); the sandbox
(``sandbox``) gives every run a private Airflow home and finds every process it started (``processes``).
Nothing here judges an executor; the checks compare its events with this record.
"""

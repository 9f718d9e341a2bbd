"""Certificates as files and what reads them: report.json/.md/.html and the badge (``report``,
``html_report``), ``diff`` between two certificates, the version ``matrix``, and the executor's own code
coverage during a certification (``executor_coverage``)."""

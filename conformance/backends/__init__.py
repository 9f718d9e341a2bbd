"""Backends the suite can drive for an executor: the ``BackendDriver`` interface (``driver``: bring a backend
up, inject a transient outage, name its workers), a Celery backend (``celery``) and a TCP fault proxy
(``faultproxy``)."""

from conformance.backends.driver import BackendDriver

__all__ = ["BackendDriver"]

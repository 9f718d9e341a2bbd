"""The backend of Airflow's CeleryExecutor, for the suite: a private Redis, a fault proxy, a worker.

    executor-conformance certify airflow.providers.celery.executors.celery_executor.CeleryExecutor \\
        --backend-driver conformance.backends.celery.CeleryRedisBroker [--e2e]

``CeleryRedisBroker`` is a ``BackendDriver`` (SPEC HB-5) that brings its backend up itself, so that a
Celery-based executor needs nothing but Debian's ``redis-server``:

* **contract tier** -- built by the session *before* the executor's module is imported (the provider
  builds its Celery app from the configuration at import): a ``redis-server`` on 127.0.0.1, a
  ``FaultProxy`` in front of it that the executor's broker and result-backend URLs point at, and a
  celery worker that talks to Redis directly (an outage cuts the scheduler off, not the worker, as a
  network fault between two hosts would). The worker is started detached -- it is no descendant of the
  scheduler process, as on a real deployment -- and runs the probe seam like any task process.
  ``transient_error()`` cuts the proxy (connections closed, new ones refused); ``CeleryBrokerStall``'s
  stalls it (connections accepted, no byte moves).
* **e2e tier** -- ``deployment_backend`` starts another Redis for the real Airflow deployment and
  ``deployment_workers`` an ``airflow celery worker`` with the deployment's configuration, which keeps
  running when the scheduler is SIGKILLed (E2E-4: the new scheduler adopts what it runs).

Everything is stopped by PID when the sandbox (or the deployment) closes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from conformance.backends.faultproxy import FaultProxy
from conformance.e2e.services import DetachedService, E2ESetupError, Service, free_port
from conformance.groundtruth.sandbox import ensure_active
from conformance.harness.timing import WaitTimedOut, wait_until

CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
#: tasks one worker runs at once (prefork processes)
CONCURRENCY = 4
#: a generous start-up budget for Redis and a worker (imports Airflow): ends as soon as they answer
START_BUDGET = 120.0


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(workdir: Path, name: str = "redis-server") -> tuple[Service, int]:
    """A throw-away Redis on 127.0.0.1 (no persistence), answering PING; raises E2ESetupError."""
    if not shutil.which("redis-server"):
        raise E2ESetupError("redis-server not found: the Celery backend needs Debian's redis-server "
                            "(apt-get install -y redis-server)")
    port = free_port()
    redis = Service(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(workdir)], dict(os.environ), workdir)
    wait_until(lambda: redis_answers(port) or _exited(redis), f"{name} on 127.0.0.1:{port}", START_BUDGET,
               explain=redis.describe, poll=0.05)
    if not redis.alive():
        raise E2ESetupError(f"{name} exited at start:\n{redis.describe()}")
    return redis, port


def _exited(service: Service) -> bool:
    return not service.alive()


def _urls(address: str) -> dict[str, str]:
    return {"AIRFLOW__CELERY__BROKER_URL": f"redis://{address}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"redis://{address}/1",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CONCURRENCY)}


def _wait_ready(worker: DetachedService | Service) -> None:
    def ready() -> bool:
        if not worker.alive():
            raise E2ESetupError(f"the celery worker exited at start:\n{worker.describe()}")
        return b"ready." in worker.log.read_bytes()

    wait_until(ready, "the celery worker to be ready", START_BUDGET, explain=worker.describe, poll=0.1)


class CeleryRedisBroker:
    """``--backend-driver`` for Airflow's CeleryExecutor (and executors built on it)."""

    #: what ``transient_error()`` does to the connections between the scheduler and Redis
    fault_mode = "cut"

    def __init__(self) -> None:
        box = ensure_active()
        self.workdir = box.root / "celery"
        self.workdir.mkdir(exist_ok=True)
        self.redis, port = start_redis(self.workdir)
        self.proxy = FaultProxy("127.0.0.1", port)
        self.worker: DetachedService | None = None
        self.restarts = 0
        self._closing = threading.Event()
        self._saved_env = {name: os.environ.get(name) for name in _urls("")}
        try:
            os.environ.update(_urls(self.proxy.address))  # the executor (this process) goes through the proxy
            self._worker_env = {**os.environ, **_urls(f"127.0.0.1:{port}")}  # the worker does not
            self.worker = self._start_worker()
        except BaseException:
            self.close()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="celery-worker-supervisor", daemon=True)
        self._supervisor.start()
        box.on_deactivate(self.close)
        atexit.register(self.close)

    def _start_worker(self) -> DetachedService:
        worker = DetachedService(f"celery-worker-{self.restarts}", [
            sys.executable, "-m", "celery", "--app", CELERY_APP, "worker", "--concurrency", str(CONCURRENCY),
            "--pool", "prefork", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
            "-Q", "default"], self._worker_env, self.workdir)
        _wait_ready(worker)
        return worker

    def _supervise(self) -> None:
        """Restart the worker when it dies, as systemd or Kubernetes would: a check that kills the
        executor's worker (EVT-1's killworker probe kills a remote task's parent, Celery's main worker
        process on Airflow 3) must not take the backend away from every check after it."""
        while not self._closing.wait(0.2):
            worker = self.worker
            if worker is None or worker.alive():
                continue
            self.restarts += 1
            with contextlib.suppress(E2ESetupError, WaitTimedOut):
                self.worker = self._start_worker()

    @contextlib.contextmanager
    def transient_error(self) -> Iterator[None]:
        with self.proxy.fault(self.fault_mode):
            yield

    def close(self) -> None:
        """Stop the worker, the proxy and Redis (each by its PID); safe to call twice."""
        self._closing.set()
        supervisor = getattr(self, "_supervisor", None)
        if supervisor is not None:
            supervisor.join(timeout=START_BUDGET)
        if self.worker is not None:
            self.worker.stop(grace=20)
            self.worker = None
        self.proxy.close()
        self.redis.stop(grace=10)
        for name, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    # -- the e2e tier: a real Airflow deployment with its own Redis and an `airflow celery worker` ----
    def deployment_backend(self, workdir: Path) -> tuple[dict[str, str], list[Service]]:
        """Start the deployment's Redis; returns the settings every component needs, and the services
        for the deployment to stop."""
        redis, port = start_redis(workdir, name="deployment-redis")
        return _urls(f"127.0.0.1:{port}"), [redis]

    def deployment_workers(self, environment: dict[str, str], workdir: Path, logs: Path) -> list[Service]:
        """An ``airflow celery worker`` with the deployment's configuration, ready when this returns."""
        worker = Service("celery-worker", [sys.executable, "-m", "airflow", "celery", "worker", "--concurrency",
                                           str(CONCURRENCY), "--without-mingle", "--without-gossip",
                                           "--skip-serve-logs", "-q", "default"],
                         environment, logs, cwd=workdir)
        try:
            _wait_ready(worker)
        except BaseException:
            worker.stop()
            raise
        return [worker]


class CeleryBrokerStall(CeleryRedisBroker):
    """The same backend; ``transient_error()`` stalls the connections instead of cutting them."""

    fault_mode = "stall"

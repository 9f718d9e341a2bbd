"""Capabilities confirmed by behaviour, where the class alone can lie.

``profile.capability_set()`` reads capabilities from the class: attributes and overridden methods.
An override can claim more than the executor does: ``try_adopt_task_instances`` overridden to log and
return every TI (as the base does) adopts nothing. Judging such an executor by ADOPT-2/ADOPT-3 would
fail it for a capability it never had, and exempt it from the checks for executors that cannot adopt
(LIFE-1's "end() waits"). So adoption is confirmed by a short scenario: executor A starts a task and
'dies'; executor B is offered it. B handing everything back means: no adoption.
"""

from __future__ import annotations

import json
from typing import Any

from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness import airflow_compat as compat
from conformance.harness.capabilities import Capabilities
from conformance.harness.profile import ExecutorProfile
from conformance.harness.scheduler import SchedulerHarness
from conformance.harness.timing import TimeModel

_OWNER = "capability confirmation"
_CACHE: dict[str, Capabilities] = {}


def confirmed_capabilities(profile: ExecutorProfile, sandbox: Sandbox,
                           time: TimeModel | None = None) -> Capabilities:
    """The profile's capabilities, with adoption confirmed by behaviour (cached per executor + kwargs)."""
    key = _cache_key(profile)
    if key in _CACHE:
        return _CACHE[key]
    caps = profile.capability_set()
    declared_by_author = "adoption" in profile.capabilities
    if caps["adoption"] and not declared_by_author:
        caps = caps.confirm("adoption", _adopts_a_running_task(profile, sandbox, time or TimeModel(),
                                                               caps["single_threaded"]))
    _CACHE[key] = caps
    return caps


def _cache_key(profile: ExecutorProfile) -> str:
    target = profile.executor_class or profile.factory
    return f"{id(target)}:{json.dumps(profile.executor_kwargs, sort_keys=True, default=str)}"


def _adopts_a_running_task(profile: ExecutorProfile, sandbox: Sandbox, time: TimeModel,
                           single_threaded: bool = False) -> bool:
    """True unless B hands back the running task of its own kind it was offered. Anything going wrong
    in the scenario keeps the class's claim: the adoption checks then report what went wrong.

    A single-threaded executor runs a task inside its heartbeat, so A's task cannot be held running
    (the heartbeat would never return): A runs a short one to the end in one heartbeat, and B is offered
    it as the scheduler would offer a TI whose scheduler died mid-run."""
    a = SchedulerHarness(profile.build(), sandbox, name="A", job_id=1, time_model=time, owner=_OWNER)
    b: SchedulerHarness | None = None
    try:
        a.start()
        task = a.queue(Probe.new(ProbeKind.OK if single_threaded else ProbeKind.HANG))
        if single_threaded:
            a.heartbeat()
            a.collect()
        else:
            a.wait_started([task])
        a.abandon()
        external = next((e.info for e in a.events_for(task.key) if isinstance(e.info, str)),
                        getattr(task.ti, "external_executor_id", None))
        ti = compat.adoption_ready(task.handle, job_id=1, external_executor_id=external, running=True)
        b = SchedulerHarness(profile.build(), sandbox, name="B", job_id=2, time_model=time, owner=_OWNER).start()
        returned: list[Any] = b.adopt([ti])
        # Handed back and not tracked: no adoption. (Handed back but tracked is a broken adoption, which
        # the adoption checks must see, so the capability stays.)
        return not any(r is ti for r in returned) or bool(b.executor.has_task(ti))
    except Exception:
        return True
    finally:
        a.release_all()
        for h in (b, a):
            if h is not None:
                h.close()
        sandbox.reclaim(_OWNER, time.budget("settle"))

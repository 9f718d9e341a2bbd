"""A fault-injection driver for the reference executors' one backend: their state directory.

The conformance suite's ``BackendDriver`` for ``--backend-driver reference_executors.faults.StateDirectoryOutage``.
During ``transient_error()`` every read, write and removal the executor does in its state directory
fails with EIO, as on a flaky network mount. Task processes forked before the outage are unaffected
(they write their verdicts with their own copy of the code), exactly like workers on another host.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from reference_executors import _process


def _unavailable(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise OSError(errno.EIO, "state directory unavailable (injected outage)")


class StateDirectoryOutage:
    """``transient_error()``: the state directory fails every call while the context is open."""

    @contextmanager
    def transient_error(self) -> Iterator[None]:
        names = ("_write_json_atomically", "_read_json", "_write_line", "_read_lines", "_remove")
        saved = {name: getattr(_process, name) for name in names}
        for name in names:
            setattr(_process, name, _unavailable)
        try:
            yield
        finally:
            for name, original in saved.items():
                setattr(_process, name, original)

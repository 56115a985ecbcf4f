"""SIGTERM and SIGINT end a job through an exception, so that what holds resources (the MLflow runs, a
worker pool, a temporary file) cleans up on the way out: ``timeout``, SLURM and submitit send SIGTERM, a
user at the terminal sends SIGINT.

``JobInterrupted`` is a ``KeyboardInterrupt``: handlers of ``Exception`` let it pass. A second signal while
cleaning up gets the handler that was there before (SIGTERM: the default, which ends the process at once).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence

HANDLED = (signal.SIGTERM, signal.SIGINT)


class JobInterrupted(KeyboardInterrupt):
    """The job got a signal that asks it to stop."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"ended by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


@contextlib.contextmanager
def interrupt_on_signals(signals: Sequence[int] = HANDLED) -> Iterator[None]:
    """Within the block, the signals raise ``JobInterrupted`` in the main thread; handlers restored after.
    Outside the main thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signals}

    def interrupt(signum: int, frame) -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)
        raise JobInterrupted(signum)

    for s in signals:
        signal.signal(s, interrupt)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

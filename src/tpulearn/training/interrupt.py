"""Ctrl-C that stops a run between steps, not inside one.

A ``KeyboardInterrupt`` raised at an arbitrary point can land inside a library call that is
not safe to interrupt: TensorBoard's writer, for one, counts queued events and its
background thread fails with ``task_done() called too many times`` when the count was cut
short. So during training the first Ctrl-C only asks the loop to stop; the loop raises
``KeyboardInterrupt`` itself at the next safe point (after the step or validation under
way), and the run saves and reports as before. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def deferred_interrupt(enabled: bool = True) -> Iterator[Callable[[], None]]:
    """Within the block, the first SIGINT is held until the yielded check is called.

    Args:
        enabled: False yields a check that does nothing (used under torchrun, where every
            process must stop at the same collective; there Ctrl-C stops at once).

    Yields:
        ``check()``: raises ``KeyboardInterrupt`` when a Ctrl-C arrived since the block
        began. Where Python's own handler is not the one installed (another thread, or a
        caller that set its own), nothing is changed and the check does nothing.
    """
    usable = (
        enabled
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if not usable:
        yield lambda: None
        return
    pending: list[int] = []

    def hold(signum, frame) -> None:
        if pending:  # the second Ctrl-C: the user does not want to wait
            raise KeyboardInterrupt
        pending.append(signum)

    def check() -> None:
        if pending:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, hold)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)

"""Commands whose output may go to a pipe that closes early (``python -m tpulearn.data ROOT |
head``): they stop writing, without a traceback (imports nothing from tpulearn)."""

from __future__ import annotations

import functools
import os
import sys

#: A command's exit status when its reader closed stdout early: 128 + SIGPIPE, as a shell
#: reports for the tools that signal ends.
CLOSED_PIPE = 141


def closed_pipe_exits(main):
    """Wrap a command's ``main`` (returning its exit status) so that a stdout closed by its
    reader ends it with :data:`CLOSED_PIPE` instead of a ``BrokenPipeError`` traceback."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            status = main(*args, **kwargs)
            sys.stdout.flush()  # output still buffered fails here, not at exit
            return status
        except BrokenPipeError:
            # Python flushes stdout again at exit: there it must find somewhere to write.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return CLOSED_PIPE

    return run

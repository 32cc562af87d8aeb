"""The shell every command runs in: one-line user errors with exit code 2.

:func:`fail` stops a command with a message; :func:`run_guarded` turns user
errors into ``PROG: error: ...`` (exit 2), anything unexpected into one line
(exit 1), Ctrl-C into 130 and SIGTERM (:class:`Terminated`) into 143.
:class:`CliParser` is argparse with the same one-line errors. This module
imports nothing else of ``cli``: every other module may import it.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from typing import Any, Callable

PROG = "jax-lstm-ae"
EXIT_USER_ERROR = 2


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def fail(message: str):
    """Stop the command with ``message`` (one line on stderr, exit code 2)."""
    raise CliError(message)


class Terminated(BaseException):
    """SIGTERM arrived while training: stop like Ctrl-C, keeping the last epoch.
    A BaseException, as KeyboardInterrupt is, so no ``except Exception`` on the
    way (in JAX or elsewhere) swallows it."""


# ------------------------------------------------------------------ error handling
def _user_error_types() -> tuple[type[BaseException], ...]:
    from jax_lstm_ae.train.checkpoint import RunError
    from jax_lstm_ae.data import DataError

    return (CliError, DataError, RunError, ValueError, TypeError, OSError)


_OS_HINTS = {
    errno.ENOSPC: "free some disk space or write elsewhere",
    errno.EDQUOT: "free some disk space or write elsewhere",
    errno.EACCES: "check the permissions or write elsewhere",
    errno.EPERM: "check the permissions or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
}


def error_line(exc: BaseException) -> str:
    """One line for the user: the message, without a traceback."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        hint = _OS_HINTS.get(exc.errno)
        msg = f"{where}{exc.strerror}" + (f"; {hint}" if hint else "")
    return " ".join(msg.split())


class CliParser(argparse.ArgumentParser):
    """argparse with the command line's one-line errors: no usage block."""

    def error(self, message: str):
        msg = " ".join(message.split())
        self.exit(EXIT_USER_ERROR, f"{PROG}: error: {msg}; see `{self.prog} --help`\n")


def run_guarded(func: Callable[..., Any], *args, **kwargs) -> int:
    """Call ``func``; turn user errors into ``PROG: error: ...`` and exit code 2,
    anything unexpected into one line and exit code 1 (the traceback only with
    JAX_LSTM_AE_TRACEBACK=1), Ctrl-C into exit code 130."""
    from jax_lstm_ae.train.fit import NonFiniteError

    try:
        rc = func(*args, **kwargs)
        return int(rc or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{PROG}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except NonFiniteError as e:
        print(f"{PROG}: error: {error_line(e)}", file=sys.stderr)
        return 1
    except _user_error_types() as e:
        if os.environ.get("JAX_LSTM_AE_TRACEBACK"):
            raise
        print(f"{PROG}: error: {error_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:  # noqa: BLE001 - the promise is: no traceback
        if os.environ.get("JAX_LSTM_AE_TRACEBACK"):
            raise
        print(
            f"{PROG}: internal error: {type(e).__name__}: {error_line(e)} "
            "(rerun with JAX_LSTM_AE_TRACEBACK=1 for details and report it)",
            file=sys.stderr,
        )
        return 1


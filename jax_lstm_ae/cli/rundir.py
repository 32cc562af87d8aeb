"""Where `train` writes: a lock, a hidden partial folder, and the swap into RUN_DIR.

    RUN_DIR/                  a finished (or stopped, resumable) run
    .RUN_DIR.partial/         a run being built; after a kill it stays here and
                              `train --resume --out RUN_DIR` continues it
    .RUN_DIR.lock             held (flock) by the one process writing RUN_DIR

A new run is built in the partial folder and swapped into RUN_DIR only when it
ends, so an existing RUN_DIR is never touched by a run that does not finish.
The lock is an ``flock`` on a file beside RUN_DIR: the kernel drops it when its
process dies, even by ``kill -9``, so a stale lock never blocks a later run.

Inside a run the checkpoint is written before the epoch's line is appended to
metrics.jsonl; on resume :func:`train.checkpoint.sync_metrics` rewrites metrics.jsonl from the
checkpoint's epoch (the epoch's record is stored in the checkpoint too), so a
kill between the two never loses or repeats an epoch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from jax_lstm_ae.cli.shell import fail
from jax_lstm_ae.train.checkpoint import METRICS_FILE, _umask, atomic_write, read_metrics



class Busy(Exception):
    """Another process holds the lock of a run directory."""


def partial_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def lock_file(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def is_nonempty_dir(p: Path) -> bool:
    return p.is_dir() and any(p.iterdir())


RUN_MARKERS = ("checkpoint.msgpack", "detector.json")  # one of them, beside config.json


def is_run_dir(path: Path) -> bool:
    """A run directory of this library: config.json and a checkpoint (or a detector)."""
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file() and any((p / m).is_file() for m in RUN_MARKERS)


# ------------------------------------------------------------------ folders
def make_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest last."""
    missing = []
    p = folder.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(20, "is a file, not a folder", str(p))
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
    return list(reversed(missing))


def remove_created(folders: list[Path]) -> None:
    """Remove the folders :func:`make_parents` created, if they are empty again."""
    for d in reversed(folders):
        try:
            d.rmdir()
        except OSError:
            break


def new_partial(out: Path) -> Path:
    """An empty partial folder for ``out`` (any stale one is removed first)."""
    p = partial_dir(out)
    if p.exists():
        shutil.rmtree(p)
    p.mkdir()
    os.chmod(p, 0o777 & ~_umask())
    return p


def commit(work: Path, out: Path) -> None:
    """Swap the finished run ``work`` into ``out``; the old ``out`` is removed
    only after the new one is in place."""
    if is_nonempty_dir(out) and not is_run_dir(out):  # files were put there while the run trained
        fail(f"--out {out} is no longer a run directory, so it is left as it is; the new run stays in {work}: "
             "move it where you want it")
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(work, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------ lock
class RunLock:
    """An exclusive, non-blocking lock on ``.RUN_DIR.lock`` (POSIX flock).

    ``acquire`` raises :class:`Busy` with the holder's pid when another process
    has it. ``release`` unlinks the file, then unlocks; an acquirer that opened
    the file before the unlink notices the inode changed and retries."""

    def __init__(self, out: Path):
        self.path = lock_file(out)
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise Busy(pid) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


@contextlib.contextmanager
def run_lock(out: Path, created: list[Path]):
    """Hold ``out``'s lock while a run is written; on leaving, release it and,
    if the run left nothing, remove the folders made for it (``created``)."""
    lock = RunLock(out)
    try:
        lock.acquire()
    except Busy as e:
        remove_created(created)
        fail(f"--out {out} is being written by another training (pid {e}); wait for it to end or choose another --out")
    try:
        yield
    finally:
        lock.release()
        if not out.exists() and not partial_dir(out).exists():
            remove_created(created)


def holder(out: Path) -> str | None:
    """The pid holding ``out``'s lock, or None when nobody does."""
    try:
        lock = RunLock(out)
        if not lock.path.exists():
            return None
        lock.acquire()
    except Busy as e:
        return str(e)
    except OSError:
        return None
    lock.release()
    return None


def check_not_training(run_dir) -> None:
    """For the commands that read a run (encode, reconstruct, detect, probe,
    info): a run another process is still training is refused with its pid
    and the advice to wait, not read as a missing or broken run. A finished
    run that is being resumed in place, or that a new run will replace
    (--force), is read as it is now (its files are swapped in whole), with a
    note saying so."""
    import sys

    out = Path(run_dir)
    pid = holder(out)
    if pid is None:
        return
    if not is_run_dir(out):
        where = f" (in {partial_dir(out)})" if partial_dir(out).exists() else ""
        fail(f"{out} is still being trained by pid {pid}{where}; wait for that training to end (or stop it), "
             "then run this command again")
    if (partial_dir(out) / "config.json").exists():
        what = f"a new run that will replace {out} is being trained by pid {pid}; this reads the run there now"
    else:
        what = f"{out} is being trained further by pid {pid}; this reads its last saved epoch"
    print(f"note: {what} (wait for the training to end for its final state)", file=sys.stderr)


# ------------------------------------------------------------------ metrics

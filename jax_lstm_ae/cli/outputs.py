"""Where a command may write: one rule, planned before any work starts.

1. Nothing the user named as input is ever written, replaced, moved or
   deleted: not --data, --labels, --fit-data, --test-data, the files of the
   --run being read (and the training data it records), nor a file reached
   through a symlink or a hard link to one of them (compared by device and
   inode, and by real path).
2. No folder that is not a run directory of this library (config.json plus
   checkpoint.msgpack or detector.json) is ever replaced; a run directory is
   replaced only with --force, and only after the new run succeeded (see
   ``rundir.commit``); the current folder, a folder above it, and a folder
   that holds an input are never replaced.
3. An existing output file is replaced only with --force.
4. Every output is checked up front: its suffix, that it is not an existing
   folder, that its folder exists (or may be made) and is writable, and that
   no two outputs of one command are the same file.
5. Files are written to a temporary name beside the target and renamed when
   complete (:func:`replacing`, :func:`write_bytes`), so a failure (a full
   disk, Ctrl-C) leaves the old file or nothing, never a torn one.

Commands call :func:`inputs_of` and :func:`plan_files` (or
:func:`plan_run_dir` for ``train --out``) first, then write through the plan.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from jax_lstm_ae.cli.rundir import is_run_dir
from jax_lstm_ae.cli.shell import PROG, fail

CONFIG_FILE = "config.json"
INPUT_FLAGS = ("data", "labels", "fit_data", "test_data")


# ------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class Input:
    """A file the command reads: ``what`` names it for the user (``--data``)."""

    what: str
    path: Path


def _recorded_source(run_dir: Path) -> str | None:
    for name in (CONFIG_FILE, "detector.json"):
        try:
            src = json.loads((run_dir / name).read_text()).get("data", {}).get("source")
        except (OSError, ValueError, AttributeError):
            continue
        if src:
            return str(src)
    return None


def inputs_of(args, flags: Sequence[str] = INPUT_FLAGS) -> list[Input]:
    """The files ``args`` reads: the data flags in ``flags`` (synthetic sets
    are no files), every file of ``args.run``, and the training data the run
    records when no --data is given (it is read instead)."""
    out = []
    for dest in flags:
        value = getattr(args, dest, None)
        if value is not None and not str(value).startswith("synthetic:"):
            out.append(Input("--" + dest.replace("_", "-"), Path(value)))
    run = getattr(args, "run", None)
    if run is not None and Path(run).is_dir():
        run = Path(run)
        with contextlib.suppress(OSError):
            out += [Input("--run", Path(e.path)) for e in os.scandir(run) if e.is_file()]
        src = _recorded_source(run)
        if getattr(args, "data", None) is None and src and not src.startswith("synthetic:"):
            out.append(Input(f"the training data of --run {run}:", Path(src)))
    return out


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a link to an input is that input
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _input_at(path: Path, inputs: Sequence[Input]) -> Input | None:
    """The input that ``path`` is (the same file, by inode or real path), or None."""
    ident, real = _identity(path), _real(path)
    for inp in inputs:
        if not os.path.lexists(inp.path):
            continue  # not there: nothing of the user's to lose (reading it will say so)
        if (ident is not None and ident == _identity(inp.path)) or real == _real(inp.path):
            return inp
    return None


# ------------------------------------------------------------------ output files
@dataclass(frozen=True)
class FileOut:
    """An output file: the flag that names it, the suffixes it may take, what
    it is (for the message), and every file it writes (default: ``path``)."""

    flag: str
    path: Path
    suffixes: tuple[str, ...]
    what: str
    writes: tuple[Path, ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        return self.writes or (self.path,)


@dataclass
class FilesPlan:
    """Checked outputs; :meth:`make_parents` creates their missing folders
    (when the command may), :meth:`discard` removes those again."""

    outputs: list[FileOut]
    created: list[Path] = field(default_factory=list)

    def make_parents(self) -> None:
        from jax_lstm_ae.cli.rundir import make_parents

        for o in self.outputs:
            for f in o.files:
                self.created += make_parents(f.parent)

    def discard(self) -> None:
        from jax_lstm_ae.cli.rundir import remove_created

        remove_created(self.created)
        self.created = []


def _ending(suffixes: Sequence[str]) -> str:
    return " or ".join(suffixes)


def _check_folder(flag: str, path: Path, create: bool) -> None:
    for p in path.absolute().parents:
        if p.exists():
            if not p.is_dir():
                fail(f"{flag} {path}: {p} is a file, not a folder; choose another path")
            if p != path.absolute().parent and not create:
                fail(f"{flag} {path}: folder {path.parent} does not exist; create it or choose another path")
            if not os.access(p, os.W_OK | os.X_OK):
                fail(f"{flag} {path}: cannot write in {p} (permission denied); choose another path")
            return


def plan_files(outputs: Sequence[FileOut | None], inputs: Sequence[Input], *, force: bool,
               create_parents: bool = False) -> FilesPlan:
    """Check every output against the rule (see the module's docstring);
    ``None`` entries (an option not given) are skipped. Creates nothing."""
    outs = [o for o in outputs if o is not None]
    seen: dict[Path, str] = {}
    for o in outs:
        if o.path.suffix.lower() not in o.suffixes:
            fail(f"{o.flag} {o.path}: {o.what}; give a file name ending in {_ending(o.suffixes)}")
        for f in o.files:
            shown = f"{o.flag} {o.path}" + ("" if f == o.path else f" (it writes {f})")
            if f.is_dir():
                fail(f"{shown} is a directory; give a file name ending in {_ending(o.suffixes)}")
            inp = _input_at(f, inputs)
            if inp is not None:
                fail(f"{shown} would overwrite an input ({inp.what} {inp.path}); choose another {o.flag}")
            _check_folder(o.flag, f, create_parents)
            real = _real(f)
            if real in seen:
                fail(f"{shown} is the same file as {seen[real]}; give each output its own file name")
            seen[real] = o.flag
            if os.path.lexists(f) and not force:
                fail(f"{f} exists; pass --force to replace it or choose another {o.flag}")
    return FilesPlan(outs)


# ------------------------------------------------------------------ a run directory
def plan_run_dir(out: Path, *, force: bool, inputs: Sequence[Input]) -> None:
    """Refuse an --out that a new run may not take (or, with --force, may not
    replace); creates nothing."""
    from jax_lstm_ae.cli.rundir import holder, is_nonempty_dir, partial_dir

    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory; choose another --out")
    if is_nonempty_dir(out) and not is_run_dir(out):
        fail(f"--out {out} is not a run directory of {PROG} (no config.json/checkpoint.msgpack); --force replaces "
             "only run directories: choose another --out")
    real, cwd = _real(out), _real(Path.cwd())
    if out.exists() and (real == cwd or real in cwd.parents):
        fail(f"--out {out} is the current folder or a folder above it, which a run cannot replace; "
             "choose another --out")
    for inp in inputs:
        if not os.path.lexists(inp.path):
            continue
        if real in _real(inp.path).parents or _input_at(out, [inp]) is not None:
            fail(f"--out {out} holds an input ({inp.what} {inp.path}); choose another --out")
    if is_nonempty_dir(out):
        for e in os.scandir(out):
            hit = _input_at(Path(e.path), inputs)
            if hit is not None:
                fail(f"--out {out} holds an input ({hit.what} {hit.path}, linked as {e.path}); choose another --out")
    pid = holder(out)
    if pid is not None:
        fail(f"--out {out} is being written by another training (pid {pid}); wait for it to end or choose another --out")
    if is_nonempty_dir(out) and not force:
        fail(f"--out {out} already exists; pass --force to replace it, or choose another --out")
    if partial_dir(out).exists() and not force:
        fail(
            f"--out {out} holds an interrupted run (in {partial_dir(out)}); continue it with "
            f"`{PROG} train --resume --out {out}`, or pass --force to start over"
        )
    _check_folder("--out", out, create=True)


# ------------------------------------------------------------------ writing
def _with_path(e: OSError, path: Path) -> OSError:
    if e.filename is None and e.errno is not None:
        return OSError(e.errno, e.strerror, str(path))
    return e


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary file name beside ``path`` (same suffix, so writers
    that go by it pick the right format); when the block ends, the file is
    synced and renamed onto ``path``; on any failure it is removed."""
    from jax_lstm_ae.train.checkpoint import _umask

    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:
        raise _with_path(e, path) from None
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise _with_path(e, path) from None
        raise


def write_bytes(path: Path, data: bytes | str) -> None:
    """``path`` gets ``data`` whole, or keeps what it held."""
    from jax_lstm_ae.train.checkpoint import atomic_write

    atomic_write(path, data)

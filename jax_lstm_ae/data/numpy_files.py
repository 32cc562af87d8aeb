"""NumPy files: ``.npy`` arrays and ``.npz`` archives, read defensively.

    ds = read_npy_sequences("x.npz")    # Dataset from x [N, T] / [N, T, F], optional lengths [N], labels [N]
    arr = read_npy_series("s.npy")      # float64 [N_t, F], one long series

A file that is not NumPy's (wrong magic bytes), truncated or corrupt, holds
Python objects (never unpickled), strings or complex numbers, has the wrong
rank, or values beyond float32's range raises :class:`DataError` naming the
file and what to do. The file is only read.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from jax_lstm_ae.data.core import DataError, Dataset, _as_dataset, real_values

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"  # b"PK\x03\x04" for a member, b"PK\x05\x06" for an empty archive (numpy.savez with no arrays)
# What NumPy and zipfile raise on a damaged file: short reads, bad headers, bad CRCs, bad deflate streams.
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, NotImplementedError)


def _damaged(path: Path, err: BaseException, writer: str, member: str | None = None) -> DataError:
    if isinstance(err, ValueError) and "allow_pickle" in str(err):
        inside = f"array {member!r} " if member else ""
        return DataError(
            f"{path}: {inside}holds Python objects (a pickled object array), which are never loaded; "
            f"save numeric arrays with numpy.{writer}"
        )
    inside = f" (array {member!r})" if member else ""
    return DataError(
        f"{path}: not a readable NumPy file{inside} (truncated or corrupt: {type(err).__name__}); "
        f"write it again with numpy.{writer}"
    )


def read_array(path, what: str = "sequences"):
    """The array of a ``.npy`` file, or of a ``.npz`` archive: its ``x`` (or only)
    array when ``what == "series"`` or it holds one array, else a dict of all."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .npy or .npz file; give the path of a file in it")
    with open(path, "rb") as fh:
        magic = fh.read(len(_NPY_MAGIC))
    if not magic:
        raise DataError(f"{path}: the file is empty (0 bytes); write the array with numpy.save or numpy.savez")
    is_zip = magic.startswith(_ZIP_MAGIC)
    writer = "savez" if is_zip or path.suffix == ".npz" else "save"
    if not (is_zip or magic == _NPY_MAGIC):
        raise DataError(
            f"{path}: not a NumPy file (it starts with neither NumPy's .npy header nor a .npz archive's); "
            f"write it with numpy.{writer}, or give a text file a .csv/.txt suffix"
        )
    # np.load on a path leaks the file handle when the archive is damaged: open it here, so it is always closed.
    with open(path, "rb") as fh:
        try:
            obj = np.load(fh, allow_pickle=False)
        except _READ_ERRORS as err:
            raise _damaged(path, err, writer) from None
        if not isinstance(obj, np.lib.npyio.NpzFile):
            return obj
        with obj:
            keys = list(obj.keys())
            if not keys:
                raise DataError(
                    f"{path}: the .npz file holds no arrays; save the sequences as x (numpy.savez(path, x=...))"
                )
            if what == "series" or len(keys) == 1:
                keys = ["x" if "x" in keys else keys[0]]
            out = {}
            for k in keys:
                try:
                    out[k] = obj[k]
                except _READ_ERRORS as err:
                    raise _damaged(path, err, writer, k) from None
    return out[keys[0]] if len(keys) == 1 else out


def read_npy_series(path) -> np.ndarray:
    """One long series from a ``.npy`` [N_t] / [N_t, F] (or a ``.npz``'s ``x``): float64 [N_t, F]."""
    path = Path(path)
    arr = real_values(read_array(path, "series"), path)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{path}: a series must be [N_t] or [N_t, F], got shape {arr.shape}; reshape the array")
    if arr.shape[1] == 0:
        raise DataError(f"{path}: the series has no features (shape {arr.shape}); give at least one column")
    return arr


def read_npy_sequences(path) -> Dataset:
    """Sequences from a ``.npy`` [N, T] / [N, T, F], or a ``.npz`` with ``x`` and optional
    ``lengths`` [N] and ``labels`` [N] (without ``lengths`` every step is valid)."""
    path = Path(path)
    obj = read_array(path, "sequences")
    labels = lengths = None
    if isinstance(obj, dict):
        if "x" not in obj:
            raise DataError(
                f"{path}: a .npz with several arrays needs one named 'x' (found {sorted(obj)}); "
                "save the sequences as x (numpy.savez(path, x=..., lengths=..., labels=...))"
            )
        x, lengths, labels = obj["x"], obj.get("lengths"), obj.get("labels")
    else:
        x = obj
    x = real_values(x, path)
    if x.ndim == 2:
        x = x[..., None]  # [N, T] univariate sequences
    if x.ndim != 3:
        raise DataError(f"{path}: expected sequences of shape (N, T) or (N, T, F), got {x.shape}; reshape the array")
    if x.size == 0:
        raise DataError(
            f"{path}: holds no values (shape {x.shape}); save at least one sequence with at least one step and feature"
        )
    if lengths is None:
        lengths = np.full((x.shape[0],), x.shape[1], np.int32)
    return _as_dataset(x, lengths, labels, path=path)

"""Data bigger than memory: a ``.npy`` file read on demand, windows fetched by index.

    x = open_npy("windows.npy")                        # [N, T, F] windows in the file
    x = open_npy("series.npy", window=64, stride=1)    # [R, F] one series, cut into [N, 64, F] windows on read
    ds = lazy_dataset(x)                               # a Dataset whose x is x: run_training takes it
    x[10:20], x[np.array([5, 3])]                      # NumPy float32 [k, T, F], read from the file

A :class:`LazyWindows` is array-like ([N, T, F] float32, ``shape``,
``__getitem__``, ``__array__``); only the rows a read asks for are read.
The file is opened with ``numpy.load(mmap_mode="r")`` to check its header,
then read with ``os.pread``: pages read through a memory map count in the
process's resident memory until the kernel drops them, pages read into a
buffer do not, so resident memory stays that of the batches whatever the
file's size.

Sub-ranges (``x.rows(a, b)``), the normalised view (``x.normalised(shift,
scale)``), statistics in chunks (:meth:`LazyWindows.moments`) and a
fingerprint that reads a fixed amount of the file
(:meth:`LazyWindows.fingerprint`) are what the runner needs to split,
normalise and record such a set without holding it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jax_lstm_ae.data.core import DataError, Dataset

# Rows read per chunk in full scans (statistics): a few float64 temporaries of SCAN_ROWS x F.
SCAN_ROWS = 1 << 16
# The fingerprint hashes this many blocks of this many bytes, spread evenly over the file.
FINGERPRINT_BLOCKS, FINGERPRINT_BLOCK_BYTES = 64, 1 << 16


class NpyFile:
    """A C-ordered numeric ``.npy`` file: its header, and rows read with ``os.pread``."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file; check the path")
        try:
            m = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{self.path}: not a readable .npy file for --mmap ({type(err).__name__}: {err}); "
                            "write it with numpy.save (or numpy.lib.format.open_memmap)") from None
        if not isinstance(m, np.memmap):
            raise DataError(f"{self.path}: a .npz archive cannot be memory-mapped; save the array as a .npy file")
        kind = m.dtype.kind
        if kind not in "fiu" or m.dtype.itemsize > 8 or m.dtype.fields is not None:
            raise DataError(f"{self.path}: holds {m.dtype} values; --mmap reads real numbers (float32 best, "
                            "float16/64 or integers converted on read): save a float32 array")
        if m.ndim > 1 and not m.flags.c_contiguous:
            raise DataError(f"{self.path}: the array is stored in Fortran order; save it in C order "
                            "(numpy.save(path, np.ascontiguousarray(x)))")
        self.shape, self.dtype, self.offset = tuple(m.shape), m.dtype, int(m.offset)
        self.size_bytes = self.path.stat().st_size
        del m  # the header is read: the rows are read with pread
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        self.row_bytes = self.row_items * self.dtype.itemsize
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def __del__(self, _close=os.close):  # os.close may be gone at interpreter exit: keep a reference
        if getattr(self, "_fd", None) is not None:
            _close(self._fd)

    def __getstate__(self):  # a pickled copy (another process) opens its own descriptor
        return {k: (None if k == "_fd" else v) for k, v in self.__dict__.items()}

    def read(self, a: int, b: int) -> np.ndarray:
        """Rows [a, b) as float32 [b - a, *shape[1:]]."""
        n = b - a
        buf = np.empty((n * self.row_items,), self.dtype)
        if n:
            view, want, got = memoryview(buf).cast("B"), n * self.row_bytes, 0
            while got < want:  # pread may return less than asked
                k = os.preadv(self._file(), [view[got:]], self.offset + a * self.row_bytes + got)
                if k <= 0:
                    raise DataError(f"{self.path}: the file ended at row {a + got // self.row_bytes} of "
                                    f"{self.shape[0]} (truncated while in use?); write it again")
                got += k
        return buf.reshape((n,) + self.shape[1:]).astype(np.float32, copy=False)


class Moments(NamedTuple):
    """Per-feature weighted count, mean, sum of squared deviations, min and max (mergeable)."""

    count: float
    mean: np.ndarray  # [F] float64
    m2: np.ndarray  # [F] float64
    lo: np.ndarray  # [F]
    hi: np.ndarray  # [F]

    @staticmethod
    def of(v: np.ndarray, w: np.ndarray, features: int) -> "Moments":
        """Moments of rows v[n, F] weighted by w[n] (rows of weight 0 are left out)."""
        keep = w > 0
        v, w = v[keep].astype(np.float64), w[keep].astype(np.float64)
        c = float(w.sum())
        if c == 0:
            z = np.zeros(features)
            return Moments(0.0, z, z, np.full(features, np.inf), np.full(features, -np.inf))
        mean = (w[:, None] * v).sum(0) / c
        m2 = (w[:, None] * np.square(v - mean)).sum(0)
        return Moments(c, mean, m2, v.min(0), v.max(0))

    def merge(self, o: "Moments") -> "Moments":
        """Chan et al.'s pairwise update: as stable as two passes over the union."""
        if o.count == 0:
            return self
        if self.count == 0:
            return o
        n = self.count + o.count
        d = o.mean - self.mean
        return Moments(n, self.mean + d * (o.count / n), self.m2 + o.m2 + d * d * (self.count * o.count / n),
                       np.minimum(self.lo, o.lo), np.maximum(self.hi, o.hi))


class LazyWindows:
    """Windows [N, T, F] float32 of a ``.npy`` file, read when indexed.

    ``series`` files [R, F] are cut into windows of ``window`` rows every
    ``stride`` rows, plus one ending at the last row when the stride does not
    reach it (as :func:`~jax_lstm_ae.data.sliding_windows`); window files
    [N, T, F] (or [N, T]) are read as they are. A view covers windows
    [lo, hi) of the file and may normalise on read: ``(x - shift) / scale``
    in float32, as :meth:`Normalizer.apply` does in memory."""

    def __init__(self, file: NpyFile, window: int | None, stride: int = 1, lo: int = 0, hi: int | None = None,
                 shift=None, scale=None):
        self.file, self.stride = file, int(stride)
        self.series = window is not None
        if self.series:
            r = file.shape[0]
            self.window = int(window)
            self.regular = (r - self.window) // self.stride + 1  # windows at k * stride
            self.total = self.regular + (1 if (self.regular - 1) * self.stride != r - self.window else 0)
            self.features = file.shape[1]
        else:
            self.window, self.total = file.shape[1], file.shape[0]
            self.features = file.shape[2] if len(file.shape) == 3 else 1
        self.lo, self.hi = int(lo), self.total if hi is None else int(hi)
        self.shift, self.scale = shift, scale

    # ------------------------------------------------------------ array protocol
    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.hi - self.lo, self.window, self.features)

    dtype = np.dtype(np.float32)
    ndim = 3

    def __len__(self) -> int:
        return self.hi - self.lo

    def __repr__(self) -> str:
        cut = f", window={self.window}, stride={self.stride}" if self.series else ""
        return f"LazyWindows({str(self.file.path)!r}{cut}, rows {self.lo}:{self.hi} of {self.total})"

    def __array__(self, dtype=None, copy=None):
        out = self[0:len(self)]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"window {key} is out of range for {n} windows")
            out = self._read(np.array([self.lo + i]))[0]
        elif isinstance(key, slice):
            a, b, s = key.indices(n)
            out = self._read(self.lo + np.arange(a, b, s, dtype=np.int64))
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            idx = idx.astype(np.int64)
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"window index out of range for {n} windows")
            out = self._read(self.lo + np.where(idx < 0, idx + n, idx))
        return out[(slice(None),) * (out.ndim - 2) + rest] if rest else out

    # ------------------------------------------------------------ reading
    def starts(self, idx) -> np.ndarray:
        """First series row of the windows ``idx`` (of the file, not of this view), int64."""
        idx = np.asarray(idx, np.int64)
        return np.where(idx < self.regular, idx * self.stride, self.file.shape[0] - self.window)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        """Windows ``idx`` of the file -> float32 [len(idx), T, F], normalised if this view is."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        t, f = self.window, self.features
        first = self.starts(idx) if self.series else idx
        rows = t if self.series else 1  # file rows one window spans
        out = np.empty((idx.size, t, f), np.float32)
        if idx.size:
            a, b = int(first.min()), int(first.max()) + rows
            if (b - a) <= 2 * idx.size * rows:  # dense (a contiguous stretch, an evaluation pass): one read
                block = self.file.read(a, b).reshape(b - a, -1)
                if self.series:
                    out[:] = np.lib.stride_tricks.sliding_window_view(block, t, axis=0)[first - a].transpose(0, 2, 1)
                else:
                    out[:] = block[first - a].reshape(idx.size, t, f)
            else:
                for j, s in enumerate(first):
                    out[j] = self.file.read(int(s), int(s) + rows).reshape(t, f)
        bad = ~np.isfinite(out)
        if bad.any():
            j, step, feat = (int(v) for v in np.argwhere(bad)[0])
            row = int(first[j]) + step if self.series else int(idx[j])
            where = f"row {row}, feature {feat}" if self.series else f"window {row}, step {step}, feature {feat}"
            raise DataError(f"{self.file.path}: value at {where} is {out[j, step, feat]}; remove or impute "
                            "non-finite values before training")
        if self.shift is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                out = (out - self.shift) / self.scale
            if not np.isfinite(out).all():
                raise DataError(f"{self.file.path}: values normalise beyond float32's range; rescale the data "
                                "(e.g. divide by a power of ten)")
        return out

    # ------------------------------------------------------------ views
    def rows(self, a: int, b: int) -> "LazyWindows":
        """Windows [a, b) of this view, as a view (nothing is read)."""
        a, b, _ = slice(a, b).indices(len(self))
        return LazyWindows(self.file, self.window if self.series else None, self.stride, self.lo + a,
                           self.lo + max(a, b), self.shift, self.scale)

    def normalised(self, shift, scale) -> "LazyWindows":
        """This view, read as ``(x - shift) / scale`` (float32 [F] each)."""
        v = self.rows(0, len(self))
        v.shift, v.scale = np.asarray(shift, np.float32), np.asarray(scale, np.float32)
        return v

    # ------------------------------------------------------------ whole-set summaries
    def coverage(self, a: int, b: int) -> np.ndarray:
        """How many windows of this view cover each file row in [a, b) ([b - a] int64):
        each window's rows count once per window, as in the windows held in memory."""
        r = np.arange(a, b, dtype=np.int64)
        if not self.series:
            return ((r >= self.lo) & (r < self.hi)).astype(np.int64)
        t, s = self.window, self.stride
        k_hi = min(self.hi, self.regular) - 1  # regular windows k in [lo, k_hi]
        first = np.maximum(-(-(r - t + 1) // s), self.lo)  # ceil((r - t + 1) / s)
        last = np.minimum(r // s, k_hi)
        c = np.maximum(last - first + 1, 0)
        if self.total > self.regular and self.lo <= self.regular < self.hi:  # the extra last window
            end = self.file.shape[0]
            c += (r >= end - t) & (r < end)
        return c

    def span(self) -> tuple[int, int]:
        """The file rows [a, b) this view's windows cover (a series: from the
        first window's start to the last one's end)."""
        if not len(self):
            return 0, 0
        if not self.series:
            return self.lo, self.hi
        # starts never decrease (the extra last window starts at R - T)
        return int(self.starts(self.lo)), int(self.starts(self.hi - 1)) + self.window

    def moments(self, part: tuple[int, int] = (0, 1)) -> Moments:
        """Per-feature statistics of every window's steps (a row counted once
        per window covering it), read in chunks of ``SCAN_ROWS`` rows.
        ``part=(p, P)``: only block p of P of the rows (one process's share;
        merge the parts with :meth:`Moments.merge`). Unnormalised values."""
        a0, b0 = self.span()
        p, k = part
        a0, b0 = a0 + p * (b0 - a0) // k, a0 + (p + 1) * (b0 - a0) // k
        acc = Moments.of(np.zeros((0, self.features)), np.zeros(0), self.features)
        for a in range(a0, b0, SCAN_ROWS):
            b = min(a + SCAN_ROWS, b0)
            v = self.file.read(a, b).reshape(b - a, -1, self.features)  # [rows, T or 1, F]
            if not np.isfinite(v).all():
                row, step, feat = (int(u) for u in np.argwhere(~np.isfinite(v))[0])
                where = f"row {a + row}" if self.series else f"window {a + row}, step {step}"
                raise DataError(f"{self.file.path}: value at {where}, feature {feat} is {v[row, step, feat]}; "
                                "remove or impute non-finite values before training")
            w = np.repeat(self.coverage(a, b), v.shape[1])
            acc = acc.merge(Moments.of(v.reshape(-1, self.features), w, self.features))
        return acc

    def fingerprint(self) -> dict:
        """What a resume compares: the file's shape, dtype and byte size, the
        view's rows and cut, and the SHA-256 of ``FINGERPRINT_BLOCKS`` blocks of
        ``FINGERPRINT_BLOCK_BYTES`` bytes at evenly spaced offsets (the first and
        the last included; all of a file of up to 4 MiB). It reads 4 MiB at most:
        a change outside the sampled blocks goes unseen."""
        f = self.file
        h = hashlib.sha256(f"{f.dtype.str}{f.shape}{f.size_bytes}{self.window}{self.stride}{self.series}".encode())
        size, blk = f.size_bytes, FINGERPRINT_BLOCK_BYTES
        offsets = sorted({int(o) for o in np.linspace(0, max(size - blk, 0), FINGERPRINT_BLOCKS)})
        fd = f._file()
        for o in offsets:
            h.update(os.pread(fd, blk, o))
        n, t, feats = self.shape
        return {"n": n, "steps": t, "features": feats, "rows": [self.lo, self.hi], "sha256": h.hexdigest(),
                "sampled": f"{len(offsets)} blocks of {blk} bytes of {size}"}


class RowsView:
    """Rows ``idx`` of a :class:`LazyWindows` not read yet ([len(idx), T, F]):
    indexing reads only the rows asked for, so a process that places its
    slices of a global batch reads only those. ``idx`` -1: a zero row (padding)."""

    def __init__(self, source: LazyWindows, idx):
        self.source, self.idx = source, np.asarray(idx, np.int64)

    @property
    def shape(self):
        return (self.idx.size,) + self.source.shape[1:]

    dtype = np.dtype(np.float32)
    ndim = 3

    def padded(self, rows: int) -> "RowsView":
        return RowsView(self.source, np.concatenate([self.idx, np.full(rows - self.idx.size, -1, np.int64)]))

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        idx = self.idx[key[0]]
        out = np.zeros((idx.size,) + self.shape[1:], np.float32)
        real = idx >= 0
        if real.any():
            out[real] = self.source[idx[real]]
        return out[(slice(None),) + tuple(key[1:])]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def open_npy(path, window: int | None = None, stride: int | None = None) -> LazyWindows:
    """A ``.npy`` file as lazily read windows [N, T, F] float32 (module docstring).

    ``window`` given: the file is one series [R] or [R, F], cut into windows of
    ``window`` rows every ``stride`` (default 1) rows. Otherwise it holds
    windows [N, T] or [N, T, F]. Every check reads the header only."""
    f = NpyFile(path)
    if window is not None:
        if len(f.shape) == 1:
            f.shape, f.row_items = (f.shape[0], 1), 1
        if len(f.shape) != 2:
            raise DataError(f"{path}: a series must be [R] or [R, F], got shape {f.shape}; drop --window for a "
                            "file of windows [N, T, F]")
        window, stride = int(window), int(stride or 1)
        if window < 1 or stride < 1:
            raise DataError(f"window and stride must be >= 1, got window={window}, stride={stride}; give positive "
                            "values")
        if window > f.shape[0]:
            raise DataError(f"{path}: window {window} is longer than the series ({f.shape[0]} rows); use a window "
                            f"of at most {f.shape[0]}")
    else:
        if stride is not None:
            raise DataError(f"{path}: --stride cuts a series into windows and needs --window; give --window T")
        if len(f.shape) == 2:
            f.shape = f.shape + (1,)  # [N, T] univariate windows
        if len(f.shape) != 3:
            raise DataError(f"{path}: expected windows of shape (N, T) or (N, T, F), got {f.shape}; for one long "
                            "series give --window T (and --stride)")
    if 0 in f.shape:
        raise DataError(f"{path}: holds no values (shape {f.shape}); give at least one window with a step and a "
                        "feature")
    return LazyWindows(f, window, stride or 1)


def lazy_dataset(x: LazyWindows) -> Dataset:
    """A :class:`Dataset` over lazily read windows: every window full length
    (``lengths`` a zero-stride [N] view, no memory), no labels."""
    return Dataset(x, np.broadcast_to(np.int32(x.shape[1]), (len(x),)), None, None)


def is_lazy(data) -> bool:
    """Is ``data`` (a Dataset or an array) read from a file on demand?"""
    return isinstance(getattr(data, "x", data), LazyWindows)

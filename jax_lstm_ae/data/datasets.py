"""Data pipeline: loaders, padding, normalisation, windows, batches, synthetic sets.

Everything here is host-side NumPy; the model sees ``Batch(x[B, T, F], lengths[B])``.
A :class:`Dataset` always holds *post*-padded float32 sequences (valid steps
first, zeros after), which is what the model's masking expects.

    ds = load_sequences("ECG5000_TRAIN.txt")                 # UCR: label, then values
    series = load_series("chfdb.txt", columns=[1, 2])        # one long series [N_t, F]
    windows, starts = sliding_windows(series, window=64, stride=8)
    train, val = train_val_split(ds, 0.2, seed=0)
    norm = Normalizer.fit(train)                             # training data only
    for batch in batches(norm.apply(train), 32, seed=0): ...

Bad input raises :class:`DataError` (a ``ValueError``) whose message names the
file, line and column, and says what to do.
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple, Sequence

import jax
import numpy as np

Padding = Literal["post", "pre"]
FORMATS = ("ucr", "wide", "long", "series", "npy", "ts")
_ID_NAMES = ("id", "sequence_id", "seq_id", "series_id")


class DataError(ValueError):
    """The user's data is unusable; the message says where and what to do."""


class Batch(NamedTuple):
    """One batch as the train and eval steps take it."""

    x: Any  # [B, T, F] reals or [B, T] tokens (NumPy or jax arrays)
    lengths: Any  # [B] int32 in [0, T]


class Dataset(NamedTuple):
    """Post-padded sequences.

    x: [N, T, F] float32, zeros past each length. lengths: [N] int32 in [0, T]
    (an empty sequence, length 0, adds nothing to any loss).
    labels: [N] or None. starts: [N] window start rows when cut from one long
    series (see :func:`sliding_windows`), else None.
    """

    x: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray | None = None
    starts: np.ndarray | None = None

    # No __len__: a NamedTuple's len() is its field count, and _replace relies on it.
    @property
    def n(self) -> int:
        """N, the number of sequences."""
        return int(self.x.shape[0])

    @property
    def steps(self) -> int:
        return int(self.x.shape[1])

    @property
    def features(self) -> int:
        return int(self.x.shape[2])

    def take(self, idx) -> "Dataset":
        """The examples at ``idx`` (indices or a boolean mask), same T."""
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return Dataset(self.x[idx], self.lengths[idx], pick(self.labels), pick(self.starts))


def _where(path) -> str:
    return str(path) if path is not None else "data"


# ------------------------------------------------------------------ checks
def check_finite(x: np.ndarray, path=None, *, what: str = "value") -> None:
    """Raise DataError naming the first NaN/inf in x[N, T, F] or a 2-D table."""
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        val = x[idx]
        if x.ndim == 3:
            where = f"sequence {idx[0]}, step {idx[1]}, feature {idx[2]}"
        elif x.ndim == 2:
            where = f"row {idx[0]}, column {idx[1]}"
        else:
            where = f"index {idx}"
        raise DataError(
            f"{_where(path)}: {what} at {where} is {val} (found {int(bad.sum())} non-finite values); "
            "remove or impute them before training"
        )


_F32_MAX = float(np.finfo(np.float32).max)


def _real_values(x, path, what: str = "values") -> np.ndarray:
    """A numeric array as float64, refusing complex numbers, non-numbers and
    magnitudes float32 cannot hold (they would silently become inf)."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise DataError(f"{_where(path)}: holds complex {what}; give real numbers (e.g. the real part or the magnitude)")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{_where(path)}: holds {x.dtype} {what}, expected numbers; save a numeric array")
    x = x.astype(np.float64)
    big = np.isfinite(x) & (np.abs(x) > _F32_MAX)
    if big.any():
        idx = tuple(int(i) for i in np.argwhere(big)[0])
        raise DataError(
            f"{_where(path)}: value {x[idx]:g} at index {idx} is beyond float32's range (+-3.4e38; "
            f"{int(big.sum())} such values); rescale the data"
        )
    return x


def _check_lengths(lengths, n: int, t: int, path) -> np.ndarray:
    """lengths[N]: whole numbers in [0, T] (0: an empty sequence), checked before the cast to int32
    (which would turn 7.9 into 7 and 2**32 + 5 into 5)."""
    raw = np.asarray(lengths)
    if raw.shape != (n,):
        raise DataError(f"{_where(path)}: lengths must have shape ({n},), got {raw.shape}; give one length per sequence")
    if np.iscomplexobj(raw) or not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise DataError(f"{_where(path)}: lengths hold {raw.dtype} values; give whole numbers between 0 and T={t}")
    if np.issubdtype(raw.dtype, np.floating):
        frac = ~np.isfinite(raw) | (raw != np.round(raw))
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise DataError(
                f"{_where(path)}: sequence {i} has length {raw[i]}; lengths must be whole numbers between 0 and T={t}"
            )
    bad = (raw < 0) | (raw > t)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{_where(path)}: sequence {i} has length {raw[i]:.0f}; every sequence needs between 0 and T={t} steps"
        )
    return raw.astype(np.int32)


def _as_dataset(x: np.ndarray, lengths: np.ndarray, labels=None, starts=None, path=None) -> Dataset:
    x = np.asarray(x, np.float32)
    if x.ndim != 3:
        raise DataError(f"{_where(path)}: expected sequences of shape (N, T, F), got {x.shape}")
    n, t, _ = x.shape
    if n == 0:
        raise DataError(f"{_where(path)}: holds no sequences (shape {x.shape}); give at least one sequence")
    if t == 0:
        raise DataError(f"{_where(path)}: every sequence is empty (shape {x.shape}); give at least one step")
    if x.shape[2] == 0:
        raise DataError(f"{_where(path)}: the sequences have no features (shape {x.shape}); check --columns")
    lengths = _check_lengths(lengths, n, t, path)
    valid = np.arange(t)[None, :] < lengths[:, None]
    check_finite(np.where(valid[..., None], x, 0.0), path)
    x = np.where(valid[..., None], x, 0.0).astype(np.float32)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise DataError(f"{_where(path)}: labels must have shape ({n},), got {labels.shape}")
    if starts is not None:
        starts = np.asarray(starts, np.int64)
    return Dataset(x, lengths, labels, starts)


# ------------------------------------------------------------------ padding
def pad_sequences(
    sequences: Sequence[Any],
    padding: Padding = "post",
    *,
    maxlen: int | None = None,
    value: float = 0.0,
    truncating: Padding = "pre",
    dtype: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """A list of arrays [T_i] or [T_i, F] -> (x[N, T, F], lengths[N] int32).

    Keras's ``pad_sequences`` conventions, except the default ``padding``:
    ``padding='post'`` puts the valid steps first (what the model masks);
    ``'pre'`` puts the padding first (Keras's default; use it only for code
    that expects that layout). ``maxlen`` (default: the longest sequence) cuts
    longer sequences: ``truncating='pre'`` keeps their *last* ``maxlen``
    steps, ``'post'`` their first. ``value`` fills the padding and ``dtype``
    is x's dtype (float32 by default; Keras's is int32). ``lengths`` are the
    steps kept. Empty sequences (``[]``, length 0) are allowed: they take the
    features of the others and are all padding. Scalars per step ([T_i])
    become one feature.
    """
    if padding not in ("post", "pre"):
        raise ValueError(f"padding must be 'post' or 'pre', got {padding!r}")
    if truncating not in ("post", "pre"):
        raise ValueError(f"truncating must be 'post' or 'pre', got {truncating!r}")
    if maxlen is not None and int(maxlen) < 0:
        raise ValueError(f"maxlen must be >= 0 (or None for the longest sequence), got {maxlen}")
    if isinstance(sequences, np.ndarray) and sequences.dtype != object and sequences.ndim >= 2:
        sequences = list(sequences)
    arrs: list[np.ndarray | None] = []  # None: an empty sequence, whose features are not known yet
    for i, s in enumerate(sequences):
        try:
            a = np.asarray(s, np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"sequence {i} is not an array of numbers with one row per step ({err})") from None
        if a.size == 0 and a.ndim <= 1:
            arrs.append(None)
            continue
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise DataError(f"sequence {i} must be [T] or [T, F], got shape {a.shape}")
        if maxlen is not None:
            m = int(maxlen)
            a = (a[-m:] if m > 0 else a[:0]) if truncating == "pre" else a[:m]
        arrs.append(a)
    if not arrs:
        raise DataError("no sequences given; give at least one (an empty sequence [] is fine)")
    shaped = [(i, a) for i, a in enumerate(arrs) if a is not None]
    f = shaped[0][1].shape[1] if shaped else 1
    for i, a in shaped:
        if a.shape[1] != f:
            raise DataError(
                f"sequence {i} has {a.shape[1]} features per step but sequence {shaped[0][0]} has {f}; "
                "every non-empty sequence needs the same features"
            )
    lengths = np.array([0 if a is None else a.shape[0] for a in arrs], np.int32)
    t = int(maxlen) if maxlen is not None else int(lengths.max())
    x = np.full((len(arrs), t, f), value, dtype)
    for i, a in enumerate(arrs):
        if a is not None and len(a):
            if padding == "post":
                x[i, : len(a)] = a
            else:
                x[i, t - len(a) :] = a
    return x, lengths


def from_arrays(sequences: Sequence[Any], labels=None) -> Dataset:
    """A Python list of variable-length arrays [T_i] or [T_i, F] -> Dataset.

    Empty sequences are kept (length 0, all padding); T is the longest
    sequence, so at least one must have a step."""
    x, lengths = pad_sequences(sequences, "post")
    return _as_dataset(x, lengths, labels)


def count_empty(data: Dataset) -> int:
    """How many sequences have length 0 (they add nothing to a loss)."""
    return int(np.sum(np.asarray(data.lengths) == 0))


# ------------------------------------------------------------------ text tables
# A number as a data file writes it: ASCII digits, optional sign, point and
# exponent, or nan/inf (reported as non-finite later). Python's float() also
# takes "1_000" and digits of other scripts; a data cell should not.
_NUMBER = re.compile(
    r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)\s*", re.ASCII | re.IGNORECASE
)


def _is_number(cell: str) -> bool:
    return _NUMBER.fullmatch(cell) is not None


class _Table(NamedTuple):
    header: list[str] | None
    rows: list[list[str]]
    lines: list[int]  # 1-based line number of each row


def _read_table(path: Path) -> _Table:
    """Split a text file into rows of cells: commas if the first data line has
    one, else runs of whitespace. Blank lines and ``#`` comments are skipped
    (UCR files end with an empty line); a first row of only non-numbers is a
    header."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file; give the path of a file in it")
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        text = fh.read()
    lines = text.splitlines()
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
    if not numbered:
        raise DataError(f"{path}: the file is empty; give a file with one row per time step or per sequence")
    comma = "," in numbered[0][1]
    if comma:
        rows = list(csv.reader([ln for _, ln in numbered]))
        rows = [[c.strip() for c in r] for r in rows]
    else:
        rows = [ln.split() for _, ln in numbered]
    line_nos = [n for n, _ in numbered]
    header = None
    if rows and not any(_is_number(c) for c in rows[0]):
        header, rows, line_nos = rows[0], rows[1:], line_nos[1:]
        if not rows:
            raise DataError(f"{path}: the file holds a header but no data rows; add the data below the header")
    width = len(header) if header is not None else len(rows[0])
    for r, n in zip(rows, line_nos):
        if len(r) != width:
            raise DataError(
                f"{path}: line {n} has {len(r)} columns but line {line_nos[0] - (header is not None)} has {width}; "
                "every row needs the same number of columns"
            )
    return _Table(header, rows, line_nos)


def _to_float(table: _Table, path: Path, cols: Sequence[int] | None = None) -> np.ndarray:
    """Cells -> float64 [rows, cols]; a non-number or NaN/inf names its line and column."""
    rows = table.rows if cols is None else [[r[c] for c in cols] for r in table.rows]
    col_ids = list(range(len(table.rows[0]))) if cols is None else list(cols)
    for r, n in zip(rows, table.lines):
        for j, c in enumerate(r):
            if not _is_number(c):
                raise DataError(
                    f"{path}: line {n}, column {col_ids[j] + 1} holds {c!r}, which is not a number; "
                    "every cell must be a plain decimal number (a single header row is allowed)"
                )
    arr = np.array(rows, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(
            f"{path}: line {table.lines[i]}, column {col_ids[j] + 1} is {table.rows[i][col_ids[j]]!r} (not finite; "
            f"{int(bad.sum())} such cells); remove or impute them"
        )
    big = np.abs(arr) > _F32_MAX
    if big.any():
        i, j = (int(v) for v in np.argwhere(big)[0])
        raise DataError(
            f"{path}: line {table.lines[i]}, column {col_ids[j] + 1} is {table.rows[i][col_ids[j]]!r}, beyond float32's "
            f"range (+-3.4e38; {int(big.sum())} such cells); rescale the data"
        )
    return arr


def _resolve_columns(spec, header: list[str] | None, width: int, path: Path, what: str = "--columns") -> list[int]:
    """Column names (needs a header) or 0-based indices -> indices."""
    if isinstance(spec, (str, int)):
        spec = [spec]
    out = []
    for c in spec:
        if isinstance(c, str) and c.strip().lstrip("-").isdigit():
            c = int(c)
        if isinstance(c, (int, np.integer)):
            c = int(c)
            if not -width <= c < width:
                raise DataError(f"{path}: {what} asks for column {c} but the file has {width} columns; give 0-based numbers below {width}")
            out.append(c % width)
        else:
            if header is None or c not in header:
                have = f"its header is {header}" if header else "it has no header row; use 0-based column numbers"
                raise DataError(f"{path}: {what} names column {c!r} but {have}")
            out.append(header.index(c))
    if not out:
        raise DataError(f"{path}: {what} selects no columns; give at least one column")
    return out


def _labels(col: np.ndarray) -> np.ndarray:
    return col.astype(np.int64) if np.all(col == np.round(col)) else col


# ------------------------------------------------------------------ loaders
def load_series(path, columns=None) -> np.ndarray:
    """One long series: a text file with one row per time step (whitespace or
    comma separated, optional header), or .npy [N_t] / [N_t, F].

    columns: names or 0-based indices to keep (e.g. ``[1, 2]`` drops a time
    stamp column). Returns float32 [N_t, F].
    """
    path = Path(path)
    if path.suffix in (".npy", ".npz"):
        arr = _load_array(path, "series")
        arr = _real_values(arr, path)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise DataError(f"{path}: a series must be [N_t] or [N_t, F], got shape {arr.shape}")
        if columns is not None:
            arr = arr[:, _resolve_columns(columns, None, arr.shape[1], path)]
        if arr.shape[0] == 0:
            raise DataError(f"{path}: the series is empty; give at least one row")
        check_finite(arr, path)
        return arr.astype(np.float32)
    table = _read_table(path)
    width = len(table.rows[0])
    cols = None if columns is None else _resolve_columns(columns, table.header, width, path)
    return _to_float(table, path, cols).astype(np.float32)


def _load_array(path: Path, what: str):
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    try:
        obj = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{path}: cannot read it as a NumPy file ({e}); save arrays with numpy.save/savez") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            keys = list(obj.keys())
            if not keys:
                raise DataError(f"{path}: the .npz file holds no arrays; save the sequences as x (numpy.savez(path, x=...))")
            if what == "series" or len(keys) == 1:
                key = "x" if "x" in keys else keys[0]
                return obj[key]
            return {k: obj[k] for k in keys}
    return obj


def _load_npy(path: Path) -> Dataset:
    obj = _load_array(path, "sequences")
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
    x = _real_values(x, path)
    if x.ndim == 2:
        x = x[..., None]  # [N, T] univariate sequences
    if x.ndim != 3:
        raise DataError(f"{path}: expected sequences of shape (N, T) or (N, T, F), got {x.shape}; reshape the array")
    if x.size == 0:
        raise DataError(f"{path}: holds no values (shape {x.shape})")
    if lengths is None:
        lengths = np.full((x.shape[0],), x.shape[1], np.int32)
    return _as_dataset(x, lengths, labels, path=path)


def _load_wide(path: Path, label_column) -> Dataset:
    """One row per sequence (UCR: label column first)."""
    table = _read_table(path)
    width = len(table.rows[0])
    lab = None if label_column is None else _resolve_columns(label_column, table.header, width, path, "the label column")[0]
    arr = _to_float(table, path)
    labels = None
    if lab is not None:
        labels = _labels(arr[:, lab])
        arr = np.delete(arr, lab, axis=1)
    if arr.shape[1] == 0:
        raise DataError(f"{path}: rows hold a label but no values; check --label-column and --format")
    x = arr[:, :, None]
    return _as_dataset(x, np.full((x.shape[0],), x.shape[1], np.int32), labels, path=path)


def _load_long(path: Path, id_column, columns, label_column) -> Dataset:
    """One row per time step; rows of one sequence share ``id_column`` and
    appear in time order. Sequences are ordered by first appearance."""
    table = _read_table(path)
    width = len(table.rows[0])
    if id_column is None:
        names = [h.lower() for h in table.header] if table.header else []
        hit = [i for i, h in enumerate(names) if h in _ID_NAMES]
        if not hit:
            raise DataError(f"{path}: one-row-per-step CSV needs a sequence-id column; name it with --id-column")
        id_col = hit[0]
    else:
        id_col = _resolve_columns(id_column, table.header, width, path, "--id-column")[0]
    lab_col = None if label_column is None else _resolve_columns(label_column, table.header, width, path, "the label column")[0]
    feat = (
        [c for c in range(width) if c not in (id_col, lab_col)]
        if columns is None
        else _resolve_columns(columns, table.header, width, path)
    )
    if id_col in feat:
        raise DataError(f"{path}: the id column {id_col} cannot also be a feature column")
    values = _to_float(table, path, feat)
    labels_all = None if lab_col is None else _to_float(table, path, [lab_col])[:, 0]
    ids = [r[id_col] for r in table.rows]
    order: dict[str, list[int]] = {}
    for i, s in enumerate(ids):
        order.setdefault(s, []).append(i)
    seqs = [values[rows] for rows in order.values()]
    labels = None if labels_all is None else _labels(np.array([labels_all[rows[0]] for rows in order.values()]))
    x, lengths = pad_sequences(seqs, "post")
    return _as_dataset(x, lengths, labels, path=path)


def load_sequences(
    path,
    *,
    format: str | None = None,
    columns=None,
    id_column=None,
    label_column=None,
    window: int | None = None,
    stride: int | None = None,
) -> Dataset:
    """Load sequences from a file.

    Formats (``format=None`` picks by suffix and options):
      - ``npy``: ``.npy`` [N, T] or [N, T, F]; ``.npz`` with ``x`` and optional
        ``lengths`` [N], ``labels`` [N] (without ``lengths`` every step is valid).
      - ``series``: one long series (see :func:`load_series`) cut into sliding
        windows; chosen when ``window`` is given.
      - ``long``: CSV with one row per time step and a sequence-id column
        (``id_column``, or a header column named id / sequence_id); chosen when
        ``id_column`` is given or such a header exists.
      - ``ucr``: one sequence per row, label in column 0 (UCR archive ``.txt``);
        the default for files other than ``.csv``.
      - ``wide``: one sequence per row, no label unless ``label_column``; the
        default for ``.csv``.
      - ``ts``: the sktime/aeon ``.ts`` format of the UCR/UEA archives
        (``jax_lstm_ae.data.ts``): uni- or multivariate, equal or unequal
        length, class labels; the default for ``.ts``. ``columns`` picks
        dimensions (0-based).
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file; give the path of a file in it")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty; give a file with one row per time step or per sequence")
    fmt = format
    if fmt is None:
        if window is not None:
            fmt = "series"
        elif path.suffix in (".npy", ".npz"):
            fmt = "npy"
        elif path.suffix.lower() == ".ts":
            fmt = "ts"
        elif id_column is not None:
            fmt = "long"
        elif path.suffix == ".csv":
            with open(path, encoding="utf-8-sig", errors="replace") as fh:
                first = fh.readline()
            names = [c.strip().lower() for c in first.split(",")]
            fmt = "long" if any(n in _ID_NAMES for n in names) else "wide"
        else:
            fmt = "ucr"
    if fmt == "npy":
        ds = _load_npy(path)
        if columns is not None:  # features of (N, T, F) arrays, by 0-based number
            ds = ds._replace(x=np.ascontiguousarray(ds.x[..., _resolve_columns(columns, None, ds.features, path)]))
        return ds
    if fmt == "ts":
        from jax_lstm_ae.data.ts import load_ts

        ds = load_ts(path)
        if columns is not None:
            ds = ds._replace(x=np.ascontiguousarray(ds.x[:, :, _resolve_columns(columns, None, ds.features, path)]))
        return ds
    if fmt == "series":
        if window is None:
            raise DataError("format 'series' needs a window length (--window)")
        series = load_series(path, columns)
        windows, starts = sliding_windows(series, window, stride or 1)
        return _as_dataset(windows, np.full((windows.shape[0],), window, np.int32), None, starts, path=path)
    if fmt == "long":
        return _load_long(path, id_column, columns, label_column)
    if columns is not None:
        raise DataError(f"--columns picks features of multivariate files; the {fmt} format has one value per cell")
    if fmt == "ucr":
        return _load_wide(path, 0 if label_column is None else label_column)
    return _load_wide(path, label_column)


# ------------------------------------------------------------------ windows
def sliding_windows(series, window: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """series[N_t, F] (or [N_t]) -> (windows[N, W, F], starts[N]).

    Windows start every ``stride`` rows; when the last one does not reach the
    end, one more window ending at the last row is added, so every point is
    covered at least once (see :func:`windows_to_points`).
    """
    s = np.asarray(series, np.float32)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise DataError(f"a series must be [N_t] or [N_t, F], got shape {s.shape}")
    window, stride = int(window), int(stride)
    if window < 1 or stride < 1:
        raise DataError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    n = s.shape[0]
    if window > n:
        raise DataError(f"window {window} is longer than the series ({n} rows); use a window of at most {n}")
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    starts_arr = np.array(starts, np.int64)
    idx = starts_arr[:, None] + np.arange(window)[None, :]
    return s[idx], starts_arr


def windows_to_points(window_scores, starts, window: int, n_points: int) -> np.ndarray:
    """Spread per-window scores [N] back to points: each point gets the mean
    score of the windows covering it; points no window covers get NaN."""
    scores = np.asarray(window_scores, np.float64)
    starts = np.asarray(starts, np.int64)
    if scores.shape != starts.shape:
        raise ValueError(f"window_scores {scores.shape} and starts {starts.shape} must match")
    total = np.zeros(n_points)
    count = np.zeros(n_points)
    for s, v in zip(starts, scores):
        total[s : s + window] += v
        count[s : s + window] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ------------------------------------------------------------------ normalisation
class Normalizer(NamedTuple):
    """Per-feature affine normalisation, fitted on valid steps of training data.

    ``mode``: ``zscore`` ((x - mean) / std), ``minmax`` (to [0, 1]) or ``none``.
    Padding stays zero after :meth:`apply` and :meth:`invert`.
    """

    mode: str
    shift: np.ndarray  # [F]
    scale: np.ndarray  # [F]

    @classmethod
    def fit(cls, data: Dataset, mode: str = "zscore") -> "Normalizer":
        f = data.features
        if mode == "none":
            return cls("none", np.zeros(f, np.float32), np.ones(f, np.float32))
        valid = np.arange(data.steps)[None, :] < data.lengths[:, None]
        v = data.x[valid].astype(np.float64)  # [n_valid, F]
        if mode == "zscore":
            shift, scale = v.mean(0), v.std(0)
        elif mode == "minmax":
            shift, scale = v.min(0), v.max(0) - v.min(0)
        else:
            raise ValueError(f"unknown normalisation {mode!r}; choose zscore, minmax or none")
        # A constant feature would divide by zero; leave it unscaled.
        scale = np.where(scale > 1e-8, scale, 1.0)
        return cls(mode, shift.astype(np.float32), scale.astype(np.float32))

    def _check(self, f: int) -> None:
        if f != self.shift.shape[0]:
            raise DataError(f"data has F={f} features but the normaliser was fitted on F={self.shift.shape[0]}")

    def apply(self, data):
        """Dataset -> Dataset, or array [..., F] -> array (no padding handling)."""
        if isinstance(data, Dataset):
            self._check(data.features)
            valid = (np.arange(data.steps)[None, :] < data.lengths[:, None])[..., None]
            x = np.where(valid, (data.x - self.shift) / self.scale, 0.0).astype(np.float32)
            return data._replace(x=x)
        arr = np.asarray(data, np.float32)
        self._check(arr.shape[-1])
        return ((arr - self.shift) / self.scale).astype(np.float32)

    def invert(self, data, lengths=None):
        """Back to data units; array [N, T, F] with ``lengths`` keeps padding zero."""
        if isinstance(data, Dataset):
            return data._replace(x=self.invert(data.x, data.lengths))
        arr = np.asarray(data, np.float32)
        self._check(arr.shape[-1])
        out = arr * self.scale + self.shift
        if lengths is not None:
            valid = (np.arange(arr.shape[1])[None, :] < np.asarray(lengths)[:, None])[..., None]
            out = np.where(valid, out, 0.0)
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(d["mode"], np.asarray(d["shift"], np.float32), np.asarray(d["scale"], np.float32))


# ------------------------------------------------------------------ batches and splits
def _rng(key_or_seed) -> np.random.Generator:
    if isinstance(key_or_seed, (int, np.integer)):
        return np.random.default_rng(int(key_or_seed))
    if isinstance(key_or_seed, (tuple, list)):  # e.g. (seed, epoch)
        return np.random.default_rng([int(k) for k in key_or_seed])
    key = key_or_seed
    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, np.uint32).ravel().tolist())


def batches(
    dataset: Dataset, batch_size: int, key_or_seed=0, shuffle: bool = True, *, drop_last: bool = False
) -> Iterator:
    """Yield ``Batch(x[B, T, F], lengths[B])`` NumPy batches.

    The order is a deterministic function of ``key_or_seed`` (an int or a JAX
    key), so a resumed run sees the same batches. ``drop_last`` keeps every
    batch the same shape (one compilation); otherwise the last may be smaller.
    """
    n = dataset.n
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = _rng(key_or_seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield Batch(dataset.x[idx], dataset.lengths[idx])


def train_val_split(dataset: Dataset, val_fraction: float = 0.2, seed=0) -> tuple[Dataset, Dataset | None]:
    """Random split; ``val`` is None when ``val_fraction`` is 0 or the set has one example."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    n = dataset.n
    n_val = min(int(round(n * val_fraction)), n - 1)
    if n_val < 1:
        return dataset, None
    order = _rng(seed).permutation(n)
    return dataset.take(np.sort(order[n_val:])), dataset.take(np.sort(order[:n_val]))


# ------------------------------------------------------------------ synthetic sets
def _moving_one(n: int, seed: int, width: int = 10, max_len: int = 10) -> Dataset:
    """One-hot rows [T, F=width] whose 1 moves one position per step (start and
    direction random), lengths 1..max_len, post-padded. Binary data: use the
    sigmoid head (binary cross-entropy). Lengths start at 1 here; the Keras
    question's own generator, empty sequences included, is ``moving_one_keras``."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, n).astype(np.int32)
    start = rng.integers(0, width, n)
    direction = rng.choice([-1, 1], n)
    t = np.arange(max_len)
    pos = (start[:, None] + direction[:, None] * t[None, :]) % width  # [N, T]
    x = (pos[..., None] == np.arange(width)[None, None, :]).astype(np.float32)
    return _as_dataset(x, lengths, labels=(direction > 0).astype(np.int64))


def _moving_one_keras(n: int, seed: int) -> Dataset:
    """The moving-ones generator of the Keras LSTM-autoencoder question, as
    written: sequence i has ``round(uniform(0, 10))`` steps (so about 5 % are
    empty), step t is one-hot at position t for t < 8 and all zeros for t = 8,
    9; F = 8, post-padded to T = 10. Binary data: the sigmoid head, or the
    identity head with ``loss="bce"`` as in that question's Keras model."""
    rng = np.random.default_rng(seed)
    lengths = np.round(rng.uniform(0, 10, n)).astype(np.int32)  # half to even, as Python's round
    t = np.arange(10)
    rows = (t[:, None] == np.arange(8)[None, :]).astype(np.float32)  # [T, F]: row 8 and 9 are zeros
    x = np.broadcast_to(rows, (n, 10, 8))
    return _as_dataset(x, lengths)


def _sines(n: int, seed: int, steps: int = 32, channels: int = 3, anomaly_rate: float = 0.1) -> Dataset:
    """Noisy multi-channel sines: one random frequency and phase per sequence,
    channel c shifted by c * pi / 3 and scaled by 1 - 0.2 c, noise sd 0.05.
    ``labels`` mark the ~10 % with an injected anomaly on one channel: a
    spike, a level shift or a burst of a faster oscillation."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :, None]
    c = np.arange(channels)[None, None, :]
    freq = rng.uniform(0.04, 0.1, (n, 1, 1))
    phase = rng.uniform(0, 2 * math.pi, (n, 1, 1))
    x = (1 - 0.2 * c) * np.sin(2 * math.pi * freq * t + phase + c * math.pi / 3)
    x = x + 0.05 * rng.standard_normal((n, steps, channels))
    labels = (rng.random(n) < anomaly_rate).astype(np.int64)
    for i in np.flatnonzero(labels):
        ch, at = rng.integers(channels), rng.integers(4, steps - 10)
        kind = rng.integers(3)
        if kind == 0:
            x[i, at, ch] += rng.choice([-1, 1]) * 3.0
        elif kind == 1:
            x[i, at:, ch] += rng.choice([-1, 1]) * 1.5
        else:
            x[i, at : at + 8, ch] = np.sin(np.arange(8) * 2.5)
    return _as_dataset(x.astype(np.float32), np.full((n,), steps, np.int32), labels)


SYNTHETIC = {"moving_one": _moving_one, "moving_one_keras": _moving_one_keras, "sines": _sines}


def synthetic(name: str, *, n: int | None = None, seed: int = 0) -> Dataset:
    """Built-in data sets: ``moving_one`` (binary, variable length, T=10, F=10),
    ``moving_one_keras`` (the Keras question's generator: binary, lengths 0-10,
    T=10, F=8, default n=5000) and ``sines`` (real, T=32, F=3, labels mark
    injected anomalies)."""
    key = name.replace("-", "_")
    if key not in SYNTHETIC:
        raise DataError(f"unknown synthetic data set {name!r}; choose one of {', '.join(SYNTHETIC)}")
    default_n = {"moving_one": 512, "moving_one_keras": 5000, "sines": 512}[key]
    return SYNTHETIC[key](default_n if n is None else int(n), int(seed))

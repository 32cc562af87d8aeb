"""Loading sequences and series from files: one entry point per result, the format picked once.

    ds = load_sequences("ECG5000_TRAIN.txt")                 # UCR: label, then values
    ds = load_sequences("runs.csv", id_column="run")         # one row per step, grouped by id
    series = load_series("chfdb.txt", columns=[1, 2])        # one long series [N_t, F]

Each format has its reader: delimited text (:mod:`~jax_lstm_ae.data.tables`),
NumPy files (:mod:`~jax_lstm_ae.data.numpy_files`), ``.ts``
(:mod:`~jax_lstm_ae.data.ts`); this module picks one and lays the cells out
as sequences.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jax_lstm_ae.data.core import Dataset, DataError, _as_dataset, check_finite, pad_sequences
from jax_lstm_ae.data.numpy_files import read_npy_sequences, read_npy_series
from jax_lstm_ae.data.tables import labels_from_column, read_table, resolve_columns, to_float
from jax_lstm_ae.data.ts import load_ts
from jax_lstm_ae.data.windows import sliding_windows

FORMATS = ("ucr", "wide", "long", "series", "npy", "ts")
_ID_NAMES = ("id", "sequence_id", "seq_id", "series_id")


def load_series(path, columns=None) -> np.ndarray:
    """One long series: a text file with one row per time step (whitespace or
    comma separated, optional header), or .npy [N_t] / [N_t, F].

    columns: names or 0-based indices to keep (e.g. ``[1, 2]`` drops a time
    stamp column). Returns float32 [N_t, F].
    """
    path = Path(path)
    if path.suffix in (".npy", ".npz"):
        arr = read_npy_series(path)
        if columns is not None:
            arr = arr[:, resolve_columns(columns, None, arr.shape[1], path)]
        if arr.shape[0] == 0:
            raise DataError(f"{path}: the series is empty (shape {arr.shape}); give at least one row")
        check_finite(arr, path)
        return arr.astype(np.float32)
    table = read_table(path)
    width = len(table.rows[0])
    cols = None if columns is None else resolve_columns(columns, table.header, width, path)
    return to_float(table, path, cols).astype(np.float32)


def _load_wide(path: Path, label_column) -> Dataset:
    """One row per sequence (UCR: label column first)."""
    table = read_table(path)
    width = len(table.rows[0])
    lab = None if label_column is None else resolve_columns(label_column, table.header, width, path, "the label column")[0]
    arr = to_float(table, path)
    labels = None
    if lab is not None:
        labels = labels_from_column(arr[:, lab])
        arr = np.delete(arr, lab, axis=1)
    if arr.shape[1] == 0:
        raise DataError(f"{path}: rows hold a label but no values; check --label-column and --format")
    x = arr[:, :, None]
    return _as_dataset(x, np.full((x.shape[0],), x.shape[1], np.int32), labels, path=path)


def _load_long(path: Path, id_column, columns, label_column) -> Dataset:
    """One row per time step; rows of one sequence share ``id_column`` and
    appear in time order. Sequences are ordered by first appearance."""
    table = read_table(path)
    width = len(table.rows[0])
    if id_column is None:
        names = [h.lower() for h in table.header] if table.header else []
        hit = [i for i, h in enumerate(names) if h in _ID_NAMES]
        if not hit:
            raise DataError(f"{path}: one-row-per-step CSV needs a sequence-id column; name it with --id-column")
        id_col = hit[0]
    else:
        id_col = resolve_columns(id_column, table.header, width, path, "--id-column")[0]
    lab_col = None if label_column is None else resolve_columns(label_column, table.header, width, path, "the label column")[0]
    feat = (
        [c for c in range(width) if c not in (id_col, lab_col)]
        if columns is None
        else resolve_columns(columns, table.header, width, path)
    )
    if id_col in feat:
        raise DataError(f"{path}: the id column {id_col} cannot also be a feature column; drop it from --columns")
    values = to_float(table, path, feat)
    labels_all = None if lab_col is None else to_float(table, path, [lab_col])[:, 0]
    ids = [r[id_col] for r in table.rows]
    order: dict[str, list[int]] = {}
    for i, s in enumerate(ids):
        order.setdefault(s, []).append(i)
    seqs = [values[rows] for rows in order.values()]
    labels = None if labels_all is None else labels_from_column(np.array([labels_all[rows[0]] for rows in order.values()]))
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
        hint = {
            ".npy": "write the array with numpy.save",
            ".npz": "write the arrays with numpy.savez(path, x=...)",
            ".ts": "a .ts file needs its @ headers, then @data, then one case per line",
        }.get(path.suffix.lower(), "give a file with one row per time step or per sequence")
        raise DataError(f"{path}: the file is empty (0 bytes); {hint}")
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
        ds = read_npy_sequences(path)
        if columns is not None:  # features of (N, T, F) arrays, by 0-based number
            ds = ds._replace(x=np.ascontiguousarray(ds.x[..., resolve_columns(columns, None, ds.features, path)]))
        return ds
    if fmt == "ts":
        ds = load_ts(path)
        if columns is not None:
            ds = ds._replace(x=np.ascontiguousarray(ds.x[:, :, resolve_columns(columns, None, ds.features, path)]))
        return ds
    if fmt == "series":
        if window is None:
            raise DataError("format 'series' needs a window length; pass --window W")
        series = load_series(path, columns)
        windows, starts = sliding_windows(series, window, stride or 1)
        return _as_dataset(windows, np.full((windows.shape[0],), window, np.int32), None, starts, path=path)
    if fmt == "long":
        return _load_long(path, id_column, columns, label_column)
    if columns is not None:
        raise DataError(f"--columns picks features of multivariate files; the {fmt} format has one value per cell: "
                        "drop --columns")
    if fmt == "ucr":
        return _load_wide(path, 0 if label_column is None else label_column)
    return _load_wide(path, label_column)


"""Delimited text tables: the cells of CSV / whitespace-separated files as numbers.

    table = read_table(path)                  # Table(header, rows of cells, line numbers)
    values = to_float(table, path, [1, 2])    # float64 [rows, 2]; a bad cell names its line and column

The layouts built on these (one sequence per row, one step per row, one long
series) live in :mod:`jax_lstm_ae.data.loaders`.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from jax_lstm_ae.data.core import F32_MAX, DataError

# A number as a data file writes it: ASCII digits, optional sign, point and
# exponent, or nan/inf (reported as non-finite later). Python's float() also
# takes "1_000" and digits of other scripts; a data cell should not.
_NUMBER = re.compile(
    r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)\s*", re.ASCII | re.IGNORECASE
)


def is_number(cell: str) -> bool:
    return _NUMBER.fullmatch(cell) is not None


class Table(NamedTuple):
    header: list[str] | None
    rows: list[list[str]]
    lines: list[int]  # 1-based line number of each row


def read_table(path: Path) -> Table:
    """Split a text file into rows of cells: commas if the first data line has
    one, else runs of whitespace. Blank lines and ``#`` comments are skipped
    (UCR files end with an empty line); a first row of only non-numbers is a
    header."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file; give the path of a file in it")
    raw = path.read_bytes()
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"{path}: is not a UTF-8 text file (byte {nul} is NUL: binary data, or UTF-16 text); save it as UTF-8 "
            "CSV or whitespace-separated text, or give a .npy/.npz/.ts file its suffix"
        )
    text = raw.decode("utf-8-sig", errors="replace")
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
    if rows and not any(is_number(c) for c in rows[0]):
        header, rows, line_nos = rows[0], rows[1:], line_nos[1:]
        if not rows:
            raise DataError(f"{path}: the file holds a header but no data rows; add the data below the header")
    width = len(header) if header is not None else len(rows[0])
    for r, n in zip(rows, line_nos):
        if len(r) != width:
            raise DataError(
                f"{path}: line {n} has {len(r)} columns but line {line_nos[0] - (header is not None)} has {width}; "
                "every row needs the same number of columns: fix that line"
            )
    return Table(header, rows, line_nos)


def to_float(table: Table, path: Path, cols: Sequence[int] | None = None) -> np.ndarray:
    """Cells -> float64 [rows, cols]; a non-number or NaN/inf names its line and column."""
    rows = table.rows if cols is None else [[r[c] for c in cols] for r in table.rows]
    col_ids = list(range(len(table.rows[0]))) if cols is None else list(cols)
    for r, n in zip(rows, table.lines):
        for j, c in enumerate(r):
            if not is_number(c):
                raise DataError(
                    f"{path}: line {n}, column {col_ids[j] + 1} holds {c!r}, which is not a number; "
                    "write every cell as a plain decimal number (a single header row is allowed)"
                )
    arr = np.array(rows, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(
            f"{path}: line {table.lines[i]}, column {col_ids[j] + 1} is {table.rows[i][col_ids[j]]!r} (not finite; "
            f"{int(bad.sum())} such cells); remove or impute them"
        )
    big = np.abs(arr) > F32_MAX
    if big.any():
        i, j = (int(v) for v in np.argwhere(big)[0])
        raise DataError(
            f"{path}: line {table.lines[i]}, column {col_ids[j] + 1} is {table.rows[i][col_ids[j]]!r}, beyond float32's "
            f"range (+-3.4e38; {int(big.sum())} such cells); rescale the data"
        )
    return arr


def resolve_columns(spec, header: list[str] | None, width: int, path: Path, what: str = "--columns") -> list[int]:
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
                raise DataError(f"{path}: {what} asks for column {c} but the file has {width} columns; "
                                f"give 0-based numbers below {width}")
            out.append(c % width)
        else:
            if header is None or c not in header:
                have = f"its header is {header}; use one of those names or a 0-based number" if header else "it has no header row; use 0-based column numbers"
                raise DataError(f"{path}: {what} names column {c!r} but {have}")
            out.append(header.index(c))
    if not out:
        raise DataError(f"{path}: {what} selects no columns; give at least one column")
    return out


def labels_from_column(col: np.ndarray) -> np.ndarray:
    return col.astype(np.int64) if np.all(col == np.round(col)) else col


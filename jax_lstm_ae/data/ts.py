"""The sktime / aeon ``.ts`` format (the UCR/UEA classification archives).

    ds = load_ts("JapaneseVowels_TRAIN.ts")     # Dataset: x[N, T, F] post-padded, lengths[N], labels[N]
    ts = read_ts("BasicMotions_TRAIN.ts")       # TsFile(dataset, header): header.problem_name, .class_labels ...

A file is ``#`` comment lines, ``@`` header lines, then ``@data`` and one case
per line. A case's dimensions (features F) are separated by ``:``, the values of
one dimension by ``,``; with ``@classLabel true`` (or ``@targetLabel true``) the
last ``:`` field is the case's label. With ``@timeStamps true`` each value is
written ``(time,value)``; the values are kept in the order given and the time
stamps dropped.

Headers read (case-insensitive): ``@problemName``, ``@timeStamps``,
``@missing``, ``@univariate``, ``@dimension(s)``, ``@equalLength``,
``@seriesLength``, ``@classLabel``, ``@targetLabel``, ``@data``. Cases of
different lengths (``@equalLength false``) become post-padded x[N, T, F] with
lengths[N], T the longest case; the dimensions of one case must share its
length. Missing values (``?``, NaN) are refused with the line and column where
they sit: the model has no way to read them, so impute them first.

Class labels stay strings unless every one is an integer (then int64), as the
UCR ``.txt`` loader does; ``@targetLabel`` values are float64.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jax_lstm_ae.data.core import F32_MAX, DataError, Dataset, _as_dataset

_BOOL = {"true": True, "false": False}
_TIMESTAMPED = re.compile(r"\(\s*([^(),]*?)\s*,\s*([^(),]*?)\s*\)")


class TsHeader(NamedTuple):
    """What the ``@`` lines of a ``.ts`` file say (None where a line is absent)."""

    problem_name: str | None = None
    timestamps: bool = False
    missing: bool | None = None
    univariate: bool | None = None
    dimensions: int | None = None
    equal_length: bool | None = None
    series_length: int | None = None
    class_labels: tuple[str, ...] | None = None  # the declared classes, in file order
    target_label: bool = False  # regression: the last field is a number


class TsFile(NamedTuple):
    dataset: Dataset  # x[N, T, F] float32 post-padded, lengths[N] int32, labels[N] or None
    header: TsHeader


def _flag(value: str, tag: str, path: Path, line: int) -> bool:
    v = value.strip().lower()
    if v not in _BOOL:
        raise DataError(f"{path}: line {line}: {tag} must be true or false, got {value.strip()!r}; write true or false")
    return _BOOL[v]


def _int(value: str, tag: str, path: Path, line: int) -> int:
    try:
        v = int(value.strip())
    except ValueError:
        raise DataError(f"{path}: line {line}: {tag} must be a positive integer, got {value.strip()!r}; "
                        "write a number such as 100") from None
    if v < 1:
        raise DataError(f"{path}: line {line}: {tag} must be a positive integer, got {v}; write a number such as 100")
    return v


def _parse_header(lines: list[str], path: Path) -> tuple[TsHeader, int]:
    """(header, index of the first data line)."""
    h: dict = {}
    for i, raw in enumerate(lines):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if not s.startswith("@"):
            raise DataError(
                f"{path}: line {i + 1} holds data before @data; put the @ headers first, "
                "then @data, then one case per line"
            )
        tag, _, rest = s.partition(" ")
        if "\t" in tag:
            tag, _, more = tag.partition("\t")
            rest = more + " " + rest
        key = tag.lower()
        n = i + 1
        if key == "@data":
            return _make_header(h), i + 1
        if key == "@problemname":
            h["problem_name"] = rest.strip()
        elif key == "@timestamps":
            h["timestamps"] = _flag(rest, tag, path, n)
        elif key == "@missing":
            h["missing"] = _flag(rest, tag, path, n)
        elif key == "@univariate":
            h["univariate"] = _flag(rest, tag, path, n)
        elif key in ("@dimension", "@dimensions"):
            h["dimensions"] = _int(rest, tag, path, n)
        elif key == "@equallength":
            h["equal_length"] = _flag(rest, tag, path, n)
        elif key == "@serieslength":
            h["series_length"] = _int(rest, tag, path, n)
        elif key == "@classlabel":
            words = rest.split()
            if not words:
                raise DataError(f"{path}: line {n}: {tag} needs true (followed by the class names) or false; "
                                f"write e.g. {tag} true A B")
            if _flag(words[0], tag, path, n):
                if len(words) < 2:
                    raise DataError(f"{path}: line {n}: {tag} true must list the class names after it; "
                                    f"write e.g. {tag} true A B")
                h["class_labels"] = tuple(words[1:])
        elif key == "@targetlabel":
            h["target_label"] = _flag(rest.split()[0] if rest.split() else "", tag, path, n)
        else:
            raise DataError(
                f"{path}: line {n}: unknown header {tag}; a .ts file may use @problemName, @timeStamps, @missing, "
                "@univariate, @dimensions, @equalLength, @seriesLength, @classLabel, @targetLabel, @data: fix or remove it"
            )
    raise DataError(f"{path}: no @data line; is this a sktime/aeon .ts file? (use --format for other layouts)")


def _make_header(h: dict) -> TsHeader:
    header = TsHeader(**h)
    if header.class_labels is not None and header.target_label:
        raise DataError("a .ts file cannot declare both @classLabel true and @targetLabel true; "
                        "set one of them to false")
    return header


def _missing_error(path: Path, line_no: int, start: int, cells: list[str], j: int, dim: int):
    """DataError naming the line, the 1-based character column, dimension and value of a missing value."""
    cell = cells[j]
    col = start + sum(len(c) + 1 for c in cells[:j]) + (len(cell) - len(cell.lstrip())) + 1
    raise DataError(
        f"{path}: line {line_no}, column {col} (dimension {dim}, value {j + 1}) is {cell.strip()!r}, a missing "
        "value; impute or drop missing values before loading (the model cannot read them)"
    )


def _parse_values(field: str, timestamps: bool, path: Path, n: int, start: int, dim: int) -> np.ndarray:
    if timestamps:
        cells = [m.group(2) for m in _TIMESTAMPED.finditer(field)]
        if not cells and field.strip():
            raise DataError(f"{path}: line {n}, dimension {dim}: @timeStamps true needs values written (time,value); "
                            "write them "
                            "so, or set @timeStamps false")
    else:
        cells = field.split(",")
    if not cells or (len(cells) == 1 and not cells[0].strip()):
        raise DataError(f"{path}: line {n}, dimension {dim} holds no values; give every dimension of a "
                        "case its values")
    try:
        vals = np.array(cells, dtype=np.float64)
    except ValueError:
        vals = None
    if vals is not None and np.isfinite(vals).all():
        big = np.abs(vals) > F32_MAX
        if big.any():
            j = int(np.flatnonzero(big)[0])
            raise DataError(
                f"{path}: line {n}, dimension {dim}, value {j + 1} is {cells[j].strip()!r}, beyond float32's range "
                f"(+-3.4e38; {int(big.sum())} such values in this dimension); rescale the data (e.g. divide by a power of ten)"
            )
        return vals
    for j, c in enumerate(cells):
        c_s = c.strip()
        try:
            v = float(c_s)
        except ValueError:
            v = None
        if c_s == "?" or (v is not None and np.isnan(v)):
            if timestamps:
                raise DataError(
                    f"{path}: line {n}, dimension {dim}, value {j + 1} is missing ({c_s!r}); impute or drop missing "
                    "values before loading (the model cannot read them)"
                )
            _missing_error(path, n, start, cells, j, dim)
        if v is None or not np.isfinite(v):
            raise DataError(
                f"{path}: line {n}, dimension {dim}, value {j + 1} is {c_s!r}, which is not a finite number; "
                "fix the file (values are separated by ',' and dimensions by ':')"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _labels(raw: list[str], header: TsHeader, path: Path, lines: list[int]) -> np.ndarray | None:
    if header.target_label:
        try:
            return np.array(raw, dtype=np.float64)
        except ValueError:
            bad = next(i for i, r in enumerate(raw) if not _is_float(r))
            raise DataError(f"{path}: line {lines[bad]}: target {raw[bad]!r} is not a number (@targetLabel true); "
                            "write a number, "
                            "or use @classLabel for class names") from None
    if header.class_labels is None:
        return None
    known = set(header.class_labels)
    for r, n in zip(raw, lines):
        if r not in known:
            raise DataError(
                f"{path}: line {n}: class {r!r} is not among those @classLabel declares ({' '.join(header.class_labels)}); "
                "fix the label or add it to the @classLabel line"
            )
    if all(re.fullmatch(r"[+-]?\d+", r) for r in raw):
        return np.array([int(r) for r in raw], np.int64)
    return np.array(raw)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_ts(path) -> TsFile:
    """Read a ``.ts`` file into a post-padded :class:`Dataset` and its header.

    x[N, T, F] float32 with F = the number of dimensions and T = the longest
    case; lengths[N] int32; labels[N] (classes: int64 when all are integers,
    else strings; targets: float64) or None without a label column.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .ts file; give the path of a file in it")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(
            f"{path}: the file is empty; a .ts file needs its @ headers, then @data, then one case per line"
        )
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"{path}: is not a UTF-8 text file (byte {nul} is NUL: binary data, or UTF-16 text); save the .ts file as UTF-8"
        )
    lines = raw.decode("utf-8-sig", errors="replace").splitlines()
    header, first = _parse_header(lines, path)
    has_label = header.class_labels is not None or header.target_label
    dims_expected = header.dimensions if header.dimensions is not None else (1 if header.univariate else None)
    cases: list[np.ndarray] = []
    raw_labels: list[str] = []
    case_lines: list[int] = []
    for i in range(first, len(lines)):
        line = lines[i]
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        n = i + 1
        if s.startswith("@"):
            raise DataError(f"{path}: line {n}: header {s.split()[0]} after @data; move it before @data")
        # Split on ':' outside parentheses (time stamps may hold ':' as in 2020-01-01 10:00).
        fields, starts, depth, last = [], [], 0, 0
        for j, ch in enumerate(line):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == ":" and depth == 0:
                fields.append(line[last:j])
                starts.append(last)
                last = j + 1
        fields.append(line[last:])
        starts.append(last)
        if has_label:
            if len(fields) < 2:
                raise DataError(
                    f"{path}: line {n} has no label; end each case with ':label' "
                    "(@classLabel/@targetLabel true), or set them false"
                )
            raw_labels.append(fields[-1].strip())
            fields, starts = fields[:-1], starts[:-1]
        if dims_expected is None:
            dims_expected = len(fields)
        if len(fields) != dims_expected:
            raise DataError(
                f"{path}: line {n} has {len(fields)} dimensions but "
                + (f"the header declares {dims_expected}" if header.dimensions or header.univariate else
                   f"the first case has {dims_expected}")
                + "; every case needs the same dimensions, separated by ':'"
            )
        dims = [_parse_values(f, header.timestamps, path, n, st, d + 1) for d, (f, st) in enumerate(zip(fields, starts))]
        lens = {len(v) for v in dims}
        if len(lens) > 1:
            raise DataError(
                f"{path}: line {n}: its dimensions have different lengths ({', '.join(str(len(v)) for v in dims)}); "
                "give every dimension of one case the same number of steps"
            )
        cases.append(np.stack(dims, axis=1))  # [T_i, F]
        case_lines.append(n)
    if not cases:
        raise DataError(f"{path}: no cases after @data; add at least one case, one per line after @data")
    lengths = np.array([c.shape[0] for c in cases], np.int32)
    if header.equal_length and len(set(lengths.tolist())) > 1:
        i = int(np.flatnonzero(lengths != lengths[0])[0])
        raise DataError(
            f"{path}: line {case_lines[i]} has {lengths[i]} steps but line {case_lines[0]} has {lengths[0]}, "
            "and the header says @equalLength true; fix the header or the data"
        )
    if header.series_length is not None and header.equal_length is not False and np.any(lengths != header.series_length):
        i = int(np.flatnonzero(lengths != header.series_length)[0])
        raise DataError(
            f"{path}: line {case_lines[i]} has {lengths[i]} steps but @seriesLength says {header.series_length}; fix "
            "that line, or the header"
        )
    x = np.zeros((len(cases), int(lengths.max()), cases[0].shape[1]), np.float32)
    for i, c in enumerate(cases):
        x[i, : c.shape[0]] = c
    labels = _labels(raw_labels, header, path, case_lines) if has_label else None
    return TsFile(_as_dataset(x, lengths, labels, path=path), header)


def load_ts(path) -> Dataset:
    """The cases of a ``.ts`` file as a post-padded :class:`Dataset` (see :func:`read_ts`)."""
    return read_ts(path).dataset

"""The data layer's vocabulary: :class:`DataError`, :class:`Batch`, :class:`Dataset`,
the checks every reader shares, and padding of variable-length sequences.

A :class:`Dataset` always holds *post*-padded float32 sequences (valid steps
first, zeros after), which is what the model's masking expects. Every other
module of ``jax_lstm_ae.data`` imports from this one; this one imports none of
them (NumPy only).

Bad input raises :class:`DataError` (a ``ValueError``) whose message names the
file, the place in it, and says what to do.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Sequence

import numpy as np

Padding = Literal["post", "pre"]
F32_MAX = float(np.finfo(np.float32).max)


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
    series (see :func:`~jax_lstm_ae.data.sliding_windows`), else None.
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


def source(path) -> str:
    """How a message names its source: the file, or "data" for in-memory arrays."""
    return str(path) if path is not None else "data"


def valid_mask(lengths, steps: int) -> np.ndarray:
    """[N, T] True on the valid steps of post-padded sequences."""
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


# ------------------------------------------------------------------ checks
def _place(idx: tuple[int, ...], ndim: int) -> str:
    if ndim == 3:
        return f"sequence {idx[0]}, step {idx[1]}, feature {idx[2]}"
    if ndim == 2:
        return f"row {idx[0]}, column {idx[1]}"
    if ndim == 1:
        return f"row {idx[0]}"
    return f"index {idx}"


def check_finite(x: np.ndarray, path=None, *, what: str = "value") -> None:
    """Raise DataError naming the first NaN/inf in x[N, T, F] or a 2-D table."""
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{source(path)}: {what} at {_place(idx, x.ndim)} is {x[idx]} (found {int(bad.sum())} non-finite values); "
            "remove or impute them before training"
        )


def beyond_float32(x: np.ndarray) -> np.ndarray:
    """Mask of the finite values whose magnitude float32 cannot hold (they would become inf)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating) or x.dtype.itemsize <= 4:
        return np.zeros(x.shape, bool)  # integers (at most 1.8e19), float16/32: always in range
    with np.errstate(over="ignore", invalid="ignore"):
        return np.isfinite(x) & (np.abs(x) > F32_MAX)


def check_float32_range(x: np.ndarray, path=None, *, mask=None) -> None:
    """Raise DataError naming the first value (where ``mask`` is True) beyond float32's range."""
    big = beyond_float32(x)
    if mask is not None:
        big &= mask
    if big.any():
        idx = tuple(int(i) for i in np.argwhere(big)[0])
        raise DataError(
            f"{source(path)}: value {float(x[idx]):g} at {_place(idx, np.ndim(x))} is beyond float32's range "
            f"(+-3.4e38; {int(big.sum())} such values); rescale the data (e.g. divide by a power of ten)"
        )


def real_values(x, path, what: str = "values") -> np.ndarray:
    """A numeric array as float64, refusing complex numbers, non-numbers and
    magnitudes float32 cannot hold (they would silently become inf)."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise DataError(f"{source(path)}: holds complex {what}; give real numbers (e.g. the real part or the magnitude)")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(
            f"{source(path)}: holds {x.dtype} {what}, expected numbers; save a numeric (integer or float) array"
        )
    check_float32_range(x, path)
    return x.astype(np.float64)


def _check_lengths(lengths, n: int, t: int, path) -> np.ndarray:
    """lengths[N]: whole numbers in [0, T] (0: an empty sequence), checked before the cast to int32
    (which would turn 7.9 into 7 and 2**32 + 5 into 5)."""
    raw = np.asarray(lengths)
    if raw.shape != (n,):
        raise DataError(f"{source(path)}: lengths must have shape ({n},), got {raw.shape}; give one length per sequence")
    if np.iscomplexobj(raw) or not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise DataError(f"{source(path)}: lengths hold {raw.dtype} values; give whole numbers between 0 and T={t}")
    if np.issubdtype(raw.dtype, np.floating):
        frac = ~np.isfinite(raw) | (raw != np.round(raw))
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise DataError(
                f"{source(path)}: sequence {i} has length {raw[i]}; lengths must be whole numbers between 0 "
                f"and T={t}: fix that length"
            )
    bad = (raw < 0) | (raw > t)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source(path)}: sequence {i} has length {raw[i]:.0f}; every sequence needs between 0 and T={t} "
            "steps: fix that length"
        )
    return raw.astype(np.int32)


def _as_dataset(x: np.ndarray, lengths: np.ndarray, labels=None, starts=None, path=None) -> Dataset:
    """Check and pack post-padded x[N, T, F] and lengths[N] into a float32 :class:`Dataset`.

    With a ``path`` (data read from a file) a set whose every sequence has
    length 0 is refused: it leaves nothing to train on or score. Single empty
    sequences among others are fine (see :func:`count_empty`)."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise DataError(f"{source(path)}: expected sequences of shape (N, T, F), got {x.shape}; reshape the data")
    n, t, _ = x.shape
    if n == 0:
        raise DataError(f"{source(path)}: holds no sequences (shape {x.shape}); give at least one sequence")
    if t == 0:
        raise DataError(f"{source(path)}: every sequence is empty (shape {x.shape}); give at least one step")
    if x.shape[2] == 0:
        raise DataError(f"{source(path)}: the sequences have no features (shape {x.shape}); check --columns")
    lengths = _check_lengths(lengths, n, t, path)
    if path is not None and not lengths.any():
        raise DataError(
            f"every sequence in {source(path)} has length 0; nothing to train on or score: "
            "give at least one sequence with a step"
        )
    valid = valid_mask(lengths, t)[..., None]
    if x.dtype != np.float32:
        check_float32_range(x, path, mask=np.broadcast_to(valid, x.shape))
        with np.errstate(over="ignore", invalid="ignore"):
            x = x.astype(np.float32)
    check_finite(np.where(valid, x, 0.0), path)
    x = np.where(valid, x, 0.0).astype(np.float32)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise DataError(f"{source(path)}: labels must have shape ({n},), got {labels.shape}; give one label per sequence")
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
        raise ValueError(f"padding must be 'post' or 'pre', got {padding!r}; pass one of them")
    if truncating not in ("post", "pre"):
        raise ValueError(f"truncating must be 'post' or 'pre', got {truncating!r}; pass one of them")
    if maxlen is not None and int(maxlen) < 0:
        raise ValueError(f"maxlen must be >= 0, got {maxlen}; pass a length, or None for the longest sequence")
    if isinstance(sequences, np.ndarray) and sequences.dtype != object and sequences.ndim >= 2:
        sequences = list(sequences)
    arrs: list[np.ndarray | None] = []  # None: an empty sequence, whose features are not known yet
    for i, s in enumerate(sequences):
        try:
            a = np.asarray(s, np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"sequence {i} is not an array of numbers with one row per step ({err}); "
                            "pass numbers, one row per step") from None
        if a.size == 0 and a.ndim <= 1:
            arrs.append(None)
            continue
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise DataError(f"sequence {i} must be [T] or [T, F], got shape {a.shape}; pass one row per step")
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
                "every non-empty sequence needs the same features: fix that sequence"
            )
    if np.issubdtype(np.dtype(dtype), np.floating) and np.finfo(dtype).max < np.finfo(np.float64).max:
        top = float(np.finfo(dtype).max)
        for i, a in shaped:
            big = np.isfinite(a) & (np.abs(a) > top)
            if big.any():
                step, feat = (int(v) for v in np.argwhere(big)[0])
                raise DataError(
                    f"sequence {i}, step {step}, feature {feat}: value {a[step, feat]:g} is beyond "
                    f"{np.dtype(dtype).name}'s range (+-{top:.2g}); rescale the data (e.g. divide by a power of ten)"
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
    lengths = np.asarray(data.lengths)
    if lengths.ndim == 1 and lengths.size and lengths.strides == (0,):  # one length broadcast (a set read lazily)
        return lengths.size if lengths[0] == 0 else 0
    return int(np.sum(lengths == 0))

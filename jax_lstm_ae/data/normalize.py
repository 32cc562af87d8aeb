"""Per-feature normalisation fitted on training data; padding stays zero.

    norm = Normalizer.fit(train)          # training data only
    train_n, val_n = norm.apply(train), norm.apply(val)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jax_lstm_ae.data.core import F32_MAX, Dataset, DataError, check_finite, valid_mask
from jax_lstm_ae.data.lazy import Moments, is_lazy


def _max_abs(x, f: int) -> float:
    a = np.abs(np.asarray(x, np.float64)[..., f])
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else float("nan")


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
        if mode not in ("zscore", "minmax"):
            raise ValueError(f"unknown normalisation {mode!r}; choose zscore, minmax or none")
        if is_lazy(data):  # read in chunks: the same statistics, never the whole set at once
            return cls.from_moments(data.x.moments(), mode)
        valid = valid_mask(data.lengths, data.steps)
        v = data.x[valid].astype(np.float64)  # [n_valid, F]
        if not np.isfinite(v).all():
            check_finite(np.where(valid[..., None], data.x, 0.0))
        if v.shape[0] == 0:
            raise DataError(
                "every sequence has length 0; there is nothing to fit the normaliser on: "
                "give at least one sequence with a step"
            )
        if mode == "zscore":
            shift, scale = v.mean(0), v.std(0)
        else:
            shift, scale = v.min(0), v.max(0) - v.min(0)
        # A constant feature would divide by zero; leave it unscaled.
        scale = np.where(scale > 1e-8, scale, 1.0)
        for name, stat in (("shift", shift), ("scale", scale)):
            bad = ~(np.abs(stat) <= F32_MAX)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"data: feature {j} has values up to |x| = {_max_abs(v, j):.3g}, and its {mode} {name} "
                    f"({stat[j]:.3g}) is beyond float32's range (+-3.4e38); rescale the data (e.g. divide by "
                    "a power of ten) before normalising"
                )
        norm = cls(mode, shift.astype(np.float32), scale.astype(np.float32))
        norm._scaled(v)  # the training data itself must normalise to finite float32 values
        return norm

    @classmethod
    def from_moments(cls, m: Moments, mode: str = "zscore") -> "Normalizer":
        """The normaliser of statistics gathered in chunks (:meth:`LazyWindows.moments`,
        merged over processes): the values :meth:`fit` gives on the same steps."""
        f = m.mean.shape[0]
        if mode == "none":
            return cls("none", np.zeros(f, np.float32), np.ones(f, np.float32))
        if m.count == 0:
            raise DataError("there are no steps to fit the normaliser on; give at least one window")
        if mode == "zscore":
            shift, scale = m.mean, np.sqrt(m.m2 / m.count)
        else:
            shift, scale = np.asarray(m.lo, np.float64), np.asarray(m.hi, np.float64) - m.lo
        scale = np.where(scale > 1e-8, scale, 1.0)
        big = ~((np.abs(shift) <= F32_MAX) & (np.abs(scale) <= F32_MAX))
        if big.any():
            j = int(np.flatnonzero(big)[0])
            raise DataError(f"data: feature {j}'s {mode} statistics ({shift[j]:.3g}, {scale[j]:.3g}) are beyond "
                            "float32's range (+-3.4e38); rescale the data (e.g. divide by a power of ten)")
        return cls(mode, shift.astype(np.float32), scale.astype(np.float32))

    def _check(self, f: int) -> None:
        if f != self.shift.shape[0]:
            raise DataError(f"data has F={f} features but the normaliser was fitted on F={self.shift.shape[0]}; "
                            "give data with "
                            "the features it was fitted on")

    def _scaled(self, x, valid=None) -> np.ndarray:
        """(x - shift) / scale, refusing values that do not fit float32.

        Computed in x's precision (float32 for a Dataset, as always). Where that
        overflows (e.g. x - shift beyond 3.4e38 though the quotient is small)
        the value is redone in float64 and kept if it fits float32; otherwise
        DataError names the feature. NaN/inf already in x pass through."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            y = (x - self.shift) / self.scale
            lost = np.isfinite(x) & ~(np.abs(y) <= F32_MAX)
        if valid is not None:
            lost &= valid
        if not lost.any():
            return y
        with np.errstate(over="ignore", invalid="ignore"):
            y64 = (np.asarray(x, np.float64) - self.shift.astype(np.float64)) / self.scale.astype(np.float64)
            bad = lost & ~(np.abs(y64) <= F32_MAX)
        if bad.any():
            at = tuple(np.argwhere(bad)[0])
            j = int(at[-1])
            seen = x if valid is None else np.where(valid, x, 0)
            raise DataError(
                f"data: feature {j} has values up to |x| = {_max_abs(seen, j):.3g}, which normalise to "
                f"{float(y64[at]):.3g} ({self.mode}: shift {self.shift[j]:.3g}, scale {self.scale[j]:.3g}), beyond "
                "float32's range (+-3.4e38); rescale the data (e.g. divide by a power of ten) or fit the "
                "normaliser on data of the same scale"
            )
        return np.where(lost, y64, y)

    def apply(self, data):
        """Dataset -> Dataset, or array [..., F] -> array (no padding handling).

        Raises DataError when a normalised value would overflow float32."""
        if isinstance(data, Dataset) and is_lazy(data):  # normalised as it is read
            self._check(data.features)
            return data._replace(x=data.x.normalised(self.shift, self.scale)) if self.mode != "none" else data
        if isinstance(data, Dataset):
            self._check(data.features)
            valid = valid_mask(data.lengths, data.steps)[..., None]
            x = np.where(valid, self._scaled(data.x, valid), 0.0).astype(np.float32)
            return data._replace(x=x)
        arr = np.asarray(data, np.float32)
        self._check(arr.shape[-1])
        return self._scaled(arr).astype(np.float32)

    def invert(self, data, lengths=None):
        """Back to data units; array [N, T, F] with ``lengths`` keeps padding zero."""
        if isinstance(data, Dataset):
            return data._replace(x=self.invert(data.x, data.lengths))
        arr = np.asarray(data, np.float32)
        self._check(arr.shape[-1])
        out = arr * self.scale + self.shift
        if lengths is not None:
            out = np.where(valid_mask(lengths, arr.shape[1])[..., None], out, 0.0)
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(d["mode"], np.asarray(d["shift"], np.float32), np.asarray(d["scale"], np.float32))

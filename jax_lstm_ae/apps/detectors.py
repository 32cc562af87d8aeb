"""Anomaly detectors in the PyOD convention, and an sklearn-style encoder transformer.

    det = SeriesAnomalyDetector(contamination=0.01).fit(series[a:b])   # a normal stretch [N_t, F]
    scores = det.decision_function(series)       # [N_t] one finite score per row, higher = more anomalous
    flags = det.predict(series)                  # [N_t] 1 = anomaly (score > threshold_)
    det.save("runs/ecg"); det = load_detector("runs/ecg")

    det = SequenceAnomalyDetector().fit(x_normal, lengths)    # x[B, T, F] normal sequences
    det.decision_function(x, lengths)                         # [B]

After ``fit``: ``decision_scores_`` (scores of the training data),
``threshold_`` (their (1 - contamination) quantile) and ``labels_``
(``decision_scores_ > threshold_`` as 0/1), as in PyOD. ``raw=True`` skips
the autoencoder: the same pipeline scores the normalised windows themselves
(the baseline that shows what the LSTM adds).

:class:`SeriesAnomalyDetector` runs the label-free pipeline of
:mod:`jax_lstm_ae.apps.series` (period, pooling, detrending from the
training stretch), trains an autoencoder on 80 % of the stretch's windows,
and fits the window-level Mahalanobis scorer on the other 20 %; by default
five such models (``models``) score as one ensemble.
:class:`SequenceAnomalyDetector` does the same (one model) for a set of sequences
(validation split ``val_fraction``; window-level scorer for equal lengths,
step-level otherwise).

A saved detector is a run directory (``config.json`` and
``checkpoint.msgpack`` as ``jax-lstm-ae train`` writes them, plus
``detector.json`` and ``detector.npz``), so ``jax-lstm-ae detect --run DIR``
and ``info`` read it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jax_lstm_ae.apps.anomaly import fit_scorer, score_errors
from jax_lstm_ae.apps.detector_base import (DETECTOR_FILE, _as_3d, _Detector, _Params, _specs, _fit_to,
                                            is_detector_run)
from jax_lstm_ae.apps.series_detector import SERIES_MODELS, SeriesAnomalyDetector
from jax_lstm_ae.data import Dataset, split_sizes
from jax_lstm_ae.nn.spec import ModelSpec
from jax_lstm_ae.train.runner import run_training
from jax_lstm_ae.train.spec import TrainSpec

__all__ = ["SERIES_MODELS", "EncoderTransformer", "SequenceAnomalyDetector", "SeriesAnomalyDetector",
           "is_detector_run", "load_detector"]


def load_detector(run_dir):
    """The detector saved in ``run_dir`` by ``save`` (or ``jax-lstm-ae train --train-rows``)."""
    from jax_lstm_ae.train.checkpoint import RunError

    run_dir = Path(run_dir)
    path = run_dir / DETECTOR_FILE
    if not path.exists():
        raise RunError(f"{run_dir}: no {DETECTOR_FILE}; save a detector there first (det.save(DIR) or "
                       "`jax-lstm-ae train --train-rows a:b`)")
    meta = json.loads(path.read_text())
    cls = {"series": SeriesAnomalyDetector, "sequence": SequenceAnomalyDetector}.get(meta.get("kind"))
    if cls is None:
        raise RunError(f"{path}: unknown detector kind {meta.get('kind')!r}; "
                       "restore the file, or fit and save the detector again")
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["params"].items()}
    if cls is SeriesAnomalyDetector:
        params.setdefault("models", 1)  # saved before the ensemble: one model
    if params.get("specs") is not None:
        params["specs"] = (ModelSpec.from_dict(params["specs"]["model"]), TrainSpec.from_dict(params["specs"]["train"]))
    det = cls(**params)
    det._restore(run_dir, meta)
    return det



# ----------------------------------------------------------------- sequences
class SequenceAnomalyDetector(_Detector):
    """A set of sequences x[B, T, F] (padded, with lengths[B]): one score per sequence.

    Args:
      embedding_dim, hidden, decoder, steps, lr, batch_size: the autoencoder and its training.
      val_fraction: share of the (normal) training sequences held out to pick
        the best epoch and fit the scorer.
      contamination: share of the training sequences above ``threshold_``.
      raw: no autoencoder; score the normalised sequences themselves.
      specs: ``(ModelSpec, TrainSpec)`` to train with instead of the ones the
        arguments above make from the ``sequence`` preset (``features`` and a
        decoder's fixed T are set from the data) — e.g. the specs a
        ``jax-lstm-ae train`` run records, for the same model through the API.
    """

    _kind = "sequence"

    def __init__(self, embedding_dim: int = 32, hidden=(64,), decoder: str = "repeat", steps: int = 1500,
                 lr: float = 5e-3, batch_size: int = 16, val_fraction: float = 0.2, contamination: float = 0.1,
                 seed: int = 0, raw: bool = False, progress=False, specs: tuple[ModelSpec, TrainSpec] | None = None):
        self.specs = specs
        self.embedding_dim, self.hidden, self.decoder = embedding_dim, hidden, decoder
        self.steps, self.lr, self.batch_size = steps, lr, batch_size
        self.val_fraction, self.contamination, self.seed, self.raw, self.progress = (
            val_fraction, contamination, seed, raw, progress)

    def _dataset(self, X, lengths) -> Dataset:
        x = _as_3d(X)
        ls = np.full((x.shape[0],), x.shape[1], np.int32) if lengths is None else np.asarray(lengths, np.int32)
        if ls.shape != (x.shape[0],):
            raise ValueError(f"lengths must have shape (B,)=({x.shape[0]},), got {ls.shape}; "
                             "pass one length per sequence")
        return Dataset(x, ls)

    def fit(self, X, y=None, lengths=None):
        """Fit on normal sequences X[B, T, F] (y is ignored)."""
        ds = self._dataset(X, lengths)
        model_spec, train_spec = _specs("sequence", ds, embedding_dim=self.embedding_dim, hidden=self.hidden,
                                        decoder=self.decoder, steps=self.steps, lr=self.lr,
                                        batch_size=self.batch_size, val_fraction=self.val_fraction, seed=self.seed)
        if self.specs is not None:
            model_spec, train_spec = _fit_to(self.specs[0], ds), self.specs[1]
        if split_sizes(ds.n, train_spec.val_fraction)[1] < 1:
            raise ValueError("the scorer is fitted on held-out sequences; "
                             "pass at least 2 sequences and val_fraction > 0")
        _, val = self._train(model_spec, train_spec, ds)
        level = "window" if np.all(ds.lengths == ds.steps) else "step"
        self.scorer_ = fit_scorer(self._errors(val), val.lengths, method="mahalanobis", level=level)
        self._set_threshold(self.decision_function(ds.x, ds.lengths))
        return self

    def decision_function(self, X, lengths=None) -> np.ndarray:
        """One score per sequence, [B]; higher = more anomalous."""
        self._check_fitted()
        ds = self.normalizer_.apply(self._dataset(X, lengths))
        return score_errors(self.scorer_, self._errors(ds), ds.lengths)[0].astype(np.float64)

    def fit_predict(self, X, y=None, lengths=None) -> np.ndarray:
        return self.fit(X, y, lengths).labels_


# ----------------------------------------------------------------- transformer
class EncoderTransformer(_Params):
    """Latents as features, the sklearn way: ``fit`` trains an autoencoder on
    X[B, T, F] (or [B, T]; a flat [B, T * F] with ``features=F``), ``transform``
    returns z[B, E]. Works inside an ``sklearn.pipeline.Pipeline`` (sklearn
    itself is not needed to use it)."""

    def __init__(self, embedding_dim: int = 16, hidden=(32,), decoder: str = "repeat", steps: int = 500,
                 lr: float = 5e-3, batch_size: int = 16, val_fraction: float = 0.2, features: int = 1,
                 seed: int = 0):
        self.embedding_dim, self.hidden, self.decoder = embedding_dim, hidden, decoder
        self.steps, self.lr, self.batch_size, self.val_fraction = steps, lr, batch_size, val_fraction
        self.features, self.seed = features, seed

    def _x(self, X) -> np.ndarray:
        x = np.asarray(X, np.float32)
        if x.ndim == 2 and self.features > 1:
            if x.shape[1] % self.features:
                raise ValueError(f"{x.shape[1]} columns do not split into steps of features={self.features}; "
                                 f"pass T * {self.features} "
                                 "columns per row")
            x = x.reshape(x.shape[0], -1, self.features)
        return _as_3d(x)

    def fit(self, X, y=None):
        x = self._x(X)
        ds = Dataset(x, np.full((x.shape[0],), x.shape[1], np.int32))
        model_spec, train_spec = _specs("features", ds, embedding_dim=self.embedding_dim, hidden=self.hidden,
                                        decoder=self.decoder, steps=self.steps, lr=self.lr,
                                        batch_size=self.batch_size, val_fraction=self.val_fraction, seed=self.seed)
        result = run_training(model_spec, train_spec, ds)
        self.normalizer_, self.model_, self.params_, self.config_ = (result.normalizer, result.model, result.params,
                                                                      result.config)
        return self

    def transform(self, X) -> np.ndarray:
        from jax_lstm_ae.apps.probe import encode_all

        if not hasattr(self, "params_"):
            raise ValueError("this EncoderTransformer is not fitted yet; call fit(X) first")
        x = self.normalizer_.apply(self._x(X))
        return np.asarray(encode_all(self.model_, self.params_, x), np.float64)

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X, y).transform(X)

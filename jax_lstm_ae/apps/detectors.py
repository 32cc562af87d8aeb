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

import inspect
import json
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jax_lstm_ae.apps.anomaly import Gaussian, Scorer, error_vectors, fit_scorer, score_errors
from jax_lstm_ae.apps.series import SeriesPlan, plan_series, points_to_rows, prepare
from jax_lstm_ae.data import Dataset, Normalizer, sliding_windows, split_sizes
from jax_lstm_ae.nn.spec import DecoderKind, DecoderSpec, EncoderSpec, ModelSpec
from jax_lstm_ae.train.runner import TrainResult, run_training, split_data
from jax_lstm_ae.train.spec import TrainSpec, preset

DETECTOR_FILE = "detector.json"
ARRAYS_FILE = "detector.npz"


# ----------------------------------------------------------------- training
def _specs(preset_name: str, data: Dataset, *, embedding_dim: int, hidden, decoder: str, steps: int, lr: float,
           batch_size: int, val_fraction: float, seed: int, epochs: int | None = None):
    """The estimator's arguments as the named preset's specs, with ``steps``
    Adam steps (whole epochs; or ``epochs`` epochs) cosine-decayed from ``lr``."""
    kind = DecoderKind(decoder)
    fixed_t = kind in (DecoderKind.LATENT_AS_SEQUENCE, DecoderKind.FINAL_STATE)
    model_spec, train_spec = preset(preset_name, data.features, embedding_dim=int(embedding_dim),
                                    encoder=EncoderSpec(hidden=tuple(int(h) for h in hidden)),
                                    decoder=DecoderSpec(kind, steps=data.steps if fixed_t else None))
    budget = {"epochs": 1, "min_steps": int(steps)} if epochs is None else {"epochs": int(epochs), "min_steps": 0}
    train_spec = train_spec.replace(batch_size=int(batch_size), val_fraction=float(val_fraction), seed=int(seed),
                                    optimizer=train_spec.optimizer.replace(learning_rate=float(lr)), **budget)
    return model_spec, train_spec


def _fit_to(model_spec: ModelSpec, data: Dataset) -> ModelSpec:
    """``model_spec`` for ``data``: its F, and its T where the decoder fixes it."""
    d = model_spec.decoder
    if d.kind in (DecoderKind.LATENT_AS_SEQUENCE, DecoderKind.FINAL_STATE):
        d = d.replace(steps=data.steps)
    return model_spec.replace(features=data.features, decoder=d)


def _as_3d(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"expected sequences of shape (B, T, F) or (B, T), got {x.shape}; pass a batch of sequences")
    return x


def _as_2d(series) -> np.ndarray:
    s = np.asarray(series, np.float32)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise ValueError(f"expected one series of shape (N_t, F) or (N_t,), got {s.shape}; pass one row per time step")
    if not np.all(np.isfinite(s)):
        raise ValueError("the series holds NaN or inf; fill or drop those rows first")
    return s


# ----------------------------------------------------------------- base
class _Params:
    """sklearn's parameter protocol: the constructor's arguments, read and set by name."""

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self._param_names():
                raise ValueError(f"{type(self).__name__} has no parameter {k!r}; use one of "
                                 f"{self._param_names()}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


class _Detector(_Params):
    """predict / fit_predict / save shared by both detectors."""

    _kind = ""

    def _check_fitted(self) -> None:
        if not hasattr(self, "scorer_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(...) first")

    def _set_threshold(self, scores) -> None:
        if not 0.0 <= float(self.contamination) < 0.5:
            raise ValueError(f"contamination must lie in [0, 0.5), got {self.contamination}; pass e.g. 0.05")
        self.decision_scores_ = np.asarray(scores, np.float64)
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - float(self.contamination)))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)

    def predict(self, *args, **kwargs) -> np.ndarray:
        """0/1 per item (1 = anomaly): decision_function(...) > threshold_."""
        self._check_fitted()
        return (self.decision_function(*args, **kwargs) > self.threshold_).astype(int)

    def fit_predict(self, *args, **kwargs) -> np.ndarray:
        return self.fit(*args, **kwargs).labels_

    def _train(self, model_spec, train_spec, data: Dataset, workdir=None) -> tuple[Dataset, Dataset | None]:
        """The autoencoder through the runner (none with ``raw``): model_, params_, state_, config_,
        normalizer_; returns the runner's split, normalised, ``(train, val)``."""
        self.model_ = self.params_ = self.state_ = None
        self.config_ = {}
        if self.raw:
            self.normalizer_, train, val = split_data(data, train_spec, model_spec)
            return train, val
        r: TrainResult = run_training(model_spec, train_spec, data, progress=self.progress, workdir=workdir)
        self.model_, self.params_, self.state_, self.config_ = r.model, r.params, r.state, r.config
        self.config_["result"] = {"steps": int(r.state.step), "epochs_run": len(r.history)}
        self.normalizer_ = r.normalizer
        return r.train, r.val

    def _errors(self, windows: Dataset) -> np.ndarray:
        """Error vectors [B, T, F]: |x_hat - x| of the normalised data, or the data itself (raw)."""
        if self.model_ is None:
            return windows.x
        return error_vectors(self.model_, self.params_, windows.x, windows.lengths)

    # -------------------------------------------------------------- persistence
    def save(self, run_dir, *, data: dict | None = None) -> Path:
        """Write the detector as a run directory (see the module docstring);
        ``data``: where the training data came from (kept in config.json)."""
        from jax_lstm_ae.train.checkpoint import atomic_write

        self._check_fitted()
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.model_ is not None:
            self.config_ = {**self.config_, "data": {**self._data_config(), **(data or {})}}
            self._save_model(run_dir)
        g = self.scorer_.gaussian
        meta = {
            "kind": self._kind, "params": _jsonable(self.get_params()), "threshold": self.threshold_,
            "scorer": {"method": self.scorer_.method, "level": self.scorer_.level, "steps": self.scorer_.steps,
                       "shrinkage": g.shrinkage, "ridge": g.ridge},
            "normalizer": self.normalizer_.to_dict(), "data": {**self._data_config(), **(data or {})},
            **self._extra_meta(),
        }
        atomic_write(run_dir / DETECTOR_FILE, json.dumps(meta, indent=2) + "\n")
        tmp = run_dir / (ARRAYS_FILE + ".tmp.npz")
        np.savez(tmp, mean=g.mean, whiten=g.whiten, decision_scores=self.decision_scores_, **self._extra_arrays())
        tmp.replace(run_dir / ARRAYS_FILE)
        return run_dir

    def _save_model(self, run_dir: Path) -> None:
        """The last state (to resume from) and the params the detector scores with (the best epoch's)."""
        from jax_lstm_ae.train.checkpoint import save_run

        save_run(run_dir, self.state_, self.config_, self.normalizer_,
                 extra={"epoch": self.config_.get("result", {}).get("epochs_run")}, best_params=self.params_)

    def _extra_arrays(self) -> dict:
        return {}

    def _data_config(self) -> dict:
        return {}

    def _extra_meta(self) -> dict:
        return {}

    def _restore(self, run_dir: Path, meta: dict) -> None:
        arrays = np.load(run_dir / ARRAYS_FILE)
        s = meta["scorer"]
        g = Gaussian(arrays["mean"], arrays["whiten"], float(s["shrinkage"]), float(s["ridge"]))
        self.scorer_ = Scorer(s["method"], s["level"], g, s["steps"])
        self.normalizer_ = Normalizer.from_dict(meta["normalizer"])
        self.decision_scores_ = arrays["decision_scores"]
        self.threshold_ = float(meta["threshold"])
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        self.model_ = self.params_ = self.state_ = None
        self.config_ = {}
        if (run_dir / "config.json").exists() and not self.raw:
            from jax_lstm_ae.train.checkpoint import load_run

            run = load_run(run_dir)
            self.model_, self.params_, self.state_, self.config_ = run.model, run.params, run.state, run.config


def _jsonable(d: dict) -> dict:
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
    if d.get("specs") is not None:
        out["specs"] = {"model": d["specs"][0].to_dict(), "train": d["specs"][1].to_dict()}
    return out


def is_detector_run(run_dir) -> bool:
    return (Path(run_dir) / DETECTOR_FILE).exists()


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


# ----------------------------------------------------------------- series
# Models in a series detector's ensemble, chosen by bench/series_ensemble.py without labels: the smallest K whose
# two disjoint ensembles put their top row in the same place on every training series.
SERIES_MODELS = 5


class _Member(NamedTuple):
    """One model of a series detector's ensemble (its params: ``params_[k]``): its normaliser, scorer and score
    statistics."""

    normalizer: Normalizer
    scorer: Scorer
    mean: float = 0.0
    sd: float = 1.0


def _diagonal_terms(scorer: Scorer, errors) -> np.ndarray:
    """((e - mu) / sd)^2 per step and feature of error vectors [N, W, F] under a window Gaussian."""
    g = scorer.gaussian
    cov_diag = np.sum(np.linalg.inv(g.whiten.T) ** 2, axis=1)  # diag(Sigma), Sigma = (W W^T)^-1
    e = np.asarray(errors, np.float64).reshape(errors.shape[0], -1)
    return ((e - g.mean) ** 2 / cov_diag).reshape(errors.shape)


class SeriesAnomalyDetector(_Detector):
    """One long series: trained on a normal stretch, one score per row of any series.

    Args:
      window: W, pooled steps per window (one window spans about one cycle).
      stride: between window starts, in pooled steps.
      embedding_dim, hidden, decoder: the autoencoder (LSTM F -> hidden -> E, mirrored).
      steps, lr, batch_size: about ``steps`` Adam steps, cosine-decayed from ``lr``.
      epochs: train this many epochs instead (None: as many as ``steps`` needs).
      holdout: share of the training windows held out (at random) to pick the
        best epoch and fit the scorer.
      contamination: share of the training stretch's rows above ``threshold_``.
      raw: no autoencoder; score the normalised windows themselves.
      specs: ``(ModelSpec, TrainSpec)`` to train with instead of the ones the
        arguments above make from the ``series`` preset (``features`` and a
        decoder's fixed T are set from the windows; ``val_fraction`` is the holdout).
      models: K autoencoders from seeds ``seed`` .. ``seed + K - 1``, trained in
        one program (``train.many``), each with its own split and scorer. A
        window's score is the mean over the K of its standardised score,
        (s_k - mean_k) / sd_k, with mean_k and sd_k model k's scores of the
        training stretch's windows: one model's score varies from seed to seed
        far more than the mean of K does (``bench/series_ensemble.py``).
    """

    _kind = "series"

    def __init__(self, window: int = 64, stride: int = 1, embedding_dim: int = 16, hidden=(32,),
                 decoder: str = "repeat", steps: int = 1500, lr: float = 1e-2, batch_size: int = 32,
                 holdout: float = 0.2, contamination: float = 0.01, seed: int = 0, raw: bool = False,
                 progress=False, epochs: int | None = None, specs: tuple[ModelSpec, TrainSpec] | None = None,
                 models: int = SERIES_MODELS):
        self.window, self.stride, self.epochs, self.specs, self.models = window, stride, epochs, specs, models
        self.embedding_dim, self.hidden, self.decoder = embedding_dim, hidden, decoder
        self.steps, self.lr, self.batch_size = steps, lr, batch_size
        self.holdout, self.contamination, self.seed, self.raw, self.progress = holdout, contamination, seed, raw, progress

    def fit(self, X, y=None, *, plan: SeriesPlan | None = None, workdir=None):
        """Fit on a normal stretch X[N_t, F] (y is ignored: the pipeline reads no labels).

        ``plan``: reuse these preprocessing choices instead of making them from X.
        ``workdir``: train as a run folder there (checkpoints, metrics.jsonl), then ``save`` into it."""
        s = _as_2d(X)
        self.plan_ = plan or plan_series(s, window=self.window, stride=self.stride)
        windows, _ = sliding_windows(prepare(s, self.plan_), self.plan_.window, self.plan_.stride)
        ds = Dataset(windows, np.full((windows.shape[0],), windows.shape[1], np.int32))
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must lie in (0, 1), got {self.holdout}; pass e.g. 0.2")
        model_spec, train_spec = _specs("series", ds, embedding_dim=self.embedding_dim, hidden=self.hidden,
                                        decoder=self.decoder, steps=self.steps, lr=self.lr,
                                        batch_size=self.batch_size, val_fraction=self.holdout, seed=self.seed,
                                        epochs=self.epochs)
        if self.specs is not None:
            model_spec, train_spec = _fit_to(self.specs[0], ds), self.specs[1]
        n_fit, n_hold = split_sizes(ds.n, train_spec.val_fraction)
        if n_hold < 1:
            raise ValueError(f"the training stretch gives {ds.n} window(s), too few to hold any out; give more rows")
        if int(self.models) < 1:
            raise ValueError(f"models must be >= 1, got {self.models}; pass e.g. {SERIES_MODELS}")
        self.n_features_ = s.shape[1]
        self.data_counts_ = {"n": ds.n, "n_train": n_fit, "n_val": n_hold}  # windows
        self.members_ = None
        if self.raw or int(self.models) == 1:
            _, hold = self._train(model_spec, train_spec, ds, workdir)
            self.scorer_ = fit_scorer(self._errors(hold), method="mahalanobis", level="window")
        else:
            self._train_members(model_spec, train_spec, ds, workdir)
            self._standardise_members(ds)
        self._set_threshold(self.decision_function(s))
        return self

    def _train_members(self, model_spec, train_spec, ds: Dataset, workdir) -> None:
        """K models in one program; each member's scorer on its own held-out windows."""
        from jax_lstm_ae.train.many import run_training_many

        specs = [train_spec.replace(seed=train_spec.seed + k) for k in range(int(self.models))]
        r = run_training_many(model_spec, specs, ds, workdir=workdir, progress=self.progress)
        failed = [e for e in r.errors if e is not None]
        if failed:
            raise ValueError(f"{failed[0]}; pass a lower lr")
        self.model_, self.params_, self.state_, self.config_ = r.model, r.params, r.state, r.config
        self.config_["result"] = {"steps": int(np.max(np.asarray(r.state.step))),
                                  "epochs_run": max(len(h) for h in r.histories)}
        self.progress_ = {"epoch": self.config_["result"]["epochs_run"], "histories": r.histories,
                          "best_loss": r.best_losses, "errors": r.errors}  # what `info` shows per model
        self.members_ = []
        for k, spec in enumerate(specs):
            _, _, hold = split_data(ds, spec, model_spec)  # the split and normaliser model k trained with
            err = error_vectors(self.model_, r.pick(k), hold.x, hold.lengths)
            self.members_.append(_Member(r.normalizers[k], fit_scorer(err, method="mahalanobis", level="window")))
        self.normalizer_, self.scorer_ = self.members_[0].normalizer, self.members_[0].scorer

    def _standardise_members(self, ds: Dataset) -> None:
        """Each member's mean and sd of its scores on the training stretch's windows ``ds`` (not normalised)."""
        for k, m in enumerate(self.members_):
            w = score_errors(m.scorer, self._member_errors(k, m.normalizer.apply(ds)))[0]
            self.members_[k] = m._replace(mean=float(np.mean(w)), sd=float(np.std(w)) or 1.0)

    def windows(self, X):
        """X[N_t, F] -> (normalised windows Dataset [N, W, F], starts [N] in pooled steps); an ensemble's
        in its first model's normalisation (each model's own: ``prepared_windows`` and ``members_[k].normalizer``)."""
        ds, starts = self.prepared_windows(X)
        return self.normalizer_.apply(ds), starts

    def prepared_windows(self, X):
        """X[N_t, F] -> (windows Dataset [N, W, F] as the plan makes them, before normalisation; starts [N])."""
        self._check_fitted()
        s = _as_2d(X)
        if s.shape[1] != self.n_features_:
            raise ValueError(f"the series has F={s.shape[1]} features but the detector was fitted on "
                             f"F={self.n_features_}; pick the same columns")
        windows, starts = sliding_windows(prepare(s, self.plan_), self.plan_.window, self.plan_.stride)
        return Dataset(windows, np.full((windows.shape[0],), windows.shape[1], np.int32)), starts

    def score_windows(self, X):
        """(window scores [N], starts [N] in pooled steps, error vectors [N, W, F]; with K models [K, N, W, F])."""
        if not self.members_:
            ds, starts = self.windows(X)
            err = self._errors(ds)
            return score_errors(self.scorer_, err)[0], starts, err
        ds, starts = self.prepared_windows(X)
        errs = [self._member_errors(k, m.normalizer.apply(ds)) for k, m in enumerate(self.members_)]
        w = np.mean([(score_errors(m.scorer, e)[0] - m.mean) / m.sd for m, e in zip(self.members_, errs)], axis=0)
        return w, starts, np.stack(errs)

    def member_params(self, k: int):
        """Model k's params of an ensemble (``params_`` holds the K stacked)."""
        return jax.tree.map(lambda a: a[k], self.params_)

    def _member_errors(self, k: int, windows: Dataset) -> np.ndarray:
        return error_vectors(self.model_, self.member_params(k), windows.x, windows.lengths)

    def decision_function(self, X) -> np.ndarray:
        """One finite score per row of X[N_t, F], [N_t]; higher = more anomalous."""
        w, starts, _ = self.score_windows(X)
        return points_to_rows(w, starts, self.plan_, _as_2d(X).shape[0])

    def contributions(self, errors) -> np.ndarray:
        """Per step and feature share of each window's score, [N, W, F]:
        ((e - mu) / sd)^2 with the scorer's per-dimension sd, summing over (W, F)
        to the diagonal part of the Mahalanobis distance. With K models
        (errors [K, N, W, F]): the mean over the K of each one's, divided by
        its score's sd, as the ensemble's score is made."""
        self._check_fitted()
        if self.members_:
            return np.mean([_diagonal_terms(m.scorer, e) / m.sd for m, e in zip(self.members_, errors)], axis=0)
        return _diagonal_terms(self.scorer_, errors)

    def _data_config(self) -> dict:
        return {"format": "series", "window": self.plan_.window, "stride": self.plan_.stride,
                "steps": self.plan_.window, "features": self.n_features_, **self.data_counts_}

    def _extra_meta(self) -> dict:
        out = {"plan": self.plan_._asdict(), "n_features": self.n_features_}
        if self.members_:
            out["members"] = [{"mean": m.mean, "sd": m.sd, "shrinkage": m.scorer.gaussian.shrinkage,
                               "ridge": m.scorer.gaussian.ridge} for m in self.members_]
        return out

    def _extra_arrays(self) -> dict:
        if not self.members_:
            return {}
        return {"member_mean": np.stack([m.scorer.gaussian.mean for m in self.members_]),
                "member_whiten": np.stack([m.scorer.gaussian.whiten for m in self.members_])}

    def _save_model(self, run_dir: Path) -> None:
        """K models: a run folder of many models (``train.many_run``), as `train --seeds K` writes."""
        if not self.members_:
            return super()._save_model(run_dir)
        from jax_lstm_ae.train.checkpoint import CHECKPOINT_FILE, save_checkpoint
        from jax_lstm_ae.train.many_run import write_config

        save_checkpoint(run_dir / CHECKPOINT_FILE, self.state_, self.progress_, best_params=self.params_)
        write_config(run_dir, self.config_, [m.normalizer for m in self.members_])

    def _restore(self, run_dir, meta) -> None:
        self.members_ = None
        members = meta.get("members")
        if not members:
            super()._restore(run_dir, meta)
        else:
            from jax_lstm_ae.train.many_run import load_many

            arrays = np.load(run_dir / ARRAYS_FILE)
            many = load_many(run_dir)
            self.model_, self.params_, self.state_, self.config_ = many.model, many.params, many.state, many.config
            self.progress_ = many.extra
            s = meta["scorer"]
            self.members_ = [
                _Member(many.normalizers[k],
                        Scorer(s["method"], s["level"], Gaussian(arrays["member_mean"][k], arrays["member_whiten"][k],
                                                                 float(m["shrinkage"]), float(m["ridge"])), s["steps"]),
                        float(m["mean"]), float(m["sd"]))
                for k, m in enumerate(members)]
            self.normalizer_, self.scorer_ = self.members_[0].normalizer, self.members_[0].scorer
            self.decision_scores_ = arrays["decision_scores"]
            self.threshold_ = float(meta["threshold"])
            self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        self.plan_ = SeriesPlan(**meta["plan"])
        self.n_features_ = int(meta["n_features"])
        self.data_counts_ = {k: meta.get("data", {}).get(k) for k in ("n", "n_train", "n_val")}


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

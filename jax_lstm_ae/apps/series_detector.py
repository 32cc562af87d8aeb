"""The series pipeline as a detector: :class:`SeriesAnomalyDetector`, trained
on a normal stretch of one long series, one score per row of any series (an
ensemble of ``models`` autoencoders by default). Re-exported by
:mod:`jax_lstm_ae.apps.detectors`."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jax_lstm_ae.apps.anomaly import Gaussian, Scorer, error_vectors, fit_scorer, score_errors
from jax_lstm_ae.apps.detector_base import _Detector, _as_2d, _fit_to, _specs
from jax_lstm_ae.apps.series import SeriesPlan, plan_series, points_to_rows, prepare
from jax_lstm_ae.data import Dataset, Normalizer, sliding_windows, split_sizes
from jax_lstm_ae.nn.spec import ModelSpec
from jax_lstm_ae.train.runner import split_data
from jax_lstm_ae.train.spec import TrainSpec


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
        ds, starts = self._plan_windows(s)
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
            self._set_threshold(self.decision_function(s))
        else:
            self._train_members(model_spec, train_spec, ds, workdir)
            # the training windows' scores fix each member's statistics and then the threshold: scored once
            self._set_threshold(points_to_rows(self._standardise_members(ds), starts, self.plan_, s.shape[0]))
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

    def _standardise_members(self, ds: Dataset) -> np.ndarray:
        """Each member's mean and sd of its scores on the training stretch's windows ``ds`` (not normalised);
        returns the ensemble's scores of those windows [N]."""
        scores = [score_errors(m.scorer, self._member_errors(k, m.normalizer.apply(ds)))[0]
                  for k, m in enumerate(self.members_)]
        self.members_ = [m._replace(mean=float(np.mean(w)), sd=float(np.std(w)) or 1.0)
                         for m, w in zip(self.members_, scores)]
        return self._ensemble(scores)

    def _ensemble(self, scores) -> np.ndarray:
        """K members' window scores -> the mean of their standardised scores, [N]."""
        return np.mean([(w - m.mean) / m.sd for m, w in zip(self.members_, scores)], axis=0)

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
        return self._plan_windows(s)

    def _plan_windows(self, s: np.ndarray):
        """s[N_t, F] -> (the plan's windows Dataset [N, W, F], every one full length; starts [N])."""
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
        w = self._ensemble([score_errors(m.scorer, e)[0] for m, e in zip(self.members_, errs)])
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

    def _load_model(self, run_dir: Path, meta: dict, arrays) -> None:
        """K models: the run folder of many models and each member's scorer and statistics."""
        self.members_ = None
        members = meta.get("members")
        if not members:
            return super()._load_model(run_dir, meta, arrays)
        from jax_lstm_ae.train.many_run import load_many

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

    def _restore(self, run_dir, meta) -> None:
        super()._restore(run_dir, meta)
        self.plan_ = SeriesPlan(**meta["plan"])
        self.n_features_ = int(meta["n_features"])
        self.data_counts_ = {k: meta.get("data", {}).get(k) for k in ("n", "n_train", "n_val")}

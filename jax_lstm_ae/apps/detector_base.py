"""The detectors' shared base: sklearn's parameter protocol, PyOD's
predict / fit_predict / threshold, and a detector saved as a run directory
(``detector.json`` and ``detector.npz`` beside the run's ``config.json`` and
checkpoint). The detectors themselves are in :mod:`jax_lstm_ae.apps.detectors`
and :mod:`jax_lstm_ae.apps.series_detector`."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

from jax_lstm_ae.apps.anomaly import Gaussian, Scorer, error_vectors
from jax_lstm_ae.data import Dataset, Normalizer
from jax_lstm_ae.nn.spec import DecoderKind, DecoderSpec, EncoderSpec, ModelSpec
from jax_lstm_ae.train.runner import TrainResult, run_training, split_data
from jax_lstm_ae.train.spec import preset

DETECTOR_FILE = "detector.json"
ARRAYS_FILE = "detector.npz"


# ----------------------------------------------------------------- training
def _specs(preset_name: str, data: Dataset, *, embedding_dim: int, hidden, decoder: str, steps: int, lr: float,
           batch_size: int, val_fraction: float, seed: int, epochs: int | None = None):
    """The estimator's arguments as the named preset's specs, with ``steps``
    Adam steps (whole epochs; or ``epochs`` epochs) cosine-decayed from ``lr``."""
    kind = DecoderKind(decoder)
    model_spec, train_spec = preset(preset_name, data.features, embedding_dim=int(embedding_dim),
                                    encoder=EncoderSpec(hidden=tuple(int(h) for h in hidden)),
                                    decoder=DecoderSpec(kind, steps=data.steps if kind.fixes_t else None))
    budget = {"epochs": 1, "min_steps": int(steps)} if epochs is None else {"epochs": int(epochs), "min_steps": 0}
    train_spec = train_spec.replace(batch_size=int(batch_size), val_fraction=float(val_fraction), seed=int(seed),
                                    optimizer=train_spec.optimizer.replace(learning_rate=float(lr)), **budget)
    return model_spec, train_spec


def _fit_to(model_spec: ModelSpec, data: Dataset) -> ModelSpec:
    """``model_spec`` for ``data``: its F, and its T where the decoder fixes it."""
    d = model_spec.decoder
    if d.kind.fixes_t:
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
        self._load_model(run_dir, meta, arrays)

    def _load_model(self, run_dir: Path, meta: dict, arrays) -> None:
        """The trained model as ``_save_model`` wrote it (none with ``raw``)."""
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


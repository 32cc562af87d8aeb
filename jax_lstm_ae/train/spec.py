"""Training as a value: the optimiser, split, normalisation, budget and seed,
frozen and validated like the model's spec (``nn.spec``), and the named
presets that pair a model with its training.

    model_spec, train_spec = preset("series", features=2)
    train_spec = dataclasses.replace(train_spec, seed=3)
    result = run_training(model_spec, train_spec, data)        # train.runner

The budget: ``epochs`` epochs (default 20) but at least ``min_steps`` steps
(default 1,000 when ``epochs`` is not given, else 0), so a small set trains
long enough to learn and a large one keeps its epochs (``budget_epochs``).
"""

from __future__ import annotations

import dataclasses
import enum

from jax_lstm_ae.nn.spec import EncoderSpec, CellSpec, ModelSpec, Spec, SpecError

DEFAULT_EPOCHS = 20
DEFAULT_MIN_STEPS = 1000


class Schedule(str, enum.Enum):
    CONSTANT = "constant"
    COSINE = "cosine"  # warmup, then cosine decay to 1 % over the whole budget


class Normalize(str, enum.Enum):
    AUTO = "auto"  # zscore, or none for the sigmoid head (binary data)
    ZSCORE = "zscore"
    MINMAX = "minmax"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class OptimizerSpec(Spec):
    """Adam (AdamW with ``weight_decay``), global-norm clipping, a schedule."""

    learning_rate: float = 1e-2
    schedule: Schedule = Schedule.CONSTANT
    warmup_steps: int = 0
    clip_norm: float = 1.0  # 0: no clipping
    weight_decay: float = 0.0
    _name = "train.optimizer"

    def _check(self) -> None:
        w = self._name
        if not 0.0 < self.learning_rate < float("inf"):
            raise SpecError(f"{w}.learning_rate: must be a finite number > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_steps <= 10**9:
            raise SpecError(f"{w}.warmup_steps: must lie in [0, 1e9], got {self.warmup_steps}")
        for name in ("clip_norm", "weight_decay"):
            v = getattr(self, name)
            if not 0.0 <= v < float("inf"):
                raise SpecError(f"{w}.{name}: must be a finite number >= 0, got {v}")


@dataclasses.dataclass(frozen=True)
class TrainSpec(Spec):
    """Everything but the model that decides the trained parameters."""

    batch_size: int = 32
    epochs: int | None = None  # None: DEFAULT_EPOCHS, with min_steps defaulting to DEFAULT_MIN_STEPS
    min_steps: int | None = None  # at least this many steps (whole epochs)
    patience: int | None = None  # early stopping: epochs without a better validation loss
    val_fraction: float = 0.2  # share of the sequences held out (best epoch, scorers)
    normalize: Normalize = Normalize.AUTO
    seed: int = 0  # parameters, split, batch order
    input_noise: float = 0.0  # denoising: Gaussian noise of this std on the encoder's input
    step_dropout: float = 0.0  # denoising: each valid step zeroed with this probability
    optimizer: OptimizerSpec = OptimizerSpec()
    _name = "train"

    # What a resumed run may change: they are honoured and recorded.
    RESUMABLE = ("epochs", "min_steps", "patience")

    def _check(self) -> None:
        for name in ("batch_size", "epochs", "patience"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise SpecError(f"train.{name}: must be >= 1, got {v}")
        if self.min_steps is not None and not 0 <= self.min_steps <= 10**9:
            raise SpecError(f"train.min_steps: must lie in [0, 1e9], got {self.min_steps}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise SpecError(f"train.val_fraction: must lie in [0, 1), got {self.val_fraction}")
        if not 0 <= self.seed < 2**31:
            raise SpecError(f"train.seed: must lie in [0, 2**31), got {self.seed}")
        if not 0.0 <= self.input_noise < float("inf"):
            raise SpecError(f"train.input_noise: a standard deviation >= 0, got {self.input_noise}")
        if not 0.0 <= self.step_dropout < 1.0:
            raise SpecError(f"train.step_dropout: a rate in [0, 1), got {self.step_dropout}")
        if self.input_noise and self.step_dropout:
            raise SpecError("train.step_dropout: input_noise and step_dropout are two kinds of corruption; give only "
                            "one of them, not both")

    def budget(self, n_train: int) -> tuple[int, int, int]:
        """``(batch, steps_per_epoch, epochs)`` for ``n_train`` training sequences.
        Training drops the last partial batch (one shape, one compilation)."""
        batch = min(self.batch_size, max(n_train, 1))
        spe = max(n_train // batch, 1)
        epochs = DEFAULT_EPOCHS if self.epochs is None else self.epochs
        return batch, spe, max(epochs, -(-self.floor_steps // spe))

    @property
    def floor_steps(self) -> int:
        """The steps always trained: ``min_steps``, or ``DEFAULT_MIN_STEPS``
        when neither it nor ``epochs`` is given. Early stopping (``patience``)
        counts epochs without a better validation loss only from here on."""
        return self.min_steps if self.min_steps is not None else (DEFAULT_MIN_STEPS if self.epochs is None else 0)


# ----------------------------------------------------------------- presets
# name -> (model fields, train fields). "cli" is what `jax-lstm-ae train` gives;
# the others are the estimators' (apps.detectors) and the series pipeline's.
# "cli"'s fields were chosen by bench/defaults.py (TRAIN data only): the mean readout and
# E = 64 (latents that separate classes; the last state was near chance on long series), and a
# budget of at least CLI_MIN_STEPS steps, up to CLI_EPOCHS epochs, ended by early stopping
# on the validation loss (CLI_PATIENCE epochs, counted from the minimum on).
# `train` pools time by d = round(T / CLI_POOL_STEPS), at least 1 (--pool auto, the default where the model can
# pool; --pool 1: none): chosen by bench/representation.py's TRAIN CV accuracy on the choose sets (RESULTS.md).
CLI_POOL_STEPS = 64
CLI_MIN_STEPS = 2000
CLI_EPOCHS = 100
CLI_PATIENCE = 10
_PRESETS: dict[str, tuple[dict, dict]] = {
    "cli": ({"embedding_dim": 64, "encoder": EncoderSpec(pooling="mean")},
            {"epochs": CLI_EPOCHS, "min_steps": CLI_MIN_STEPS, "patience": CLI_PATIENCE}),
    "series": ({"embedding_dim": 16, "encoder": EncoderSpec(hidden=(32,)), "cell": CellSpec(init="uniform")},
               {"epochs": 1, "min_steps": 1500, "normalize": "zscore",
                "optimizer": OptimizerSpec(learning_rate=1e-2, schedule="cosine")}),
    "sequence": ({"embedding_dim": 32, "encoder": EncoderSpec(hidden=(64,)), "cell": CellSpec(init="uniform")},
                 {"batch_size": 16, "epochs": 1, "min_steps": 1500, "normalize": "zscore",
                  "optimizer": OptimizerSpec(learning_rate=5e-3, schedule="cosine")}),
    "features": ({"embedding_dim": 16, "encoder": EncoderSpec(hidden=(32,)), "cell": CellSpec(init="uniform")},
                 {"batch_size": 16, "epochs": 1, "min_steps": 500, "normalize": "zscore",
                  "optimizer": OptimizerSpec(learning_rate=5e-3, schedule="cosine")}),
}
PRESETS = tuple(_PRESETS)


def preset(name: str, features: int, **model_fields) -> tuple[ModelSpec, TrainSpec]:
    """The named pair of specs for data with ``features`` F (``model_fields``
    override the model's, e.g. ``decoder=DecoderSpec(...)``)."""
    if name not in _PRESETS:
        raise SpecError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    m, t = _PRESETS[name]
    return ModelSpec(features=features, **{**m, **model_fields}), TrainSpec(**t)


def auto_pool(steps: int) -> int:
    """``--pool auto``'s d for sequences of T = ``steps``: round(T / CLI_POOL_STEPS), at least 1, so that
    the LSTM runs over about 64 pooled steps (bench/defaults.py's candidate mean_pool_auto)."""
    return max(1, round(int(steps) / CLI_POOL_STEPS))

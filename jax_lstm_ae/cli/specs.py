"""The train command's model and training flags ARE the specs' fields.

One table maps each flag to one field of ``ModelSpec`` or ``TrainSpec``;
the parser, the defaults shown in ``--help``, the specs a run is built from
and the ``--resume`` rule are all read from it, so no flag can be silently
ignored and no default lives in two places.

    model_spec, train_spec = apply_flags(args, *preset("cli", F), fields={"head.kind": "sigmoid"})
    check_resume(args, saved_model_spec, saved_train_spec)   # refuses any change but the resumable fields
"""

from __future__ import annotations

import argparse
import enum
from typing import NamedTuple

from jax_lstm_ae.cli import checks
from jax_lstm_ae.cli.args import int_list
from jax_lstm_ae.cli.checks import integer, number, positive
from jax_lstm_ae.cli.shell import fail
from jax_lstm_ae.nn.spec import Activation, Backend, DecoderKind, Init, ModelSpec, Pooling, SpecError, plain
from jax_lstm_ae.train.spec import CLI_EPOCHS, CLI_MIN_STEPS, Normalize, Schedule, TrainSpec


def pool_arg(text: str) -> str | int:
    """--pool: ``auto`` or an integer >= 1."""
    return "auto" if text == "auto" else positive(text)


def _values(e: type[enum.Enum], *skip) -> tuple[str, ...]:
    return tuple(m.value for m in e if m.value not in skip)


class Flag(NamedTuple):
    """``--name`` sets ``path`` (dotted) of the ``spec`` ("model" or "train")."""

    dest: str
    spec: str
    path: str
    kw: dict
    help: str


MODEL_FLAGS = (
    Flag("decoder", "model", "decoder.kind", {"choices": _values(DecoderKind, "final_state")}, "decoder strategy"),
    Flag("embedding_dim", "model", "embedding_dim", {"type": positive, "metavar": "E"}, "latent size E"),
    Flag("hidden", "model", "encoder.hidden", {"type": int_list, "metavar": "H[,H...]|none"},
         "encoder LSTM sizes before the E-sized one, e.g. 64 (F -> 64 -> E); the decoder mirrors them"),
    Flag("bidirectional", "model", "encoder.bidirectional", {"action": argparse.BooleanOptionalAction},
         "bidirectional encoder"),
    Flag("pooling", "model", "encoder.pooling", {"choices": _values(Pooling)},
         "encoder readout: last valid state, mean of the top layer's outputs over valid steps, or both"),
    Flag("pool", "model", "pool", {"type": pool_arg, "metavar": "D|auto"},
         "time pooling: the encoder reads the means of D consecutive steps and each decoded step stands for D "
         "input steps (reconstructions and errors stay at the input's resolution); auto (the default): round(T / 64), "
         "at least 1, from the training data's T, where the model can pool (not tokens, nor decoders that fix T); "
         "1: none"),
    Flag("teacher_prob", "model", "decoder.teacher_prob", {"type": number("[0,1]"), "metavar": "P"},
         "conditional decoder: scheduled-sampling probability in [0, 1]"),
    Flag("head", "model", "head.kind", {"choices": ("auto", "linear", "sigmoid")},
         "output layer: linear, or sigmoid (binary cross-entropy) for 0/1 data; auto: sigmoid for 0/1 data"),
    Flag("loss", "model", "head.loss", {"choices": ("mse", "mae")}, "the linear head's per-step error"),
    Flag("init", "model", "cell.init", {"choices": _values(Init)},
         "LSTM weight init: orthogonal recurrent weights (Keras) or U(+-1/sqrt(H)) (PyTorch)"),
    Flag("activation", "model", "cell.activation", {"choices": _values(Activation)},
         "every LSTM cell's activation, on the candidate and the cell output (Keras's names)"),
    Flag("recurrent_activation", "model", "cell.recurrent_activation", {"choices": _values(Activation)},
         "every LSTM cell's gate activation (Keras's names; hard_sigmoid: relu6(x + 3) / 6)"),
    Flag("backend", "model", "backend", {"choices": _values(Backend)},
         "how the LSTM stacks run: auto picks the fastest for the platform when the run starts (recorded); "
         "fast_bf16: the CPU's fast backend with bfloat16 matmul operands (float32 sums and state)"),
)
TRAIN_FLAGS = (
    Flag("epochs", "train", "epochs", {"type": positive},
         f"at most this many epochs, raised to reach --min-steps (default {CLI_EPOCHS}; with --resume: the run's)"),
    Flag("min_steps", "train", "min_steps", {"type": integer(">=0"), "metavar": "N"},
         f"train at least N steps, adding epochs; early stopping waits for them (default {CLI_MIN_STEPS} without "
         "--epochs, 0 with it)"),
    Flag("batch_size", "train", "batch_size", {"type": positive}, "sequences per training step"),
    Flag("lr", "train", "optimizer.learning_rate", {"type": number(">0", example="0.001")},
         "peak learning rate (Adam)"),
    Flag("schedule", "train", "optimizer.schedule", {"choices": _values(Schedule)}, "learning-rate schedule"),
    Flag("warmup_steps", "train", "optimizer.warmup_steps", {"type": integer(">=0", maximum=10**9)},
         "steps of linear warmup"),
    Flag("clip_norm", "train", "optimizer.clip_norm", {"type": number(">=0")}, "global gradient-norm clip (0: none)"),
    Flag("weight_decay", "train", "optimizer.weight_decay", {"type": number(">=0")}, "AdamW weight decay"),
    Flag("input_noise", "train", "input_noise", {"type": number(">=0"), "metavar": "STD"},
         "denoising: the encoder reads the normalised data plus Gaussian noise of this std while training"),
    Flag("step_dropout", "train", "step_dropout", {"type": number("[0,1)"), "metavar": "RATE"},
         "denoising: the encoder reads the data with each step zeroed at this rate while training"),
    Flag("val_fraction", "train", "val_fraction", {"type": number("[0,1)")},
         "share of the sequences held out for the best epoch, in [0, 1)"),
    Flag("patience", "train", "patience", {"type": positive},
         "early stopping: epochs without a better validation loss, counted once --min-steps are done"),
    Flag("normalize", "train", "normalize", {"choices": _values(Normalize)},
         "per-feature normalisation fitted on the training split (auto: zscore, none for the sigmoid head)"),
    Flag("seed", "train", "seed", {"type": checks.seed}, f"random seed in [0, {checks.SEED_MAX}]"),
)
FLAGS = MODEL_FLAGS + TRAIN_FLAGS


def option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def get_path(spec, path: str):
    for part in path.split("."):
        spec = getattr(spec, part)
    return spec


def _shown(value) -> str:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return str(value)


def add_spec_flags(parser: argparse.ArgumentParser, defaults: tuple[ModelSpec, TrainSpec]) -> None:
    """The model and training groups; each help ends with the default the spec gives."""
    for title, flags in (("model", MODEL_FLAGS), ("training", TRAIN_FLAGS)):
        g = parser.add_argument_group(title)
        for f in flags:
            value = get_path(defaults[0] if f.spec == "model" else defaults[1], f.path)
            shown = "" if f.dest in ("epochs", "min_steps", "head", "pool") else f" (default {_shown(value)})"
            g.add_argument(option(f.dest), dest=f.dest, default=None, help=f.help + shown, **f.kw)


def given(args: argparse.Namespace) -> list[Flag]:
    """The spec flags given on the command line."""
    return [f for f in FLAGS if getattr(args, f.dest, None) is not None]


def _flag_error(e: SpecError, flags) -> str:
    """A spec's message in the command line's words: the flag, not the field."""
    msg = str(e)
    for f in flags:
        field = f"{f.spec}.{f.path}"
        if msg.startswith(field + ":"):
            return f"{option(f.dest)}{msg[len(field):]}"
    return msg


def _set(d: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for p in parents:
        d = d[p]
    d[last] = value


def apply_flags(args: argparse.Namespace, model_spec: ModelSpec, train_spec: TrainSpec,
                fields: dict | None = None) -> tuple[ModelSpec, TrainSpec]:
    """``(model_spec, train_spec)`` with every given flag's field set, then
    ``fields`` (dotted model paths the command decides, e.g. ``head.kind``
    for ``--head auto`` or ``decoder.steps`` from the data); checked once, at
    the end, and a bad value is reported under its flag's name."""
    dicts = {"model": model_spec.to_dict(), "train": train_spec.to_dict()}
    flags = [f for f in given(args) if not (f.dest in ("head", "pool") and getattr(args, f.dest) == "auto")]
    for f in flags:
        _set(dicts[f.spec], f.path, plain(getattr(args, f.dest)))
    for path, value in (fields or {}).items():
        _set(dicts["model"], path, plain(value))
    if getattr(args, "loss", None) is None:
        dicts["model"]["head"]["loss"] = None  # the head's own loss
    if getattr(args, "epochs", None) is not None:  # --epochs alone is exact, whatever minimum and patience the preset has
        if getattr(args, "min_steps", None) is None:
            dicts["train"]["min_steps"] = None
        if getattr(args, "patience", None) is None:
            dicts["train"]["patience"] = None
    try:
        return ModelSpec.from_dict(dicts["model"]), TrainSpec.from_dict(dicts["train"])
    except SpecError as e:
        msg = _flag_error(e, FLAGS)
        fail(msg if "; " in msg else msg + "; change the flag's value")


def check_resume(args: argparse.Namespace, model_spec: ModelSpec, train_spec: TrainSpec, out) -> dict:
    """The resumable fields the flags change (``TrainSpec.RESUMABLE``); any
    other flag whose value differs from the run's refuses the resume."""
    changes = {}
    for f in given(args):
        saved = get_path(model_spec if f.spec == "model" else train_spec, f.path)
        value = getattr(args, f.dest)
        if f.spec == "train" and f.path in TrainSpec.RESUMABLE:
            changes[f.path] = value
            continue
        if f.dest == "head" and value == "auto":
            continue
        same = _shown(saved) == _shown(value) if not isinstance(saved, float) else float(value) == saved
        if not same:
            keep = ", ".join(option(r) for r in TrainSpec.RESUMABLE)  # the fields' flags bear their names
            given_ = option(f.dest) if isinstance(value, bool) else f"{option(f.dest)} {_shown(value)}"
            fail(f"{given_} cannot change when resuming (the run has {_shown(saved)}); "
                 f"--resume may change only {keep}; drop {option(f.dest)}, or train a new run with another "
                 f"--out than {out}")
    return changes

"""What `train` decides before anything is written: a new run's config,
model and data (:func:`fresh_setup`), or the run to continue with the flags
--resume may change (:func:`resume_setup`, :func:`check_resume_flags`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from jax_lstm_ae.cli.args import DATA_KEYS, check_fits_model, data_spec, load_data, normal_only
from jax_lstm_ae.cli.outputs import inputs_of, plan_run_dir
from jax_lstm_ae.cli.shell import fail


def _is_binary(data) -> bool:
    valid = np.arange(data.steps)[None, :] < data.lengths[:, None]
    v = data.x[valid]
    return bool(v.size) and bool(np.all((v == 0) | (v == 1)))


# Training flags and their defaults. They are None on the parser, so --resume
# can tell a flag that was given from one that was not (see check_resume_flags).
TRAIN_DEFAULTS: dict[str, Any] = {
    "decoder": "repeat", "embedding_dim": 32, "hidden": [], "init": "orthogonal", "head": "auto",
    "bidirectional": False, "pooling": "last", "teacher_prob": 0.0, "batch_size": 32, "lr": 1e-2,
    "schedule": "constant", "warmup_steps": 0, "clip_norm": 1.0, "weight_decay": 0.0, "input_noise": 0.0,
    "step_dropout": 0.0, "val_fraction": 0.2, "normalize": "auto", "seed": 0, "activation": "tanh",
    "recurrent_activation": "sigmoid",
}  # fmt: skip
# What --resume may change: they are honoured and recorded in config.json.
RESUMABLE = ("epochs", "patience")


def _recorded(config: dict, dest: str):
    """The value a run recorded for the training flag ``dest`` (as the flag would give it)."""
    m, o, t, d = (config.get(k) or {} for k in ("model", "optimizer", "train", "data"))
    table = {
        "decoder": lambda: m["decoder"], "embedding_dim": lambda: m["embedding_dim"], "hidden": lambda: m["hidden"],
        "init": lambda: m.get("init", "uniform"), "head": lambda: m["head"],
        "bidirectional": lambda: bool(m.get("bidirectional")), "pooling": lambda: m.get("pooling", "last"),
        "teacher_prob": lambda: m.get("teacher_prob", 0.0), "batch_size": lambda: t["batch_size"],
        "lr": lambda: o["learning_rate"], "schedule": lambda: "cosine" if o.get("decay_steps") else "constant",
        "warmup_steps": lambda: o.get("warmup_steps", 0), "clip_norm": lambda: o.get("clip_norm") or 0.0,
        "weight_decay": lambda: o.get("weight_decay", 0.0), "input_noise": lambda: t.get("input_noise") or 0.0,
        "step_dropout": lambda: t.get("step_dropout") or 0.0, "val_fraction": lambda: t["val_fraction"],
        "normalize": lambda: t["normalize"], "seed": lambda: t["seed"],
        "activation": lambda: m.get("activation", "tanh"),
        "recurrent_activation": lambda: m.get("recurrent_activation", "sigmoid"),
    }  # fmt: skip
    if dest in table:
        try:
            return table[dest]()
        except KeyError:
            return None
    if dest == "data":
        return d.get("source")
    return d.get(dest)


def _same(dest: str, given, recorded) -> bool:
    if dest in ("head", "normalize") and given == "auto":
        return True  # auto resolves from the same data to what the run recorded
    if dest == "clip_norm":
        return float(given or 0.0) == float(recorded or 0.0)
    if dest == "data" and given is not None and not str(given).startswith("synthetic:"):
        return str(Path(given).resolve()) == str(recorded)
    if isinstance(given, float) or isinstance(recorded, float):
        try:
            return float(given) == float(recorded)
        except (TypeError, ValueError):
            return False
    return given == recorded


def check_resume_flags(args: argparse.Namespace, config: dict, out: Path) -> None:
    """--resume keeps the run's data, model and optimisation: a flag that would
    change them is refused (it could not be honoured without a different run)."""
    given = [d for d in TRAIN_DEFAULTS if getattr(args, d, None) is not None]
    given += [d for d in ("data", *DATA_KEYS) if getattr(args, d, None) is not None]
    for dest in given:
        value, rec = getattr(args, dest), _recorded(config, dest)
        if not _same(dest, value, rec):
            flag = "--" + dest.replace("_", "-")
            shown = "" if isinstance(value, bool) else f" {','.join(map(str, value)) or 'none'}" if isinstance(
                value, list) else f" {value}"
            fail(
                f"{flag}{shown} cannot change when resuming (the run has {rec}); --resume may change only "
                f"--epochs and --patience; drop {flag}, or train a new run with another --out than {out}"
            )



def _corruption(tr: dict):
    """The run's denoising corruption (train config ``input_noise`` /
    ``step_dropout``; runs saved before these existed have neither), or None."""
    from jax_lstm_ae.train.noise import gaussian_noise, step_dropout

    noise, drop = float(tr.get("input_noise") or 0.0), float(tr.get("step_dropout") or 0.0)
    if not noise >= 0.0:
        fail(f"--input-noise must be a standard deviation >= 0, got {noise}")
    if not 0.0 <= drop < 1.0:
        fail(f"--step-dropout must be a rate in [0, 1), got {drop}")
    if noise and drop:
        fail("--input-noise and --step-dropout are two kinds of corruption; give only one of them, not both")
    if noise:
        return gaussian_noise(noise)
    return step_dropout(drop) if drop else None



def fresh_setup(args: argparse.Namespace, out: Path) -> dict:
    """Everything a new run needs, checked before anything is written."""
    from jax_lstm_ae.train.checkpoint import build_model, build_optimizer, model_config, optimizer_config
    from jax_lstm_ae.data import Normalizer, train_val_split
    from jax_lstm_ae.train.fit import DEFAULT_MIN_STEPS, budget_epochs, steps_per_epoch

    for dest, default in TRAIN_DEFAULTS.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, default)
    plan_run_dir(out, force=args.force, inputs=inputs_of(args, ("data",)))
    spec = data_spec(args)
    if spec["source"] is None:
        spec["source"] = "synthetic:sines"
    spec["normal_class"] = args.normal_class
    data = normal_only(load_data(spec), spec)
    n_empty = int(np.sum(data.lengths == 0))  # length-0 sequences train as nothing: no loss, no gradient
    binary = _is_binary(data)
    head = args.head if args.head != "auto" else ("sigmoid" if binary else "linear")
    if head == "sigmoid" and not binary:
        fail("--head sigmoid needs data in {0, 1}; use --head linear for real values")
    norm_mode = args.normalize if args.normalize != "auto" else ("none" if head == "sigmoid" else "zscore")
    if head == "sigmoid" and norm_mode == "zscore":
        fail("--normalize zscore would move binary data out of [0, 1]; use --normalize none with --head sigmoid")
    # Default budget: 20 epochs but at least DEFAULT_MIN_STEPS steps, so a small set trains long enough to learn.
    n_train = max(1, round(data.n * (1 - args.val_fraction)))
    min_steps = args.min_steps if args.min_steps is not None else (DEFAULT_MIN_STEPS if args.epochs is None else 0)
    epochs = budget_epochs(n_train, args.batch_size, args.epochs if args.epochs is not None else 20, min_steps)
    tr = {
        "epochs": epochs,
        "min_steps": min_steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "val_fraction": args.val_fraction,
        "patience": args.patience,
        "normalize": norm_mode,
        "input_noise": args.input_noise,
        "step_dropout": args.step_dropout,
    }
    corrupt = _corruption(tr)
    train, val = train_val_split(data, tr["val_fraction"], seed=tr["seed"])
    total_steps = epochs * steps_per_epoch(train.n, args.batch_size)
    mcfg = model_config(
        data.features,
        decoder=args.decoder,
        embedding_dim=args.embedding_dim,
        hidden=args.hidden,
        head=head,
        steps=data.steps,
        bidirectional=args.bidirectional,
        pooling=args.pooling,
        teacher_prob=args.teacher_prob,
        init=args.init,
        activation=args.activation,
        recurrent_activation=args.recurrent_activation,
    )
    ocfg = optimizer_config(
        args.lr,
        clip_norm=args.clip_norm,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        decay_steps=total_steps if args.schedule == "cosine" else None,
    )
    if spec["source"] is not None and not str(spec["source"]).startswith("synthetic:"):
        spec["source"] = str(Path(spec["source"]).resolve())
    normalizer = Normalizer.fit(train, tr["normalize"])
    config = {"model": mcfg, "optimizer": ocfg, "train": tr, "data": spec}
    config["data"].update(
        n=data.n, n_train=train.n, n_val=0 if val is None else val.n, steps=data.steps, features=data.features,
        n_empty=n_empty,
    )
    return dict(
        config=config, model=build_model(mcfg), optimizer=build_optimizer(ocfg), normalizer=normalizer,
        data=data, corrupt=corrupt, state=None, progress=None,
    )  # fmt: skip


def resume_setup(args: argparse.Namespace, out: Path, work: Path) -> dict:
    """The run in ``work`` (RUN_DIR or its partial folder) and its data, with
    the flags --resume may change applied."""
    from jax_lstm_ae.train.checkpoint import (
        CHECKPOINT_FILE, RunError, build_model, build_optimizer, load_run, read_config,
    )  # fmt: skip
    from jax_lstm_ae.data import Normalizer
    from jax_lstm_ae.train.fit import fit_progress_from_extra

    if (work / CHECKPOINT_FILE).exists():
        run = load_run(work)
        config, model, normalizer = run.config, run.model, run.normalizer
        state, progress, extra = run.state, fit_progress_from_extra(run.extra), run.extra
    else:  # killed before its first epoch ended: start it again from its config
        config = read_config(work)
        try:
            model = build_model(config)
            norm = config.get("normalizer")
            normalizer = None if norm is None else Normalizer.from_dict(norm)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RunError(f"{work / 'config.json'}: incomplete or invalid config ({e}); train the run again") from None
        state, progress, extra = None, None, {}
    check_resume_flags(args, config, out)
    tr = config.get("train")
    if not isinstance(tr, dict) or not isinstance(config.get("data"), dict):
        raise RunError(f"{work / 'config.json'}: no train or data section; this run cannot be resumed")
    done = int(extra.get("epoch", 0))
    epochs = args.epochs if args.epochs is not None else int(tr["epochs"])
    # killed after its last epoch, while plotting or swapping it in: just finish
    finishing = work != out and args.epochs is None and done >= epochs
    if epochs <= done and not finishing:
        fail(f"{out} has already trained {done} epochs; pass --epochs with a larger total to continue it")
    changes = {k: getattr(args, k) for k in RESUMABLE if getattr(args, k) is not None and getattr(args, k) != tr.get(k)}
    if changes:
        tr.update(changes)
        config.setdefault("resumed", []).append({"at_epoch": done, **changes})
    spec = config["data"]
    data = normal_only(load_data(spec), spec)
    check_fits_model(data, model, config, spec["source"])
    return dict(
        config=config, model=model, optimizer=build_optimizer(config), normalizer=normalizer, data=data,
        corrupt=_corruption(tr), state=state, progress=progress, extra=extra, finishing=finishing,
    )  # fmt: skip


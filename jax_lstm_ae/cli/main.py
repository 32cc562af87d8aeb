"""The ``jax-lstm-ae`` command: train, encode, reconstruct, info (and plug-ins).

Subcommands come from the modules named in :data:`SUBCOMMAND_MODULES`; each
exposes ``register(subparsers)`` that adds its parser and calls
``set_defaults(func=...)`` with ``func(args) -> int | None``. Options shared by
every command that runs a model come from :func:`add_common_args`, which also
asks each module in :data:`COMMON_ARG_MODULES` to ``add_args(parser)``; such a
module may define ``setup(args)`` (run before any command) and
``fit_kwargs(args) -> dict`` (extra keyword arguments for :func:`fit`, e.g.
``mesh=``).

Bad input ends with one line on stderr and exit code 2 (:func:`run_guarded`);
other modules reuse :func:`fail`, :func:`add_data_args` and :func:`load_data`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from jax_lstm_ae.cli import checks
from jax_lstm_ae.cli.checks import integer, number
from jax_lstm_ae.train.allocator import tune_cpu_allocator

PROG = "jax-lstm-ae"
SUBCOMMAND_MODULES: tuple[str, ...] = ("jax_lstm_ae.cli.main", "jax_lstm_ae.cli.anomaly")
COMMON_ARG_MODULES: tuple[str, ...] = ("jax_lstm_ae.cli.devices",)  # --devices and multi-host flags
EXIT_USER_ERROR = 2


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def fail(message: str):
    """Stop the command with ``message`` (one line on stderr, exit code 2)."""
    raise CliError(message)


# ------------------------------------------------------------------ error handling
def _user_error_types() -> tuple[type[BaseException], ...]:
    from jax_lstm_ae.train.checkpoint import RunError
    from jax_lstm_ae.data.datasets import DataError

    return (CliError, DataError, RunError, ValueError, TypeError, OSError)


_OS_HINTS = {
    errno.ENOSPC: "free some disk space or write elsewhere",
    errno.EDQUOT: "free some disk space or write elsewhere",
    errno.EACCES: "check the permissions or write elsewhere",
    errno.EPERM: "check the permissions or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
}


def error_line(exc: BaseException) -> str:
    """One line for the user: the message, without a traceback."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        hint = _OS_HINTS.get(exc.errno)
        msg = f"{where}{exc.strerror}" + (f"; {hint}" if hint else "")
    return " ".join(msg.split())


class CliParser(argparse.ArgumentParser):
    """argparse with the command line's one-line errors: no usage block."""

    def error(self, message: str):
        msg = " ".join(message.split())
        self.exit(EXIT_USER_ERROR, f"{PROG}: error: {msg}; see `{self.prog} --help`\n")


def run_guarded(func: Callable[..., Any], *args, **kwargs) -> int:
    """Call ``func``; turn user errors into ``PROG: error: ...`` and exit code 2,
    anything unexpected into one line and exit code 1 (the traceback only with
    JAX_LSTM_AE_TRACEBACK=1), Ctrl-C into exit code 130."""
    from jax_lstm_ae.train.fit import NonFiniteError

    try:
        rc = func(*args, **kwargs)
        return int(rc or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{PROG}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except NonFiniteError as e:
        print(f"{PROG}: error: {error_line(e)}", file=sys.stderr)
        return 1
    except _user_error_types() as e:
        if os.environ.get("JAX_LSTM_AE_TRACEBACK"):
            raise
        print(f"{PROG}: error: {error_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:  # noqa: BLE001 - the promise is: no traceback
        if os.environ.get("JAX_LSTM_AE_TRACEBACK"):
            raise
        print(
            f"{PROG}: internal error: {type(e).__name__}: {error_line(e)} "
            "(rerun with JAX_LSTM_AE_TRACEBACK=1 for details and report it)",
            file=sys.stderr,
        )
        return 1


# ------------------------------------------------------------------ shared arguments
def _int_list(text: str) -> list[int]:
    """``64`` or ``128,64``; ``none`` or ``0``: no layers."""
    if text.strip().lower() in ("", "none", "0"):
        return []
    parts = [t for t in text.replace(" ", ",").split(",") if t.strip()]
    if not all(checks.is_ascii_int(t) for t in parts):
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, or none, got {text!r}")
    out = [int(t) for t in parts]
    if any(v < 1 for v in out):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return out


def _columns(text: str) -> list[int | str]:
    cols = [t.strip() for t in text.split(",") if t.strip()]
    if not cols:
        raise argparse.ArgumentTypeError("expected column numbers (0-based) or names separated by commas")
    return [int(c) if checks.is_ascii_int(c) else c for c in cols]


_positive = checks.positive


def _hooks() -> list[Any]:
    return [importlib.import_module(m) for m in COMMON_ARG_MODULES]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options every model-running command takes (plus those of COMMON_ARG_MODULES)."""
    parser.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    for hook in _hooks():
        hook.add_args(parser)


def setup_common(args: argparse.Namespace) -> dict:
    """Run every hook's ``setup(args)``; return the merged ``fit_kwargs(args)``."""
    kwargs: dict = {}
    for hook in _hooks():
        if hasattr(hook, "setup"):
            hook.setup(args)
        if hasattr(hook, "fit_kwargs"):
            kwargs.update(hook.fit_kwargs(args) or {})
    return kwargs


def add_data_args(parser: argparse.ArgumentParser, *, default_help: str = "") -> None:
    """--data and the options that say how to read it (see load_data)."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="PATH|synthetic:NAME",
        help="a .txt/.csv/.ts/.npy/.npz file, or synthetic:moving_one / synthetic:moving_one_keras / synthetic:sines"
        + default_help,
    )
    g.add_argument("--format", choices=("ucr", "wide", "long", "series", "npy", "ts"),
                   help="how to read PATH (default: by suffix; .ts: the sktime/aeon format of the UCR/UEA archives)")
    g.add_argument("--columns", type=_columns, help="feature columns to keep, 0-based numbers or header names: 1,2")
    g.add_argument("--id-column", help="sequence-id column of a one-row-per-step CSV (number or name)")
    g.add_argument("--label-column", help="label column (number or name); UCR files: 0")
    g.add_argument("--window", type=_positive, help="cut one long series (one row per step) into windows of this length")
    g.add_argument("--stride", type=_positive, help="step between window starts (default 1)")


_DATA_KEYS = ("format", "columns", "id_column", "label_column", "window", "stride")


def data_spec(args: argparse.Namespace, defaults: dict | None = None) -> dict:
    """The data options given on the command line, falling back to ``defaults``
    (a run's ``config["data"]``) for those not given when --data is not given either."""
    spec = {"source": args.data, **{k: getattr(args, k, None) for k in _DATA_KEYS}}
    if defaults and args.data is None:
        spec = {k: (spec[k] if spec.get(k) is not None else defaults.get(k)) for k in ("source", *_DATA_KEYS)}
    elif defaults and args.data is not None:
        # A new file: keep the run's window/stride/columns unless overridden.
        if defaults.get("window") is not None and spec["format"] in (None, "series"):
            for k in ("window", "stride", "columns"):
                if spec[k] is None:
                    spec[k] = defaults.get(k)
    return spec


def load_data(spec: dict):
    """``data_spec`` -> Dataset. ``synthetic:NAME`` (or NAME when no such file)
    picks a built-in set."""
    from jax_lstm_ae.data.datasets import load_sequences, synthetic

    src = spec.get("source")
    if src is None:
        fail("no data given; pass --data PATH or --data synthetic:sines")
    if str(src).startswith("synthetic:"):
        name = str(src).split(":", 1)[1]
        return synthetic(name, seed=int(spec.get("seed") or 0))
    return load_sequences(
        src,
        format=spec.get("format"),
        columns=spec.get("columns"),
        id_column=spec.get("id_column"),
        label_column=spec.get("label_column"),
        window=spec.get("window"),
        stride=spec.get("stride"),
    )


def check_fits_model(data, model, config: dict, where: str) -> None:
    """Fail with a clear line when ``data`` cannot go through ``model``."""
    f = config["model"]["features"]
    if data.features != f:
        fail(
            f"{where} has F={data.features} features per step but the model was trained on F={f}; "
            "pick matching features with --columns"
        )
    steps = config["model"].get("steps")
    if config["model"]["decoder"] == "latent_as_sequence" and data.steps != steps:
        fail(f"{where} has T={data.steps} steps but this model's latent_as_sequence decoder needs T={steps}")
    if config["model"]["head"] == "sigmoid":
        valid = np.arange(data.steps)[None, :] < data.lengths[:, None]
        v = data.x[valid]
        if v.size and (v.min() < 0 or v.max() > 1):
            fail(f"{where} holds values outside [0, 1] but the model has a sigmoid head for binary data")


# ------------------------------------------------------------------ train
def _is_binary(data) -> bool:
    valid = np.arange(data.steps)[None, :] < data.lengths[:, None]
    v = data.x[valid]
    return bool(v.size) and bool(np.all((v == 0) | (v == 1)))


class Terminated(BaseException):
    """SIGTERM arrived while training: stop like Ctrl-C, keeping the last epoch.
    A BaseException, as KeyboardInterrupt is, so no ``except Exception`` on the
    way (in JAX or elsewhere) swallows it."""


# Set by SIGTERM. The handler also raises at once, but Python drops an
# exception raised where it cannot propagate (inside a destructor or a
# callback that runs during JAX's compilation), so the end of every epoch
# checks the flag too.
_SIGTERM_SEEN: list[bool] = [False]


# Callbacks in which a raised exception would only be printed and dropped.
_NO_RAISE_IN = ("__del__", "_xla_gc_callback")


def _on_sigterm(signum, frame):  # noqa: ARG001 - the signal handler's signature
    _SIGTERM_SEEN[0] = True
    if frame is None or frame.f_code.co_name not in _NO_RAISE_IN:
        raise Terminated()


# Training flags and their defaults. They are None on the parser, so --resume
# can tell a flag that was given from one that was not (see _check_resume_flags).
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


def _check_resume_flags(args: argparse.Namespace, config: dict, out: Path) -> None:
    """--resume keeps the run's data, model and optimisation: a flag that would
    change them is refused (it could not be honoured without a different run)."""
    given = [d for d in TRAIN_DEFAULTS if getattr(args, d, None) is not None]
    given += [d for d in ("data", *_DATA_KEYS) if getattr(args, d, None) is not None]
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


def _check_fresh_out(out: Path, force: bool) -> None:
    """Refuse an --out that a new run may not take; creates nothing."""
    from jax_lstm_ae.cli.rundir import holder, is_nonempty_dir, partial_dir

    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory; choose another --out")
    pid = holder(out)
    if pid is not None:
        fail(f"--out {out} is being written by another training (pid {pid}); wait for it to end or choose another --out")
    if is_nonempty_dir(out) and not force:
        fail(f"--out {out} already exists; pass --force to replace it, or choose another --out")
    if partial_dir(out).exists() and not force:
        fail(
            f"--out {out} holds an interrupted run (in {partial_dir(out)}); continue it with "
            f"`{PROG} train --resume --out {out}`, or pass --force to start over"
        )
    for p in out.absolute().parents:
        if p.exists():
            if not p.is_dir():
                fail(f"--out {out}: {p} is a file, not a folder; choose another --out")
            if not os.access(p, os.W_OK | os.X_OK):
                fail(f"--out {out}: cannot write in {p} (permission denied); choose another --out")
            break


def _make_plots(run_dir: Path, history, model, params, data, normalizer, binary: bool, quiet: bool) -> list[str]:
    from jax_lstm_ae.cli.plots import have_matplotlib, plot_losses, plot_reconstructions

    if not have_matplotlib():
        if not quiet:
            print("plots skipped: matplotlib is not installed (pip install 'jax_lstm_ae[cli]')", file=sys.stderr)
        return []
    made = []
    full = _read_metrics(run_dir / "metrics.jsonl") or history
    if full:
        plot_losses(full, run_dir / "loss.png")
        made.append("loss.png")
    sub = data.take(np.flatnonzero(data.lengths > 0)[:4])  # an empty sequence has nothing to draw
    recon = np.asarray(model.reconstruct(params, sub.x, sub.lengths))
    if normalizer is not None:
        recon = normalizer.invert(recon, sub.lengths)
        sub = normalizer.invert(sub)
    plot_reconstructions(sub.x, recon, sub.lengths, run_dir / "reconstructions.png", binary=binary)
    made.append("reconstructions.png")
    return made


def _read_metrics(path: Path) -> list[dict]:
    from jax_lstm_ae.cli.rundir import read_metrics

    return read_metrics(Path(path))


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


def _all_finite(tree) -> bool:
    import jax

    return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree.leaves(tree))


def _normal_only(data, spec: dict):
    """The sequences of class ``spec["normal_class"]`` (train --normal-class), or all."""
    if spec.get("normal_class") is None:
        return data
    from jax_lstm_ae.cli.anomaly import keep_class

    return keep_class(data, spec["normal_class"], spec["source"])


def _fresh_setup(args: argparse.Namespace, out: Path) -> dict:
    """Everything a new run needs, checked before anything is written."""
    from jax_lstm_ae.train.checkpoint import build_model, build_optimizer, model_config, optimizer_config
    from jax_lstm_ae.data.datasets import Normalizer, train_val_split
    from jax_lstm_ae.train.fit import DEFAULT_MIN_STEPS, budget_epochs, steps_per_epoch

    for dest, default in TRAIN_DEFAULTS.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, default)
    _check_fresh_out(out, args.force)
    spec = data_spec(args)
    if spec["source"] is None:
        spec["source"] = "synthetic:sines"
    spec["normal_class"] = args.normal_class
    data = _normal_only(load_data(spec), spec)
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


def _resume_setup(args: argparse.Namespace, out: Path, work: Path) -> dict:
    """The run in ``work`` (RUN_DIR or its partial folder) and its data, with
    the flags --resume may change applied."""
    from jax_lstm_ae.train.checkpoint import (
        CHECKPOINT_FILE, RunError, build_model, build_optimizer, load_run, read_config,
    )  # fmt: skip
    from jax_lstm_ae.data.datasets import Normalizer
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
    _check_resume_flags(args, config, out)
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
    data = _normal_only(load_data(spec), spec)
    check_fits_model(data, model, config, spec["source"])
    return dict(
        config=config, model=model, optimizer=build_optimizer(config), normalizer=normalizer, data=data,
        corrupt=_corruption(tr), state=state, progress=progress, extra=extra, finishing=finishing,
    )  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from jax_lstm_ae.cli.rundir import make_parents, partial_dir

    out = Path(args.out)
    if args.resume and args.force:
        fail("--resume continues RUN_DIR and --force replaces it; give only one of them")
    fit_extra = setup_common(args)  # before anything starts a JAX backend (--devices asks for CPU devices)
    import jax

    # Start JAX's backend now, before the run is built and SIGTERM is handled:
    # a signal must not land inside the backend's start-up.
    jax.devices()
    if args.resume:
        if not out.parent.is_dir() or not (out.is_dir() or partial_dir(out).is_dir()):
            fail(f"{out}: no such run directory; train one with `{PROG} train --out {out}`")
        setup, created = None, []  # the run is read under its lock
    else:
        if args.train_rows is not None:  # one long series: the anomaly pipeline (cli/anomaly.py)
            from jax_lstm_ae.cli.anomaly import train_series

            return train_series(args)
        setup = _fresh_setup(args, out)  # every check before anything is created
        created = make_parents(out.parent)
    with run_lock(out, created):
        return _train_locked(args, out, setup, fit_extra)


@contextlib.contextmanager
def run_lock(out: Path, created: list[Path]):
    """Hold ``out``'s lock while a run is written; on leaving, release it and,
    if the run left nothing, remove the folders made for it (``created``)."""
    from jax_lstm_ae.cli.rundir import Busy, RunLock, partial_dir, remove_created

    lock = RunLock(out)
    try:
        lock.acquire()
    except Busy as e:
        remove_created(created)
        fail(f"--out {out} is being written by another training (pid {e}); wait for it to end or choose another --out")
    try:
        yield
    finally:
        lock.release()
        if not out.exists() and not partial_dir(out).exists():
            remove_created(created)


def _train_locked(args: argparse.Namespace, out: Path, setup: dict | None, fit_extra: dict) -> int:
    """Train under the run's lock: SIGTERM handled, a new run checked again."""
    from jax_lstm_ae.cli.rundir import partial_dir

    _SIGTERM_SEEN[0] = False
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    old_mask = None
    if old_handler is not None and hasattr(signal, "pthread_sigmask"):
        # A blocked SIGTERM is inherited from the parent (some launchers and
        # test runners block it); unblocked, a `kill` stops the run cleanly.
        old_mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        if args.resume:
            # a stopped new run (in the partial folder) comes first: it is the one the user last started
            work = partial_dir(out) if (partial_dir(out) / "config.json").exists() else out
            setup = _resume_setup(args, out, work)
            setup["work"] = work
        else:
            _check_fresh_out_locked(out, args.force)
        return _train(args, out, setup, fit_extra)
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        if old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _check_fresh_out_locked(out: Path, force: bool) -> None:
    """Under the lock, again: another run may have finished into ``out`` since."""
    from jax_lstm_ae.cli.rundir import is_nonempty_dir

    if is_nonempty_dir(out) and not force:
        fail(f"--out {out} already exists; pass --force to replace it, or choose another --out")


def _devices_line(mesh) -> str:
    """Where the batches run, for the run's first line."""
    if mesh is None:
        return "one device"
    d = mesh.devices.flat[0]
    return f"each batch split over {mesh.devices.size} {d.platform.upper()} devices (--devices 1: one)"


def _train(args: argparse.Namespace, out: Path, setup: dict, fit_extra: dict) -> int:
    from jax_lstm_ae.cli.rundir import append_metrics, commit, is_nonempty_dir, new_partial, sync_metrics
    from jax_lstm_ae.train.checkpoint import CONFIG_FILE, CONFIG_VERSION, atomic_write, save_run
    from jax_lstm_ae.data.datasets import train_val_split
    from jax_lstm_ae.train.fit import NonFiniteError, fit

    config, model, optimizer, normalizer = setup["config"], setup["model"], setup["optimizer"], setup["normalizer"]
    data, tr = setup["data"], config["train"]
    if setup["corrupt"] is not None:
        fit_extra["step_kwargs"] = {**fit_extra.get("step_kwargs", {}), "corrupt": setup["corrupt"]}
    train, val = train_val_split(data, tr["val_fraction"], seed=tr["seed"])
    train, val = normalizer.apply(train), None if val is None else normalizer.apply(val)

    old_run = is_nonempty_dir(out)  # a run in RUN_DIR that must survive a new run that does not finish
    fresh = not args.resume
    if fresh:
        work = new_partial(out)
    else:
        work = setup["work"]
        sync_metrics(work, setup["extra"])
    cfg_text = json.dumps(
        dict(config, version=CONFIG_VERSION, normalizer=None if normalizer is None else normalizer.to_dict()), indent=2
    )
    saved = {"epoch": int((setup.get("extra") or {}).get("epoch", 0))}

    def on_epoch_end(st, prog):
        if not _all_finite(st.params):
            raise NonFiniteError(
                f"training stopped after epoch {prog.epoch}: the parameters are not finite (the loss was "
                f"{prog.last_record['loss']}); lower the learning rate (--lr) or check the data for extreme values",
                st, [], int(st.step),
            )
        save_run(work, st, config, normalizer, extra=prog.to_dict(), best_params=prog.best_params)
        append_metrics(work, prog.last_record)
        saved["epoch"] = prog.epoch
        saved["best"] = prog.best_params
        if _SIGTERM_SEEN[0]:  # a SIGTERM whose exception was dropped on the way: stop here, this epoch saved
            raise Terminated()

    if not args.quiet:
        n_empty = int(config["data"].get("n_empty") or 0)
        empty = f" ({n_empty} empty: they add nothing to the loss)" if n_empty else ""
        print(
            f"data: {config['data']['source']}: {data.n} sequences{empty}, T={data.steps}, F={data.features} "
            f"({train.n} train, {0 if val is None else val.n} validation); model: {config['model']['decoder']} "
            f"decoder, E={config['model']['embedding_dim']}, hidden={config['model']['hidden']}, "
            f"head={config['model']['head']}; {_devices_line(fit_extra.get('mesh'))}",
            file=sys.stderr,
        )
    history: list[dict] = []
    state = setup["state"]
    try:
        if fresh:
            atomic_write(work / CONFIG_FILE, cfg_text + "\n")  # resumable from here on
        if not setup.get("finishing"):
            state, history = fit(
                model, optimizer, train, val,
                epochs=tr["epochs"], batch_size=tr["batch_size"], seed=tr["seed"], patience=tr["patience"],
                log_path=None, progress=not args.quiet, state=state, resume=setup["progress"],
                on_epoch_end=on_epoch_end, restore_best=False, **fit_extra,
            )  # fmt: skip
        elif saved["epoch"]:
            saved["best"] = setup["extra"].get("best_params")
    except (NonFiniteError, KeyboardInterrupt, Terminated) as e:
        return _stopped(e, out, work, old_run, saved["epoch"])
    except BaseException:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        # The checkpoint holds the last state (to resume exactly) and the best
        # params (what load_run hands out for use); plots show the latter.
        params = state.params if saved.get("best") is None else saved["best"]
        shown = val if val is not None else train
        binary = config["model"]["head"] == "sigmoid"
        plots = _make_plots(work, history, model, params, shown, normalizer, binary, args.quiet)
        if work != out:
            commit(work, out)
    except (KeyboardInterrupt, Terminated) as e:
        return _stopped(e, out, work, old_run, saved["epoch"])
    except BaseException:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)
        raise
    last = _read_metrics(out / "metrics.jsonl")
    files = ["config.json", "checkpoint.msgpack", "metrics.jsonl", *plots]
    summary = f"trained {int(state.step)} steps"
    if last:
        summary += f", final train loss {last[-1]['loss']:.5f}"
        vals = [r["val_loss"] for r in last if r.get("val_loss") is not None]
        if vals:
            summary += f", best validation loss {min(vals):.5f}"
    print(summary)
    print(f"run saved in {out}/: {' '.join(files)}")
    return 0


def _stopped(e, out: Path, work: Path, old_run: bool, epoch: int) -> int:
    """NaN, Ctrl-C or SIGTERM: keep the last good epoch where --resume finds it,
    never at the cost of the run RUN_DIR held before."""
    from jax_lstm_ae.cli.rundir import commit
    from jax_lstm_ae.train.fit import NonFiniteError

    if work == out:
        hint = f"; the last good checkpoint (epoch {epoch}) is in {out}: continue with `{PROG} train --resume --out {out}`"
    elif not epoch:
        shutil.rmtree(work, ignore_errors=True)
        hint = f"; no good epoch was saved, so nothing was written to {out}"
    elif old_run:
        hint = (
            f"; {out} still holds the previous run, untouched; this run's last good checkpoint (epoch {epoch}) is in "
            f"{work}: continue it with `{PROG} train --resume --out {out}`, or delete {work}"
        )
    else:
        commit(work, out)
        hint = f"; the last good checkpoint (epoch {epoch}) is in {out}: continue with `{PROG} train --resume --out {out}`"
    if isinstance(e, NonFiniteError):
        raise NonFiniteError(str(e) + hint, e.state, e.history, e.step) from None
    if isinstance(e, Terminated):
        print(f"{PROG}: terminated (SIGTERM){hint}", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(f"{PROG}: interrupted{hint}", file=sys.stderr)
    return 130


# ------------------------------------------------------------------ encode / reconstruct
def _run_and_data(args):
    from jax_lstm_ae.train.checkpoint import load_run

    run = load_run(args.run)
    if not _all_finite(run.params):
        fail(f"{args.run}: the saved parameters are not finite; train the run again (e.g. with a lower --lr)")
    spec = data_spec(args, run.config.get("data"))
    if spec.get("source") is None:
        fail(f"no data given and {args.run} does not record its training data; pass --data PATH")
    data = load_data(spec)
    check_fits_model(data, run.model, run.config, str(spec["source"]))
    normed = run.normalizer.apply(data) if run.normalizer is not None else data
    return run, data, normed


def _chunked(fn, data, chunk: int) -> np.ndarray:
    """fn(x, lengths) over fixed-size chunks (the last one padded with copies of
    the first example), so one compilation serves any N."""
    outs = []
    for i in range(0, data.n, chunk):
        x, ln = data.x[i : i + chunk], data.lengths[i : i + chunk]
        k = x.shape[0]
        if k < chunk and data.n > chunk:
            x = np.concatenate([x, np.repeat(x[:1], chunk - k, 0)])
            ln = np.concatenate([ln, np.repeat(ln[:1], chunk - k)])
        outs.append(np.asarray(fn(x, ln))[:k])
    return np.concatenate(outs)


def _check_out_suffix(out: Path) -> None:
    if out.suffix not in (".npy", ".npz"):
        fail(f"--out {out}: not a .npy or .npz file name; use one ending in .npy or .npz")
    if out.is_dir():
        fail(f"--out {out} is a directory; give a file name ending in .npy or .npz")
    if not out.parent.exists():
        fail(f"--out {out}: folder {out.parent} does not exist; create it or choose another --out")


def _save_arrays(out: Path, arrays: dict[str, np.ndarray], main_key: str) -> list[Path]:
    """.npz: every array in one file; .npy: the main array in ``out`` and each
    other as ``<stem>.<key>.npy``. Written atomically."""
    import io

    from jax_lstm_ae.train.checkpoint import atomic_write

    written = []
    if out.suffix == ".npz":
        buf = io.BytesIO()
        np.savez(buf, **{k: v for k, v in arrays.items() if v is not None})
        atomic_write(out, buf.getvalue())
        return [out]
    for key, arr in arrays.items():
        if arr is None:
            continue
        path = out if key == main_key else out.with_name(f"{out.stem}.{key}.npy")
        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write(path, buf.getvalue())
        written.append(path)
    return written


def cmd_encode(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out_suffix(out)
    setup_common(args)
    run, data, normed = _run_and_data(args)
    if getattr(args, "mesh", None) is not None:  # --devices / several processes: sharded batches
        from jax_lstm_ae.train.parallel import encode_dataset

        z = encode_dataset(run.model, run.params, normed.x, normed.lengths, mesh=args.mesh,
                           batch_size=args.batch_size, global_rows=True)
    else:
        z = _chunked(lambda x, ln: run.model.encode(run.params, x, ln), normed, args.batch_size)
    extra = {"lengths": data.lengths, "labels": data.labels, "starts": data.starts} if out.suffix == ".npz" else {}
    written = _save_arrays(out, {"z": z, **extra}, "z")
    print(f"encoded {data.n} sequences -> latents {z.shape} in {', '.join(map(str, written))}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out_suffix(out)
    setup_common(args)
    run, data, normed = _run_and_data(args)
    model, params = run.model, run.params
    if getattr(args, "mesh", None) is not None:  # --devices / several processes: sharded batches
        from jax_lstm_ae.train.parallel import reconstruct_dataset, step_errors_dataset

        kw = dict(mesh=args.mesh, batch_size=args.batch_size, global_rows=True)
        recon = reconstruct_dataset(model, params, normed.x, normed.lengths, **kw)
        step_err = step_errors_dataset(model, params, normed.x, normed.lengths, **kw)
    else:
        recon = _chunked(lambda x, ln: model.reconstruct(params, x, ln), normed, args.batch_size)
        step_err = _chunked(lambda x, ln: model.step_errors(params, x, ln), normed, args.batch_size)
    errors = step_err.sum(1) / np.maximum(data.lengths, 1)  # mean over valid steps (0 for an empty sequence)
    if run.normalizer is not None:
        recon = run.normalizer.invert(recon, data.lengths)
    arrays = {"reconstruction": recon, "errors": errors.astype(np.float32)}
    if out.suffix == ".npz":
        arrays.update(step_errors=step_err, lengths=data.lengths, labels=data.labels, starts=data.starts)
    written = _save_arrays(out, arrays, "reconstruction")
    worst = np.argsort(-errors)[:3]
    print(
        f"reconstructed {data.n} sequences {recon.shape}; mean error {errors.mean():.5f}; "
        f"highest errors at sequences {', '.join(f'{i} ({errors[i]:.4f})' for i in worst)}"
    )
    print(f"written: {', '.join(map(str, written))}")
    return 0


# ------------------------------------------------------------------ info
def run_summary(run, run_dir=None) -> dict:
    """Model layers, parameter counts, data and training facts of a loaded run."""
    import jax

    cfg = run.config
    count = lambda tree: int(sum(np.size(a) for a in jax.tree.leaves(tree)))  # noqa: E731
    m = run.model
    layers = {
        "encoder": [{"in": int(p.w_i.shape[0]), "hidden": int(p.w_h.shape[0])} for p in _lstm_layers(run.params["encoder"])],
        "decoder": [{"in": int(p.w_i.shape[0]), "hidden": int(p.w_h.shape[0])} for p in _lstm_layers(run.params["decoder"])],
    }
    # The checkpoint's epoch decides which record is the last one: metrics.jsonl
    # may hold a line more (an older run killed between the two) or a bad line.
    metrics = _read_metrics(Path(run_dir) / "metrics.jsonl") if run_dir is not None else []
    done = run.extra.get("epoch")
    last = run.extra.get("last_record")
    if not isinstance(last, dict) or last.get("epoch") != done:
        last = next((r for r in reversed(metrics) if r.get("epoch") == done), None)
    return {
        "model": {
            "decoder": cfg["model"]["decoder"],
            "head": m.head.name,
            "features": m.features,
            "embedding_dim": m.latent_dim,
            "bidirectional": cfg["model"].get("bidirectional", False),
            "pooling": cfg["model"].get("pooling", "last"),
            "layers": layers,
            "parameters": {k: count(run.params[k]) for k in ("encoder", "decoder", "head")} | {"total": count(run.params)},
        },
        "data": cfg.get("data", {}),
        "normalizer": None if run.normalizer is None else run.normalizer.mode,
        "training": {
            "steps": int(run.state.step),
            "epochs_done": run.extra.get("epoch"),
            **{k: cfg.get("train", {}).get(k) for k in ("epochs", "batch_size", "seed")},
            **{k: cfg.get("train", {}).get(k) or 0.0 for k in ("input_noise", "step_dropout")},
            "optimizer": cfg.get("optimizer"),
            "last": last,
        },
    }


def _lstm_layers(tree) -> list:
    from jax_lstm_ae.kernels.cell import LSTMParams

    out = []
    for p in tree.get("lstm", []):
        out.extend(p if isinstance(p, (tuple, list)) and not isinstance(p, LSTMParams) else [p])
    return out


def cmd_info(args: argparse.Namespace) -> int:
    from jax_lstm_ae.train.checkpoint import load_run

    run = load_run(args.run)
    s = run_summary(run, args.run)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    m, d, t = s["model"], s["data"], s["training"]
    print(f"run {args.run}")
    print(f"model: LSTM autoencoder, {m['decoder']} decoder, head {m['head']}, F={m['features']}, E={m['embedding_dim']}"
          + (" (bidirectional encoder)" if m["bidirectional"] else "")
          + (f", readout {m['pooling']}" if m["pooling"] != "last" else ""))
    for part in ("encoder", "decoder"):
        chain = " -> ".join(f"LSTM({l['in']}->{l['hidden']})" for l in m["layers"][part])
        print(f"  {part}: {chain}  [{m['parameters'][part]:,} parameters]")
    print(f"  head: {m['parameters']['head']:,} parameters; total {m['parameters']['total']:,}")
    if d:
        print(
            f"data: {d.get('source')}: {d.get('n')} sequences, T={d.get('steps')}, F={d.get('features')} "
            f"({d.get('n_train')} train, {d.get('n_val')} validation)"
            + (f", windows of {d['window']} every {d.get('stride') or 1}" if d.get("window") else "")
            + (f"; normalisation {s['normalizer']}" if s["normalizer"] else "")
        )
    line = f"training: {t['steps']} steps, {t['epochs_done']} epochs of batch {t['batch_size']}, seed {t['seed']}"
    if t["input_noise"]:
        line += f", denoising (input noise std {t['input_noise']:g})"
    if t["step_dropout"]:
        line += f", denoising (step dropout {t['step_dropout']:g})"
    if t["last"]:
        line += f"; last train loss {t['last']['loss']:.5f}"
        if t["last"].get("val_loss") is not None:
            line += f", validation {t['last']['val_loss']:.5f}"
    print(line)
    return 0


# ------------------------------------------------------------------ parser
def register(subparsers) -> None:
    """The built-in subcommands: train, encode, reconstruct, info."""
    from jax_lstm_ae.nn.decoders import DECODERS
    from jax_lstm_ae.kernels.cell import ACTIVATIONS
    from jax_lstm_ae.nn.encoder import POOLINGS

    p = subparsers.add_parser(
        "train",
        help="train an autoencoder and save a run directory",
        description="Train an LSTM autoencoder. RUN_DIR gets config.json, checkpoint.msgpack, metrics.jsonl, "
        "loss.png and reconstructions.png. Without --data it trains on synthetic:sines.",
    )
    add_data_args(p, default_help=" (default: synthetic:sines)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace RUN_DIR if it exists (only once training succeeds)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR (or its interrupted partial run) up to --epochs; only --epochs "
                        "and --patience may change, other training flags are refused")
    g = p.add_argument_group("model")
    g.add_argument("--decoder", choices=sorted(DECODERS), help="decoder strategy (default repeat)")
    g.add_argument("--embedding-dim", type=_positive, metavar="E", help="latent size (default 32)")
    g.add_argument("--hidden", type=_int_list, metavar="H[,H...]|none",
                   help="encoder LSTM sizes before the E-sized one, e.g. 64 (F -> 64 -> E); the decoder mirrors "
                   "them (default none: one LSTM layer each way, which trains fastest on the built-in sets)")
    g.add_argument("--init", choices=("orthogonal", "uniform"),
                   help="LSTM weight init: orthogonal recurrent weights (Keras) or U(+-1/sqrt(H)) (PyTorch)")
    g.add_argument("--head", choices=("auto", "linear", "mae", "sigmoid"),
                   help="output and loss: linear (MSE), mae, sigmoid (binary CE); auto: sigmoid for 0/1 data")
    g.add_argument("--bidirectional", action="store_true", default=None, help="bidirectional encoder")
    g.add_argument("--pooling", choices=POOLINGS,
                   help="encoder readout: last valid state, mean of the top layer's outputs over valid steps, or both")
    g.add_argument("--teacher-prob", type=number("[0,1]"), metavar="P",
                   help="conditional decoder: scheduled-sampling probability in [0, 1] (default 0)")
    g.add_argument("--activation", choices=tuple(ACTIVATIONS),
                   help="every LSTM cell's activation, on the candidate and the cell output (Keras's; default tanh)")
    g.add_argument("--recurrent-activation", choices=tuple(ACTIVATIONS),
                   help="every LSTM cell's gate activation (Keras's; default sigmoid; hard_sigmoid: relu6(x + 3) / 6)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=_positive,
                   help="epochs (default 20, raised to reach --min-steps; with --resume: the run's)")
    g.add_argument("--min-steps", type=integer(">=0"), metavar="N",
                   help="train at least N steps, adding epochs (default 1000 without --epochs, 0 with it), "
                        "so a small set learns: 100 sequences in batches of 32 are 2 steps an epoch")
    g.add_argument("--batch-size", type=_positive, help="sequences per training step (default 32)")
    g.add_argument("--lr", type=number(">0", example="0.001"), help="peak learning rate (Adam; default 0.01)")
    g.add_argument("--schedule", choices=("constant", "cosine"), help="learning-rate schedule (default constant)")
    g.add_argument("--warmup-steps", type=integer(">=0"), help="steps of linear warmup (default 0)")
    g.add_argument("--clip-norm", type=number(">=0"), help="global gradient-norm clip (default 1.0; 0: none)")
    g.add_argument("--weight-decay", type=number(">=0"), help="AdamW weight decay (default 0)")
    g.add_argument("--input-noise", type=number(">=0"), metavar="STD",
                   help="denoising: the encoder reads the (normalised) data plus Gaussian noise of this std while "
                        "training; the loss still reconstructs the clean data (default 0: off)")
    g.add_argument("--step-dropout", type=number("[0,1)"), metavar="RATE",
                   help="denoising: the encoder reads the data with each step zeroed at this rate while training")
    g.add_argument("--val-fraction", type=number("[0,1)"), help="share of sequences held out, in [0, 1) (default 0.2)")
    g.add_argument("--patience", type=_positive, help="early stopping: epochs without validation improvement")
    g.add_argument("--normalize", choices=("auto", "zscore", "minmax", "none"),
                   help="per-feature normalisation fitted on the training split (auto: zscore, none for 0/1 data)")
    g.add_argument("--seed", type=checks.seed, help=f"random seed in [0, {checks.SEED_MAX}] (default 0)")
    g = p.add_argument_group("anomaly detection (see `detect`)")
    g.add_argument("--normal-class", metavar="C", help="train on the sequences labelled C only (a labelled file)")
    g.add_argument("--train-rows", metavar="A:B", help="one long series: train the anomaly pipeline on its normal "
                   "rows A..B-1 (':' all rows, e.g. a separate normal file); window, pooling and detrending are "
                   "chosen from those rows; model and training: the pipeline's defaults (E=16, LSTM 32, 1,500 steps), "
                   "--window --stride --decoder --epochs --seed apply")
    add_common_args(p)
    p.set_defaults(func=cmd_train)

    for name, func, what, out_help in (
        ("encode", cmd_encode, "latents z (N, E) of each sequence",
         "FILE.npy gets z; FILE.npz gets z, lengths, labels, starts"),
        ("reconstruct", cmd_reconstruct, "reconstructions (data units) and per-sequence errors",
         "FILE.npy gets the reconstructions (N, T, F) and FILE.errors.npy the errors (N,); "
         "FILE.npz gets reconstruction, errors, step_errors, lengths, labels, starts"),
    ):
        p = subparsers.add_parser(name, help=f"write {what}", description=f"Load RUN_DIR and write {what}.")
        p.add_argument("--run", required=True, metavar="RUN_DIR")
        add_data_args(p, default_help=" (default: the run's training data and options)")
        p.add_argument("--out", required=True, metavar="FILE", help=out_help)
        p.add_argument("--batch-size", type=_positive, default=256, help="sequences per jitted call")
        add_common_args(p)
        p.set_defaults(func=func)

    p = subparsers.add_parser("info", help="summarise a run", description="Model layers, parameter counts, data shapes.")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_info)


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog=PROG, description="LSTM sequence autoencoders on pure JAX functions: train, encode, reconstruct."
    )
    from jax_lstm_ae import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    parser.command_names = sorted(sub.choices)
    return parser


def entry_point() -> int:
    """The ``jax-lstm-ae`` executable: the CLI in a process of its own, so it
    keeps freed CPU heap memory mapped first (``tune_cpu_allocator``: no page
    faults on XLA's per-step buffers), before JAX starts."""
    tune_cpu_allocator()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad flag (one line already printed)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    if getattr(args, "func", None) is None:
        names = ", ".join(getattr(parser, "command_names", []))
        print(f"{PROG}: error: give a command ({names}); see `{PROG} --help`", file=sys.stderr)
        return EXIT_USER_ERROR
    return run_guarded(args.func, args)


if __name__ == "__main__":
    sys.exit(entry_point())

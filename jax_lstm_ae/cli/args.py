"""What several commands share: the common options (--quiet and the hooks of
:data:`COMMON_ARG_MODULES`), the data options and their loading, and the
checks that data fits a run's model.

A module in :data:`COMMON_ARG_MODULES` exposes ``add_args(parser)``; it may
define ``setup(args)`` (run before any command) and ``fit_kwargs(args) ->
dict`` (extra keyword arguments for :func:`fit`, e.g. ``mesh=``).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

import numpy as np

from jax_lstm_ae.cli import checks
from jax_lstm_ae.cli.shell import fail

COMMON_ARG_MODULES: tuple[str, ...] = ("jax_lstm_ae.cli.devices",)  # --devices and multi-host flags


def int_list(text: str) -> list[int]:
    """``64`` or ``128,64``; ``none`` or ``0``: no layers."""
    if text.strip().lower() in ("", "none", "0"):
        return []
    parts = [t for t in text.replace(" ", ",").split(",") if t.strip()]
    if not all(checks.is_ascii_int(t) for t in parts):
        raise argparse.ArgumentTypeError(f"expected layer sizes separated by commas, or none, got {text!r}; "
                                         "give e.g. 64 or 64,32")
    out = [int(t) for t in parts]
    if any(v < 1 for v in out):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}; "
                                         "give sizes of at least 1, or none")
    return out


def _columns(text: str) -> list[int | str]:
    cols = [t.strip() for t in text.split(",") if t.strip()]
    if not cols:
        raise argparse.ArgumentTypeError("expected column numbers (0-based) or names separated by commas; "
                                         "give e.g. 0,2 or a,b")
    return [int(c) if checks.is_ascii_int(c) else c for c in cols]


_positive = checks.positive


def _hooks() -> list[Any]:
    return [importlib.import_module(m) for m in COMMON_ARG_MODULES]


def add_common_args(parser: argparse.ArgumentParser, *, training: bool = False) -> None:
    """Options every model-running command takes (plus those of COMMON_ARG_MODULES);
    ``training``: also the flags that only shape a training step."""
    parser.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    for hook in _hooks():
        hook.add_args(parser, training=training)


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
    g.add_argument("--mmap", action="store_const", const=True, default=None,
                   help="read a .npy file on demand instead of loading it (data bigger than memory): windows "
                        "[N, T] / [N, T, F], or with --window one series [R] / [R, F] cut into windows as they are "
                        "read; memory stays that of the batches and chunks, whatever the file's size (train, detect, "
                        "encode; give it again with a new --data)")


DATA_KEYS = ("format", "columns", "id_column", "label_column", "window", "stride", "mmap")


def data_spec(args: argparse.Namespace, defaults: dict | None = None) -> dict:
    """The data options given on the command line, falling back to ``defaults``
    (a run's ``config["data"]``) for those not given when --data is not given either."""
    spec = {"source": args.data, **{k: getattr(args, k, None) for k in DATA_KEYS}}
    if defaults and args.data is None:
        spec = {k: (spec[k] if spec.get(k) is not None else defaults.get(k)) for k in ("source", *DATA_KEYS)}
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
    from jax_lstm_ae.data import load_sequences, synthetic

    src = spec.get("source")
    if src is None:
        fail("no data given; pass --data PATH or --data synthetic:sines")
    if str(src).startswith("synthetic:"):
        name = str(src).split(":", 1)[1]
        return synthetic(name, seed=int(spec.get("seed") or 0))
    if spec.get("mmap"):
        return _open_lazy(src, spec)
    return load_sequences(
        src,
        format=spec.get("format"),
        columns=spec.get("columns"),
        id_column=spec.get("id_column"),
        label_column=spec.get("label_column"),
        window=spec.get("window"),
        stride=spec.get("stride"),
    )


def _open_lazy(src, spec: dict):
    """--mmap: the .npy file read on demand (``data.lazy``)."""
    from jax_lstm_ae.data import lazy_dataset, open_npy

    if not str(src).endswith(".npy"):
        fail(f"--mmap reads a .npy file, got {src}; save the array with numpy.save, or drop --mmap")
    other = [f"--{k.replace('_', '-')}" for k in ("columns", "id_column", "label_column") if spec.get(k) is not None]
    if spec.get("format") not in (None, "npy", "series"):
        other.append(f"--format {spec['format']}")
    if other:
        fail(f"--mmap reads the file's windows (or series, with --window) as they are; drop {', '.join(other)}")
    return lazy_dataset(open_npy(src, window=spec.get("window"), stride=spec.get("stride")))


def check_fits_model(data, model, where: str) -> None:
    """Fail with a clear line when ``data`` cannot go through ``model`` (a
    run's model: built from its spec, version 1 or 2 alike)."""
    from jax_lstm_ae.data import is_lazy
    from jax_lstm_ae.nn.spec import HeadKind

    spec = model.spec
    if data.features != spec.features:
        fail(
            f"{where} has F={data.features} features per step but the model was trained on F={spec.features}; "
            "pick matching features with --columns"
        )
    steps, kind = spec.decoder.steps, spec.decoder.kind.value
    if steps is not None and data.steps != steps:
        fail(f"{where} has T={data.steps} steps but this model's {kind} decoder needs T={steps}; give "
             f"sequences of {steps} steps, as the run was trained on")
    if spec.head.kind is HeadKind.SIGMOID and not is_lazy(data):  # a file read on demand is not scanned here
        valid = np.arange(data.steps)[None, :] < data.lengths[:, None]
        v = data.x[valid]
        if v.size and (v.min() < 0 or v.max() > 1):
            fail(f"{where} holds values outside [0, 1] but the model has a sigmoid head for binary data; give 0/1 data, "
                 "or use a run trained with --head linear")



def all_finite(tree) -> bool:
    import jax

    return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree.leaves(tree))


def is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def keep_class(data, normal_class, where):
    """The sequences of ``data`` labelled ``normal_class`` (a number or a name)."""
    if data.labels is None:
        fail(f"--normal-class needs labels in {where}; give a labelled file (a UCR file, or --label-column) or drop "
             "--normal-class")
    lab = np.asarray(data.labels)
    if np.issubdtype(lab.dtype, np.number) and is_number(str(normal_class)):
        keep = lab.astype(np.float64) == float(normal_class)
    else:
        keep = lab.astype(str) == str(normal_class)
    if not keep.any():
        fail(f"--normal-class {normal_class} matches no label in {where}; use one of its labels "
             f"{sorted(set(lab.tolist()))}")
    return data.take(np.flatnonzero(keep))


def normal_only(data, spec: dict):
    """The sequences of class ``spec["normal_class"]`` (train --normal-class), or all."""
    if spec.get("normal_class") is None:
        return data
    return keep_class(data, spec["normal_class"], spec["source"])


def parse_rows(text: str, n: int, what: str = "--train-rows") -> tuple[int, int]:
    """'A:B' (either side may be empty) -> (A, B) within a series of n rows."""
    parts = str(text).split(":")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() or not p.strip() for p in parts):
        raise ValueError(f"{what} must look like A:B (rows A..B-1, ':' for all rows), got {text!r}; give e.g. 0:1000")
    a = int(parts[0]) if parts[0].strip() else 0
    b = int(parts[1]) if parts[1].strip() else n
    if not 0 <= a < b <= n:
        raise ValueError(f"{what} {text} does not lie inside the series' {n} rows; give 0 <= A < B <= {n}")
    return a, b


def model_choice(allow_all: bool):
    """--model's type: chosen, a model index, or (``allow_all``) all."""

    def parse(text: str) -> str:
        if text == "chosen" or checks.is_ascii_int(text) or (allow_all and text == "all"):
            return text
        raise argparse.ArgumentTypeError(f"{text!r}: give chosen{', all' if allow_all else ''} or a model index "
                                         "0..K-1" + ("" if allow_all else " (this command uses one model)"))

    return parse


def add_model_arg(parser: argparse.ArgumentParser, *, allow_all: bool,
                  all_means: str = "every model; outputs gain a leading axis K: model k's at [k]") -> None:
    """--model: which of a many-models run's K models (train --seeds / --lr-grid) to use."""
    what = "chosen (default: the lowest validation loss, or probe --choose's), a model index k" + (
        f", or all ({all_means})" if allow_all else "")
    parser.add_argument("--model", type=model_choice(allow_all), default=None,
                        metavar="chosen|all|k" if allow_all else "chosen|k",
                        help=f"for a run of many models (train --seeds / --lr-grid): {what}")


def load_runs_for_use(run_dir, which: str | None = None) -> list:
    """The run in ``run_dir`` as a list of one-model runs: one, or every one of
    a many-models run's K models for ``which`` ``all``; refused when the saved
    parameters are not finite."""
    from jax_lstm_ae.cli.rundir import check_not_training
    from jax_lstm_ae.train.checkpoint import load_run, read_config
    from jax_lstm_ae.train.many_run import is_many, load_many

    check_not_training(run_dir)
    if is_many(read_config(run_dir)):
        many = load_many(run_dir)
        if which is not None and which not in ("chosen", "all") and not 0 <= int(which) < many.k:
            fail(f"--model {which}: {run_dir} holds models 0..{many.k - 1}; give one of them, chosen or all")
        runs = [many.pick(k) for k in range(many.k)] if which == "all" else [
            many.pick(None if which in (None, "chosen") else int(which))]
    else:
        if which not in (None, "chosen"):
            fail(f"--model {which}: {run_dir} is a run of one model (--model applies to runs of train --seeds or "
                 "--lr-grid); drop --model")
        runs = [load_run(run_dir)]
    for run in runs:
        if not all_finite(run.params):
            fail(f"{run_dir}: the saved parameters are not finite; train the run again (e.g. with a lower --lr)")
    return runs


def load_run_for_use(run_dir, which: str | None = None):
    """The run in ``run_dir`` (one model of a many-models run: ``which``,
    default the chosen one), refused when its saved parameters are not finite."""
    return load_runs_for_use(run_dir, which)[0]


def data_for_run(run, args, source, what: str):
    """Load ``source`` with the data options of ``args`` (the run's window,
    stride and columns by default), check it fits the model, normalise it as
    in training. Returns (normalised Dataset, normalised series [N_t, F] or
    None). A windowed series comes back as its windows plus ``starts``."""
    return normalise_for_run(run, load_for_run(run, args, source, what))


def load_for_run(run, args, source, what: str):
    """:func:`data_for_run`'s file read, checked to fit the model, in raw
    units: the K models of one run read it once (each normalises it)."""
    spec = data_spec(args, run.config.get("data"))
    if source is not None:
        spec["source"] = source
    if spec.get("source") is None:
        fail(f"no {what} given and {args.run} does not record its training data; pass --data PATH")
    data = load_data(spec)
    check_fits_model(data, run.model, str(source))
    return data


def normalise_for_run(run, data):
    """:func:`data_for_run`'s second half: ``data`` (raw units) normalised as ``run`` was trained."""
    if run.normalizer is not None:
        data = run.normalizer.apply(data)
    series = None
    if data.starts is not None:
        n_points = int(data.starts.max()) + data.steps
        series = np.zeros((n_points, data.features), np.float32)
        idx = data.starts[:, None] + np.arange(data.steps)[None, :]
        series[idx] = data.x  # overlapping windows hold the same values
    return data, series

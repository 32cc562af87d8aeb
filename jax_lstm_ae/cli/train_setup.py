"""What `train` decides before anything is written: a new run's specs and
data (:func:`fresh_setup`), or the run to continue with the flags --resume
may change (:func:`resume_setup`). The flags are the specs' fields
(:mod:`cli.specs`); the runner (``train.runner``) does the rest."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from jax_lstm_ae.cli.args import DATA_KEYS, data_spec, load_data, normal_only
from jax_lstm_ae.cli.outputs import inputs_of, plan_run_dir
from jax_lstm_ae.cli.shell import fail
from jax_lstm_ae.cli.specs import apply_flags, check_resume
from jax_lstm_ae.cli.train_many import chosen_by_neighbours, grid_of, is_many_args, many_specs


PLOT_FILES = ("loss.png", "reconstructions.png")


def has_plots(run_dir: Path) -> bool:
    """The run's plots are there (or cannot be drawn: matplotlib is missing)."""
    from jax_lstm_ae.cli.plots import have_matplotlib

    return not have_matplotlib() or all((Path(run_dir) / name).is_file() for name in PLOT_FILES)


def _is_binary(data) -> bool:
    from jax_lstm_ae.data import is_lazy

    if is_lazy(data):  # not scanned for this: a file read on demand trains a linear head unless told
        return False
    valid = np.arange(data.steps)[None, :] < data.lengths[:, None]
    v = data.x[valid]
    return bool(v.size) and bool(np.all((v == 0) | (v == 1)))


def _data_info(spec: dict, data) -> dict:
    """config.json's ``data``: where the sequences came from and their shape."""
    info = dict(spec)
    if info["source"] is not None and not str(info["source"]).startswith("synthetic:"):
        info["source"] = str(Path(info["source"]).resolve())
    return {**info, "n": data.n, "steps": data.steps, "features": data.features}


def fresh_setup(args: argparse.Namespace, out: Path) -> dict:
    """The specs and data of a new run, every check done before anything is written."""
    from jax_lstm_ae.nn.spec import DecoderKind, SpecError
    from jax_lstm_ae.train.runner import normalize_mode
    from jax_lstm_ae.train.spec import auto_pool, preset

    plan_run_dir(out, force=args.force, inputs=inputs_of(args, ("data",)))
    spec = data_spec(args)
    if spec["source"] is None:
        spec["source"] = "synthetic:sines"
    spec["normal_class"] = args.normal_class
    data = normal_only(load_data(spec), spec)
    binary = _is_binary(data)
    fields = {}
    if args.head in (None, "auto"):
        fields["head.kind"] = "sigmoid" if binary else "linear"
    elif args.head == "sigmoid" and not binary:
        fail("--head sigmoid needs data in {0, 1}; use --head linear for real values")
    if args.decoder is not None and DecoderKind(args.decoder).fixes_t:
        fields["decoder.steps"] = data.steps
    if getattr(args, "pool", None) == "auto":
        fields["pool"] = auto_pool(data.steps)
    model_spec, train_spec = apply_flags(args, *preset("cli", data.features), fields=fields)
    if getattr(args, "pool", None) is None and model_spec.can_pool:  # the default is auto where pooling applies
        model_spec = dataclasses.replace(model_spec, pool=auto_pool(data.steps))
    try:
        normalize_mode(model_spec, train_spec)
    except SpecError:
        fail("--normalize zscore would move binary data out of [0, 1]; use --normalize none with --head sigmoid")
    setup = dict(model_spec=model_spec, train_spec=train_spec, data=data, data_info=_data_info(spec, data))
    if is_many_args(args):
        setup["train_specs"] = many_specs(args, train_spec)
        setup["choose_by"] = args.choose_by or "val"
    return setup


def _check_data_flags(args: argparse.Namespace, recorded: dict, out: Path) -> None:
    """--resume trains on the run's data: a data flag that names other data is refused."""
    for dest in ("data", *DATA_KEYS, "normal_class"):
        value = getattr(args, dest, None)
        if value is None:
            continue
        rec = recorded.get("source" if dest == "data" else dest)
        if dest == "data" and not str(value).startswith("synthetic:"):
            value = str(Path(value).resolve())
        if value != rec and str(value) != str(rec):
            flag = "--" + dest.replace("_", "-")
            fail(f"{flag} {getattr(args, dest)} cannot change when resuming (the run has {rec}); --resume trains "
                 f"on the run's own data; drop {flag}, or train a new run with another --out than {out}")


def resume_setup(args: argparse.Namespace, out: Path, work: Path) -> dict:
    """The run in ``work`` (RUN_DIR or its partial folder) and its data, with
    the flags --resume may change (epochs, min steps, patience) collected."""
    from jax_lstm_ae.nn.spec import SpecError
    from jax_lstm_ae.train.checkpoint import CHECKPOINT_FILE, RunError, load_run, read_config
    from jax_lstm_ae.train.runner import read_specs

    config = read_config(work)
    if "train_rows" in (config.get("data") or {}) or (work / "detector.json").exists():
        fail(f"{out} is a run of the series pipeline (train --train-rows); it cannot be resumed: train it again "
             "with --force")
    if config.get("kind") == "many":
        return _resume_many_setup(args, out, work, config)
    try:
        model_spec, train_spec = read_specs(config)
        recorded = config["data"]
        if not isinstance(recorded, dict) or "source" not in recorded:
            raise KeyError("data")
    except (KeyError, TypeError, SpecError) as e:
        raise RunError(f"{work / 'config.json'}: not a resumable training run ({e}); train the run again") from None
    _check_data_flags(args, recorded, out)
    if is_many_args(args) or args.choose_by is not None:
        fail(f"{out} is a run of one model; --seeds, --lr-grid, --noise-grid and --choose-by cannot be added when "
             "resuming: drop them, or train a new run with another --out")
    changes = check_resume(args, model_spec, train_spec, out)
    extra = load_run(work).extra if (work / CHECKPOINT_FILE).exists() else {}
    done = int(extra.get("epoch", 0))
    recorded_epochs = int((config.get("budget") or {}).get("epochs", config["train"].get("epochs") or 0))
    epochs = int(changes.get("epochs", recorded_epochs))
    patience = changes.get("patience", train_spec.patience)
    stopped_early = bool(done) and patience is not None and int(extra.get("bad_epochs", 0)) >= patience
    # Every epoch is done, but the run was stopped (Ctrl-C, SIGTERM, kill) after
    # its last epoch, while its plots were drawn or before it was swapped into
    # RUN_DIR: --resume just finishes it (draws the plots, moves it in place).
    unfinished = work != out or not has_plots(work)
    finishing = (done >= epochs or stopped_early) and unfinished and epochs <= recorded_epochs
    if not finishing and stopped_early and done < epochs:
        fail(f"{out} stopped early at epoch {done} (no better validation loss for {patience} epochs); pass a "
             f"--patience larger than {patience} to continue it")
    if epochs <= done and not finishing:
        fail(f"{out} has already trained {done} epochs; pass --epochs with a larger total to continue it")
    data = normal_only(load_data(recorded), recorded)
    return dict(model_spec=model_spec, train_spec=train_spec, data=data, changes=changes, extra=extra,
                finishing=finishing, data_info=recorded)


def _resume_many_setup(args: argparse.Namespace, out: Path, work: Path, config: dict) -> dict:
    """As :func:`resume_setup` for a run of many models (train --seeds / --lr-grid)."""
    from jax_lstm_ae.train.checkpoint import CHECKPOINT_FILE
    from jax_lstm_ae.train.many_run import ManyProgress, load_many, specs_of

    model_spec, specs = specs_of(config, work)
    recorded = config.get("data") or {}
    if "source" not in recorded:
        fail(f"{out}: not a resumable training run (its config.json records no data source); train it again")
    _check_data_flags(args, recorded, out)
    seeds, rates, noises = grid_of(specs)
    if args.seeds is not None and args.seeds != len(seeds):
        fail(f"--seeds {args.seeds} cannot change when resuming (the run has {len(seeds)}); drop --seeds")
    if args.lr_grid is not None and args.lr_grid != rates:
        fail(f"--lr-grid cannot change when resuming (the run has {','.join(f'{r:g}' for r in rates)}); "
             "drop --lr-grid")
    if args.noise_grid is not None and args.noise_grid != noises:
        fail(f"--noise-grid cannot change when resuming (the run has {','.join(f'{n:g}' for n in noises)}); "
             "drop --noise-grid")
    # a run chosen by neighbours chooses so again; a choice by `probe --choose` (labels) goes back to validation loss
    recorded_by = "neighbours" if chosen_by_neighbours(config) else "val"
    if args.lr is not None and len(rates) > 1:
        fail("--lr cannot be given when resuming a run with a learning-rate grid; drop --lr")
    changes = check_resume(args, model_spec, specs[0], out)
    specs = [s.replace(**changes) for s in specs]
    extra = {}
    if (work / CHECKPOINT_FILE).exists():
        run = load_many(work)
        extra = run.extra
        prog = ManyProgress.from_extra(extra, run.params)
        prog.reactivate(specs)
    done = int(extra.get("epoch", 0))
    recorded_epochs = int(config["budget"]["epochs"])
    epochs = int(changes.get("epochs", recorded_epochs))
    stopped_early = bool(done) and not any(prog.active)
    unfinished = work != out or not has_plots(work)
    finishing = (done >= epochs or stopped_early) and unfinished and epochs <= recorded_epochs
    if not finishing and stopped_early and done < epochs:
        fail(f"{out}: every model stopped (early stopping or a non-finite loss) by epoch {done}; pass a larger "
             "--patience to continue the ones that stopped early")
    if epochs <= done and not finishing:
        fail(f"{out} has already trained {done} epochs; pass --epochs with a larger total to continue it")
    data = normal_only(load_data(recorded), recorded)
    return dict(model_spec=model_spec, train_spec=specs[0], train_specs=specs, data=data, changes=changes,
                extra=extra, finishing=finishing, data_info=recorded, choose_by=args.choose_by or recorded_by)

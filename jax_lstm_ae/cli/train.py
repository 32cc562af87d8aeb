"""`jax-lstm-ae train`: a new run (or, with --resume, more epochs of one)
built in a hidden partial folder under the run's lock and swapped into
RUN_DIR when it ends (see ``rundir``); SIGTERM stops it like Ctrl-C, keeping
the last good epoch where --resume finds it. ``--train-rows`` hands the
command to the series pipeline (``series``)."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from pathlib import Path

import numpy as np

from jax_lstm_ae.cli.args import add_common_args, add_data_args, setup_common
from jax_lstm_ae.cli.shell import PROG, CliError, Terminated, fail
from jax_lstm_ae.cli.specs import add_spec_flags
from jax_lstm_ae.cli.train_many import add_many_flags, is_many_args
from jax_lstm_ae.cli.train_setup import fresh_setup, resume_setup

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


def register(subparsers) -> None:
    """Add `train` to an argparse subparsers object."""
    from jax_lstm_ae.train.spec import preset

    p = subparsers.add_parser(
        "train",
        help="train an autoencoder and save a run directory",
        description="Train an LSTM autoencoder. RUN_DIR gets config.json, checkpoint.msgpack, metrics.jsonl, "
        "loss.png and reconstructions.png. Without --data it trains on synthetic:sines. With --seeds K, "
        "--lr-grid or --noise-grid, RUN_DIR holds K models trained as one program (config.json lists them and the "
        "chosen one, see --choose-by; metrics.jsonl has a line per model and epoch); with --train-rows, the series "
        "pipeline scores with all K as one ensemble (default K 5).",
    )
    add_data_args(p, default_help=" (default: synthetic:sines)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace RUN_DIR if it exists (only once training succeeds)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR (or its interrupted partial run) up to --epochs; only --epochs, "
                        "--min-steps and --patience may change, other model and training flags are refused")
    p.add_argument("--allow-other-data", action="store_true",
                   help="with --resume: continue although the data's contents changed since the run started "
                        "(its new fingerprint is recorded)")
    add_spec_flags(p, preset("cli", 1))
    add_many_flags(p)
    g = p.add_argument_group("anomaly detection (see `detect`)")
    g.add_argument("--normal-class", metavar="C", help="train on the sequences labelled C only (a labelled file)")
    g.add_argument("--train-rows", metavar="A:B", help="one long series: train the anomaly pipeline on its normal "
                   "rows A..B-1 (':' all rows, e.g. a separate normal file); window, pooling and detrending are "
                   "chosen from those rows (--window / --stride, in rows, override the window's); model and training "
                   "flags apply on top of the pipeline's own defaults (E=16, hidden 32, about 1,500 steps of "
                   "cosine-decayed Adam). A long series given with --window or --format series and no --train-rows "
                   "gets the same pipeline on every row")
    add_common_args(p, training=True)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from jax_lstm_ae.cli.rundir import make_parents, partial_dir, run_lock

    out = Path(args.out)
    if args.resume and args.force:
        fail("--resume continues RUN_DIR and --force replaces it; give only one of them")
    if args.allow_other_data and not args.resume:
        fail("--allow-other-data applies to --resume only; drop it")
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
        if args.train_rows is not None and args.mmap:
            fail("--train-rows (the series pipeline) loads its series; it does not take --mmap: train on windows "
                 "of the file with --mmap --window T instead")
        if args.train_rows is None and _is_long_series(args):
            args.train_rows = ":"  # one long series has one route: the series pipeline, here on every row
            args.every_row = True  # train_series says so once its checks pass
        if args.mmap and is_many_args(args):
            fail("--seeds, --lr-grid and --noise-grid train many models on data held in memory; a file read on "
                 "demand (--mmap) trains one model: drop them or --mmap")
        if args.choose_by is not None and not is_many_args(args):
            fail("--choose-by picks among the models of --seeds K, --lr-grid or --noise-grid; give one of them, or "
                 "drop --choose-by")
        if args.train_rows is not None and (args.lr_grid, args.noise_grid, args.choose_by) != (None,) * 3:
            given = "--lr-grid" if args.lr_grid is not None else "--noise-grid" if args.noise_grid is not None \
                else "--choose-by"
            fail(f"{given} is for choosing among models; the series pipeline (--train-rows) scores with an ensemble "
                 f"of --seeds K models of one learning rate and noise: drop {given}")
        if args.train_rows is not None:  # one long series: the anomaly pipeline (cli/series.py)
            from jax_lstm_ae.cli.series import train_series

            return train_series(args)
        setup = fresh_setup(args, out)  # every check before anything is created
        created = make_parents(out.parent)
    with run_lock(out, created):
        return _train_locked(args, out, setup, fit_extra)



def _is_long_series(args: argparse.Namespace) -> bool:
    """--data is one long series for the series pipeline: given with --window or --format series. Not with
    --mmap: a file read on demand (too large to load) trains its windows as sequences, lazily."""
    if args.mmap:
        return False
    return args.format == "series" or (args.window is not None and args.format is None
                                       and not str(args.data or "").startswith("synthetic:"))


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
            setup = resume_setup(args, out, work)
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
    from jax_lstm_ae.cli.rundir import is_nonempty_dir, is_run_dir

    if is_nonempty_dir(out) and not is_run_dir(out):
        fail(f"--out {out} is not a run directory of {PROG} (no config.json/checkpoint.msgpack); --force replaces "
             "only run directories: choose another --out")
    if is_nonempty_dir(out) and not force:
        fail(f"--out {out} already exists; pass --force to replace it, or choose another --out")


def _devices_line(mesh) -> str:
    """Where the batches run, for the run's first line."""
    if mesh is None:
        return "one device"
    d = mesh.devices.flat[0]
    return f"each batch split over {mesh.devices.size} {d.platform.upper()} devices (--devices 1: one)"


def _describe(setup: dict, n_train: int, n_val: int, mesh) -> str:
    from jax_lstm_ae.cli.train_many import describe
    from jax_lstm_ae.data import count_empty

    m, data = setup["model_spec"], setup["data"]
    n_empty = count_empty(data)
    empty = f" ({n_empty} empty: they add nothing to the loss)" if n_empty else ""
    hidden = ",".join(map(str, m.encoder.hidden)) or "none"
    return (f"data: {setup['data_info']['source']}: {data.n} sequences{empty}, T={data.steps}, F={data.features} "
            f"({n_train} train, {n_val} validation); model: {m.decoder.kind.value} decoder, E={m.embedding_dim}, "
            f"hidden={hidden}, head={m.head.kind.value} ({m.head.loss.value}), "
            + (f"time pooled by {m.pool} (--pool 1: none), " if m.pool > 1 else "")
            + f"backend={m.backend.value}; "
            + (f"{describe(setup['train_specs'])}, split over as many of {mesh.devices.size if mesh else 1} "
               "devices as divide their number" if "train_specs" in setup else _devices_line(mesh)))


def _train(args: argparse.Namespace, out: Path, setup: dict, fit_extra: dict) -> int:
    from jax_lstm_ae.cli.rundir import commit, is_nonempty_dir, new_partial
    from jax_lstm_ae.nn.spec import HeadKind
    from jax_lstm_ae.train.fit import NonFiniteError
    from jax_lstm_ae.data import split_sizes
    from jax_lstm_ae.cli.train_many import choose_by_neighbours, plot_many, summary, train_many
    from jax_lstm_ae.train.runner import resume_training, run_training

    old_run = is_nonempty_dir(out)  # a run in RUN_DIR that must survive a new run that does not finish
    fresh = not args.resume
    work = new_partial(out) if fresh else setup["work"]
    saved = {"epoch": int((setup.get("extra") or {}).get("epoch", 0))}
    many = "train_specs" in setup

    def on_epoch_end(st, prog):  # after the runner saved the epoch (st is None for many models)
        saved["epoch"] = prog.epoch
        if _SIGTERM_SEEN[0]:  # a SIGTERM whose exception was dropped on the way: stop here, this epoch saved
            raise Terminated()

    mesh = fit_extra.get("mesh")
    kw = dict(progress=not args.quiet, mesh=mesh, step_kwargs=fit_extra.get("step_kwargs"), callback=on_epoch_end)
    model_spec, data = setup["model_spec"], setup["data"]
    if not args.quiet:
        print(_describe(setup, *split_sizes(data.n, setup["train_spec"].val_fraction), mesh), file=sys.stderr)
    try:
        if many:
            result = train_many(args, setup, work, fresh, kw)
            if setup.get("choose_by") == "neighbours":
                result = choose_by_neighbours(work, result, data, mesh, args.quiet)
        elif fresh:
            result = run_training(model_spec, setup["train_spec"], data, workdir=work, data_info=setup["data_info"],
                                  **kw)
        else:
            result = resume_training(work, data, changes=setup["changes"], allow_other_data=args.allow_other_data,
                                     **kw)
    except (NonFiniteError, KeyboardInterrupt, Terminated) as e:
        return _stopped(e, out, work, old_run, saved["epoch"])
    except BaseException:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        # The checkpoint holds the last state (to resume exactly) and the best
        # params (what load_run hands out for use); plots show the latter.
        if many:
            plots = plot_many(work, result, data, args.quiet)
        else:
            shown = result.val if result.val is not None else result.train
            binary = model_spec.head.kind is HeadKind.SIGMOID
            plots = _make_plots(work, result.history, result.model, result.params, shown, result.normalizer,
                                binary, args.quiet)
        if work != out:
            commit(work, out)
    except (KeyboardInterrupt, Terminated) as e:  # every epoch is saved: --resume draws the plots and finishes
        return _stopped(e, out, work, old_run, saved["epoch"], trained=True)
    except CliError:
        raise  # commit refused: the finished run stays in its partial folder, as the line says
    except BaseException:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)
        raise
    files = ["config.json", "checkpoint.msgpack", "metrics.jsonl", *plots]
    if many:
        print(summary(result, fresh, int((setup.get("extra") or {}).get("epoch", 0))))
        print(f"run saved in {out}/: {' '.join(files)}")
        return 0
    last = _read_metrics(out / "metrics.jsonl")
    summary = f"trained {int(result.state.step)} steps"
    if not fresh and not result.history:  # stopped after its last epoch: only the plots and the swap were left
        summary += f" (all {saved['epoch']} epochs were done already; the run is finished now)"
    if last:
        summary += f", final train loss {last[-1]['loss']:.5f}"
        vals = [r["val_loss"] for r in last if r.get("val_loss") is not None]
        if vals:
            summary += f", best validation loss {min(vals):.5f}"
    print(summary)
    print(f"run saved in {out}/: {' '.join(files)}")
    return 0


def _stopped(e, out: Path, work: Path, old_run: bool, epoch: int, trained: bool = False) -> int:
    """NaN, Ctrl-C or SIGTERM: keep the last good epoch where --resume finds it,
    never at the cost of the run RUN_DIR held before. ``trained``: stopped
    after the last epoch (while the plots were drawn): --resume finishes it."""
    from jax_lstm_ae.cli.rundir import commit
    from jax_lstm_ae.train.fit import NonFiniteError

    resume = f"`{PROG} train --resume --out {out}`"
    if trained:  # "...: all 30 epochs are saved in R: draw the plots and finish it with `...`"
        when, saved, then = " while drawing the plots", f"all {epoch} epochs are saved", "draw the plots and finish it"
    else:
        when, saved, then = "", f"the last good checkpoint (epoch {epoch}) is", "continue it"
    if work == out:
        hint = f"{when}; {saved} in {out}: {then} with {resume}"
    elif not epoch:
        shutil.rmtree(work, ignore_errors=True)
        hint = f"{when}; no good epoch was saved, so nothing was written to {out}"
    elif old_run:
        hint = (f"{when}; {out} still holds the previous run, untouched; this run's {saved.replace('the ', '', 1)} "
                f"in {work}: {then} with {resume}, or delete {work}")
    else:
        commit(work, out)
        hint = f"{when}; {saved} in {out}: {then} with {resume}"
    if isinstance(e, NonFiniteError):
        raise NonFiniteError(str(e) + hint, e.state, e.history, e.step) from None
    if isinstance(e, Terminated):
        print(f"{PROG}: terminated (SIGTERM){hint}", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(f"{PROG}: interrupted{hint}", file=sys.stderr)
    return 130



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
    from jax_lstm_ae.data import is_lazy

    # an empty sequence has nothing to draw; a set read on demand has none (and is not scanned for them)
    sub = data.take(np.arange(min(4, data.n)) if is_lazy(data) else np.flatnonzero(data.lengths > 0)[:4])
    recon = np.asarray(model.reconstruct(params, sub.x, sub.lengths))
    if normalizer is not None:
        recon = normalizer.invert(recon, sub.lengths)
        sub = normalizer.invert(sub)
    plot_reconstructions(sub.x, recon, sub.lengths, run_dir / "reconstructions.png", binary=binary)
    made.append("reconstructions.png")
    return made


def _read_metrics(path: Path) -> list[dict]:
    from jax_lstm_ae.train.checkpoint import read_metrics

    return read_metrics(Path(path))


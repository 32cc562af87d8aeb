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

from jax_lstm_ae.cli import checks
from jax_lstm_ae.cli.args import add_common_args, add_data_args, all_finite, int_list, setup_common
from jax_lstm_ae.cli.checks import integer, number, positive
from jax_lstm_ae.cli.shell import PROG, CliError, Terminated, fail
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
    from jax_lstm_ae.nn.decoders import DECODERS
    from jax_lstm_ae.nn.cell import ACTIVATIONS
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
    g.add_argument("--embedding-dim", type=positive, metavar="E", help="latent size (default 32)")
    g.add_argument("--hidden", type=int_list, metavar="H[,H...]|none",
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
    g.add_argument("--epochs", type=positive,
                   help="epochs (default 20, raised to reach --min-steps; with --resume: the run's)")
    g.add_argument("--min-steps", type=integer(">=0"), metavar="N",
                   help="train at least N steps, adding epochs (default 1000 without --epochs, 0 with it), "
                        "so a small set learns: 100 sequences in batches of 32 are 2 steps an epoch")
    g.add_argument("--batch-size", type=positive, help="sequences per training step (default 32)")
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
    g.add_argument("--patience", type=positive, help="early stopping: epochs without validation improvement")
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


def cmd_train(args: argparse.Namespace) -> int:
    from jax_lstm_ae.cli.rundir import make_parents, partial_dir, run_lock

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
        if args.train_rows is not None:  # one long series: the anomaly pipeline (cli/series.py)
            from jax_lstm_ae.cli.series import train_series

            return train_series(args)
        setup = fresh_setup(args, out)  # every check before anything is created
        created = make_parents(out.parent)
    with run_lock(out, created):
        return _train_locked(args, out, setup, fit_extra)



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


def _train(args: argparse.Namespace, out: Path, setup: dict, fit_extra: dict) -> int:
    from jax_lstm_ae.cli.rundir import append_metrics, commit, is_nonempty_dir, new_partial, sync_metrics
    from jax_lstm_ae.train.checkpoint import CONFIG_FILE, CONFIG_VERSION, atomic_write, save_run
    from jax_lstm_ae.data import train_val_split
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
        if not all_finite(st.params):
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
    except CliError:
        raise  # commit refused: the finished run stays in its partial folder, as the line says
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


"""`jax-lstm-ae train --seeds K` and `--lr-grid`: K models of one shape in one
run folder, trained as one program (``train.many``).

    jax-lstm-ae train --data D --out RUN --seeds 4                    # seeds S..S+3 (S = --seed)
    jax-lstm-ae train --data D --out RUN --lr-grid 1e-3,3e-3,1e-2     # one model per learning rate
    jax-lstm-ae train --data D --out RUN --seeds 2 --lr-grid 1e-3,1e-2   # 4 models: every pair
    jax-lstm-ae train --data D --out RUN --noise-grid 0,0.3 --choose-by neighbours   # clean and denoising

Model k of a grid of L learning rates, N noise amounts and S seeds has the
``k // (N S)``-th rate, the ``(k // S) % N``-th noise amount and the
``k % S``-th seed. Each model is split, normalised and trained as a
one-model run with its seed, rate and noise would be; the run's ``chosen``
model is what `encode`, `reconstruct`, `detect` and `info` use unless
--model says otherwise: by default the lowest validation loss (the training
loss without validation), with ``--choose-by neighbours`` the one whose
latents keep the most DTW neighbours of the training sequences
(``apps.neighbours``); neither reads labels. --resume and --force work on
the whole run (a resume chooses again the same way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from jax_lstm_ae.cli.checks import positive
from jax_lstm_ae.cli.shell import fail


def _rates(text: str) -> list[float]:
    from jax_lstm_ae.cli.checks import number

    parse = number(">0", example="0.001")
    values = [parse(v.strip()) for v in text.split(",") if v.strip()]
    if not values or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct learning rates > 0, comma-separated, e.g. "
                                         "1e-3,3e-3,1e-2")
    return values


def _stds(text: str) -> list[float]:
    from jax_lstm_ae.cli.checks import number

    parse = number(">=0", example="0.3")
    values = [parse(v.strip()) for v in text.split(",") if v.strip()]
    if not values or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct noise std >= 0, comma-separated, e.g. 0,0.3")
    return values


CHOOSE_BY = ("val", "neighbours")
BY_NEIGHBOURS = "train --choose-by neighbours"  # config.json's chosen_by["by"] of that choice


def chosen_by_neighbours(config: dict) -> bool:
    """Whether the run's chosen model was picked by ``--choose-by neighbours``."""
    return (config.get("chosen_by") or {}).get("by") == BY_NEIGHBOURS


def add_many_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "many models (one program, one run folder; encode/reconstruct/detect/info use the chosen one, see "
        "--choose-by, unless told --model)")
    g.add_argument("--seeds", type=positive, default=None, metavar="K",
                   help="train K models with seeds S, S+1, ..., S+K-1 (S = --seed); the series pipeline "
                        "(--train-rows) scores with all K as one ensemble (default 5)")
    g.add_argument("--lr-grid", type=_rates, default=None, metavar="LR[,LR...]",
                   help="train one model per learning rate (with --seeds: every rate with every seed; model k has "
                        "rate k // K and seed k %% K); replaces --lr")
    g.add_argument("--noise-grid", type=_stds, default=None, metavar="STD[,STD...]",
                   help="train one model per input-noise std, 0 for a clean one (with --seeds and --lr-grid: every "
                        "combination); replaces --input-noise")
    g.add_argument("--choose-by", choices=CHOOSE_BY, default=None,
                   help="how the run's chosen model is picked, without labels: val, the lowest validation loss "
                        "(default); neighbours, the latents that keep the most DTW neighbours of the training "
                        "sequences (each sequence's 5 nearest, up to 256 sequences)")


def is_many_args(args: argparse.Namespace) -> bool:
    return (args.seeds or 1) > 1 or args.lr_grid is not None or args.noise_grid is not None


def many_specs(args: argparse.Namespace, train_spec) -> list:
    """The K train specs of --seeds, --lr-grid and --noise-grid, from the one the other flags built."""
    if args.lr_grid is not None and args.lr is not None:
        fail("--lr-grid gives the learning rates; drop --lr")
    if args.noise_grid is not None and (args.input_noise is not None or args.step_dropout is not None):
        fail("--noise-grid gives each model's input noise; drop " + ("--input-noise" if args.input_noise is not None
                                                                     else "--step-dropout (another corruption)"))
    rates = args.lr_grid or [train_spec.optimizer.learning_rate]
    noises = args.noise_grid or [train_spec.input_noise]
    seeds = [train_spec.seed + i for i in range(args.seeds or 1)]
    from jax_lstm_ae.cli.checks import SEED_MAX

    if seeds[-1] > SEED_MAX:
        fail(f"--seeds {args.seeds} with --seed {train_spec.seed} goes past the largest seed {SEED_MAX}; give a "
             "smaller --seed")
    return [train_spec.replace(seed=s, input_noise=n, optimizer=train_spec.optimizer.replace(learning_rate=lr))
            for lr in rates for n in noises for s in seeds]


def grid_of(specs) -> tuple[list[int], list[float], list[float]]:
    """The seeds, learning rates and input-noise amounts of the K specs, in the order model k takes them."""
    seeds = list(dict.fromkeys(s.seed for s in specs))
    rates = list(dict.fromkeys(s.optimizer.learning_rate for s in specs))
    noises = list(dict.fromkeys(s.input_noise for s in specs))
    return seeds, rates, noises


def describe(specs) -> str:
    seeds, rates, noises = grid_of(specs)
    noise = f"; input noise {','.join(f'{n:g}' for n in noises)}" if len(noises) > 1 else ""
    return (f"{len(specs)} models in one program: seeds {','.join(map(str, seeds))}; learning rates "
            f"{','.join(f'{r:g}' for r in rates)}{noise}")


def choose_by_neighbours(work: Path, result, data, mesh, quiet: bool):
    """Make the model whose latents keep the most DTW neighbours of ``data`` (the training
    sequences, raw) the run's chosen one, recorded in config.json; returns the result with it."""
    from jax_lstm_ae.apps.neighbours import NEIGHBOURS, choose_model_by_neighbours
    from jax_lstm_ae.train.many_run import record_choice

    order = sorted(range(result.k), key=lambda k: (not np.isfinite(result.best_losses[k]), result.best_losses[k]))
    k, scores, rows = choose_model_by_neighbours(result.model, [result.pick(i) for i in range(result.k)],
                                                 result.normalizers, data, order=order, mesh=mesh)
    chosen_by = {"by": BY_NEIGHBOURS, "model": k, "neighbours": NEIGHBOURS,
                 "agreement": [None if not np.isfinite(a) else a for a in scores], "rows": rows,
                 "validation_choice": result.best}
    record_choice(work, k, chosen_by)
    if not quiet:
        print(f"DTW neighbours kept by each model's latents ({rows} training sequences, {NEIGHBOURS} each): "
              + " ".join("nan" if not np.isfinite(a) else f"{a:.3f}" for a in scores), file=sys.stderr)
    return result._replace(best=k, config=dict(result.config, chosen=k, chosen_by=chosen_by))


def train_many(args: argparse.Namespace, setup: dict, work: Path, fresh: bool, kw: dict):
    """Train (or resume) the K models into ``work``; returns the ``ManyResult``."""
    from jax_lstm_ae.train.many import resume_training_many, run_training_many

    sk = kw.get("step_kwargs") or {}
    if sk.get("global_batch") or sk.get("fsdp_min_size"):
        fail("--seeds and --lr-grid split the K models over one process's devices; drop --fsdp-min-size and the "
             "multi-process flags")
    callback = kw["callback"]
    common = dict(progress=kw["progress"], mesh=kw["mesh"], callback=lambda prog: callback(None, prog))
    if fresh:
        return run_training_many(setup["model_spec"], setup["train_specs"], setup["data"], workdir=work,
                                 data_info=setup["data_info"], **common)
    return resume_training_many(work, setup["data"], changes=setup["changes"],
                                allow_other_data=args.allow_other_data, **common)


def plot_many(run_dir: Path, result, data, quiet: bool) -> list[str]:
    """loss.png: every model's validation (or training) loss per epoch, the chosen one marked;
    reconstructions.png: the chosen model's."""
    from jax_lstm_ae.cli.plots import _pyplot, _save, have_matplotlib, plot_reconstructions
    from jax_lstm_ae.nn.spec import HeadKind
    from jax_lstm_ae.train.runner import split_data
    from jax_lstm_ae.train.spec import TrainSpec

    if not have_matplotlib():
        if not quiet:
            print("plots skipped: matplotlib is not installed (pip install 'jax_lstm_ae[cli]')", file=sys.stderr)
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    watched = "validation" if result.config["data"]["n_val"] else "train"
    for k, hist in enumerate(result.histories):
        ys = [h["val_loss"] if h["val_loss"] is not None else h["loss"] for h in hist]
        chosen = k == result.best
        ax.plot([h["epoch"] for h in hist], ys, "o-" if chosen else "-", lw=2.0 if chosen else 0.8,
                alpha=1.0 if chosen else 0.5, label=f"model {k} (chosen)" if chosen else None)
    vals = [v for hist in result.histories for h in hist for v in (h["val_loss"], h["loss"]) if v is not None]
    if vals and min(vals) > 0 and max(vals) / min(vals) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel(f"{watched} loss (mean per-step error)")
    ax.set_title(f"{result.k} models")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, run_dir / "loss.png")
    k = result.best
    specs = result.config["train"]
    # the chosen model's own validation split (its training part without one), as a one-model run draws
    norm = result.normalizers[k]
    _, train, val = split_data(data, TrainSpec.from_dict(specs[k]), result.model.spec, norm)
    shown = val if val is not None else train
    sub = shown.take(np.flatnonzero(shown.lengths > 0)[:4])
    recon = norm.invert(np.asarray(result.model.reconstruct(result.pick(k), sub.x, sub.lengths)), sub.lengths)
    sub = norm.invert(sub)
    plot_reconstructions(sub.x, recon, sub.lengths, run_dir / "reconstructions.png",
                         binary=result.model.spec.head.kind is HeadKind.SIGMOID)
    return ["loss.png", "reconstructions.png"]


def summary(result, fresh: bool, done_before: int) -> str:
    """The lines `train` prints when the K models are done."""
    k = result.best
    steps = max(h[-1]["step"] for h in result.histories if h) if any(result.histories) else 0
    watched = "validation" if result.config["data"]["n_val"] else "train"
    line = f"trained {result.k} models, {steps} steps each"
    if not fresh and done_before and all(h and h[-1]["epoch"] <= done_before for h in result.histories):
        line += f" (all {done_before} epochs were done already; the run is finished now)"
    losses = " ".join(f"{b:.5f}" if np.isfinite(b) else "failed" for b in result.best_losses)
    t = result.config["train"][k]
    noisy = len({s.get("input_noise") for s in result.config["train"]}) > 1
    noise = f", input noise {t.get('input_noise') or 0:g}" if noisy else ""
    by = " by the DTW neighbours its latents keep" if chosen_by_neighbours(result.config) else ""
    return (f"{line}; best {watched} loss per model: {losses}\n"
            f"chosen{by}: model {k} (seed {t['seed']}, lr {t['optimizer']['learning_rate']:g}{noise}), best "
            f"{watched} loss {result.best_losses[k]:.5f}")

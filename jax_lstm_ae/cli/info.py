"""`jax-lstm-ae info`: a run's layers, parameter counts, data and training facts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jax_lstm_ae.train.checkpoint import read_metrics


def register(subparsers) -> None:
    """Add `info` to an argparse subparsers object."""
    p = subparsers.add_parser("info", help="summarise a run", description="Model layers, parameter counts, data shapes.")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    from jax_lstm_ae.cli.args import model_choice

    p.add_argument("--model", type=model_choice(False), default=None, metavar="chosen|k",
                   help="for a run of many models (train --seeds / --lr-grid): the model whose layers and training "
                        "are shown (default: the chosen one); every model's line is printed either way")
    p.set_defaults(func=cmd_info)


def _many_summary(run_dir, which) -> tuple:
    """``(the shown model's Run, the models section)`` of a run of many models."""
    from jax_lstm_ae.apps.detectors import is_detector_run
    from jax_lstm_ae.cli.args import load_run_for_use
    from jax_lstm_ae.train.many_run import load_many

    run = load_run_for_use(run_dir, which)
    many = load_many(run_dir)
    extra, watched = many.extra, "validation" if (many.config.get("data") or {}).get("n_val") else "train"
    models = [{"index": k, "seed": t["seed"], "learning_rate": t["optimizer"]["learning_rate"],
               "input_noise": t.get("input_noise") or 0.0,
               "epochs_done": h[-1]["epoch"] if h else 0, f"best_{watched}_loss": b, "error": e}
              for k, (t, h, b, e) in enumerate(zip(many.config["train"], extra.get("histories", []),
                                                   extra.get("best_loss", []), extra.get("errors", [])))]
    return run, {"k": many.k, "chosen": many.chosen, "chosen_by": many.config.get("chosen_by"),
                 "ensemble": is_detector_run(run_dir),
                 "shown": run.config["model_index"], "watched": watched, "models": models}


def run_summary(run, run_dir=None) -> dict:
    """Model layers, parameter counts, data and training facts of a loaded run."""
    import jax

    cfg = run.config
    spec = run.model.spec  # a run's model is always built from its spec
    count = lambda tree: int(sum(np.size(a) for a in jax.tree.leaves(tree)))  # noqa: E731
    m = run.model
    layers = {
        "encoder": [{"in": int(p.w_i.shape[0]), "hidden": int(p.w_h.shape[0])} for p in _lstm_layers(run.params["encoder"])],
        "decoder": [{"in": int(p.w_i.shape[0]), "hidden": int(p.w_h.shape[0])} for p in _lstm_layers(run.params["decoder"])],
    }
    # The checkpoint's epoch decides which record is the last one: metrics.jsonl
    # may hold a line more (an older run killed between the two) or a bad line.
    metrics = read_metrics(Path(run_dir) / "metrics.jsonl") if run_dir is not None else []
    done = run.extra.get("epoch")
    last = run.extra.get("last_record")
    if not isinstance(last, dict) or last.get("epoch") != done:
        last = next((r for r in reversed(metrics) if r.get("epoch") == done), None)
    return {
        "model": {
            "decoder": spec.decoder.kind.value,
            "head": m.head.name,
            "features": m.features,
            "embedding_dim": m.latent_dim,
            "bidirectional": spec.encoder.bidirectional,
            "pooling": spec.encoder.pooling.value,
            "pool": spec.pool,
            "backend": spec.backend.value,
            "backend_used": (cfg.get("runtime") or {}).get("backend"),
            "layers": layers,
            "parameters": {k: count(run.params[k]) for k in ("encoder", "decoder", "head")} | {"total": count(run.params)},
        },
        "data": cfg.get("data", {}),
        "normalizer": None if run.normalizer is None else run.normalizer.mode,
        "training": {
            "steps": int(run.state.step),
            "epochs_done": run.extra.get("epoch"),
            "epochs": (cfg.get("budget") or {}).get("epochs", cfg.get("train", {}).get("epochs")),
            **{k: cfg.get("train", {}).get(k) for k in ("batch_size", "seed")},
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
    from jax_lstm_ae.cli.rundir import check_not_training
    from jax_lstm_ae.train.checkpoint import load_run

    from jax_lstm_ae.train.checkpoint import read_config
    from jax_lstm_ae.train.many_run import is_many

    check_not_training(args.run)
    many = None
    if is_many(read_config(args.run)):
        run, many = _many_summary(args.run, args.model)
    elif args.model not in (None, "chosen"):
        from jax_lstm_ae.cli.shell import fail

        fail(f"--model {args.model}: {args.run} is a run of one model; drop --model")
    else:
        run = load_run(args.run)
    s = run_summary(run, None if many else args.run)
    if many:
        s["many"] = many
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    m, d, t = s["model"], s["data"], s["training"]
    print(f"run {args.run}")
    print(f"model: LSTM autoencoder, {m['decoder']} decoder, head {m['head']}, F={m['features']}, E={m['embedding_dim']}"
          + (" (bidirectional encoder)" if m["bidirectional"] else "")
          + (f", readout {m['pooling']}" if m["pooling"] != "last" else "")
          + (f", time pooling {m['pool']} (the encoder reads means of {m['pool']} steps)" if m["pool"] > 1 else "")
          + f"; backend {m['backend']}" + (f" (ran {m['backend_used']})" if m["backend_used"] else ""))
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
    if many:
        by = many["chosen_by"]
        why = (f"lowest {many['watched']} loss" if by is None else
               f"{by['by']}: most DTW neighbours kept ({by['neighbours']} each) among {by['rows']} training sequences"
               if "agreement" in by else
               f"{by['by']}: best {by['classifier']} CV accuracy on {by['rows']} labelled rows of {by['data']}")
        noisy = len({r["input_noise"] for r in many["models"]}) > 1
        if many["ensemble"]:
            print(f"models: {many['k']} trained as one program; the series pipeline scores with all {many['k']} (the "
                  f"mean of their standardised scores); above: model {many['shown']}")
        else:
            print(f"models: {many['k']} trained as one program; chosen {many['chosen']} ({why}); above: model "
                  f"{many['shown']}")
        for r in many["models"]:
            best = r[f"best_{many['watched']}_loss"]
            agreement = (by or {}).get("agreement")
            print(f"  {r['index']}{'*' if r['index'] == many['chosen'] else ' '} seed {r['seed']}, lr "
                  f"{r['learning_rate']:g}" + (f", input noise {r['input_noise']:g}" if noisy else "")
                  + f": {r['epochs_done']} epochs, best {many['watched']} loss "
                  + (f"{best:.5f}" if best is not None else "none")
                  + (f", DTW neighbours kept {agreement[r['index']]:.3f}" if agreement and agreement[r["index"]]
                     is not None else "") + (f" ({r['error']})" if r["error"] else ""))
    return 0


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
    p.set_defaults(func=cmd_info)


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

    check_not_training(args.run)
    run = load_run(args.run)
    s = run_summary(run, args.run)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    m, d, t = s["model"], s["data"], s["training"]
    print(f"run {args.run}")
    print(f"model: LSTM autoencoder, {m['decoder']} decoder, head {m['head']}, F={m['features']}, E={m['embedding_dim']}"
          + (" (bidirectional encoder)" if m["bidirectional"] else "")
          + (f", readout {m['pooling']}" if m["pooling"] != "last" else "")
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
    return 0


"""What bfloat16 matmul operands cost in accuracy: ECG5000 trained on "fast" and "fast_bf16".

    python bench/bf16_accuracy.py                     # 600 steps, seed 0 (a few minutes on 2 cores)
    python bench/bf16_accuracy.py --steps 2000 --seeds 0,1

The package's built-in ECG5000 file (``jax_lstm_ae.data.builtin``, what
``jax-lstm-ae data ecg5000`` writes: 500 beats, T = 140, F = 1), all classes,
trained through the runner (``run_training``: its 80 / 20 split, z-score
normalisation, batch 32, Adam 1e-2 with clipping, the model of ``jax-lstm-ae
train``: LSTM 1 -> 64 = E, mean readout, repeat decoder 64, linear head) with
backend "fast" and "fast_bf16" from the same seed for the same number of
steps, on one device. For each run it prints the last epoch's mean training
loss, the validation loss the runner measured (on the run's own backend) and
the final parameters' train and validation MSE scored in float32 ("fast"),
then the relative difference bf16 / float32 - 1. With two or more seeds it
also prints the spread between float32 runs of different seeds, the scale
against which the bf16 difference is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import jax

from jax_lstm_ae.data import load_sequences
from jax_lstm_ae.data.builtin import builtin_file
from jax_lstm_ae.nn import build
from jax_lstm_ae.train import make_eval_step
from jax_lstm_ae.train.fit import evaluate
from jax_lstm_ae.train.runner import run_training
from jax_lstm_ae.train.spec import preset

BACKENDS = ("fast", "fast_bf16")
COLUMNS = ("train_loss", "val_loss", "train_mse_f32", "val_mse_f32")


def run(backend: str, seed: int, steps: int, data) -> dict:
    model_spec, train_spec = preset("cli", data.features, backend=backend)
    train_spec = dataclasses.replace(train_spec, seed=seed, epochs=1, min_steps=steps, patience=None)
    t0 = time.perf_counter()
    res = run_training(model_spec, train_spec, data, max_steps=steps)
    wall = time.perf_counter() - t0
    # The final parameters scored in float32, so both runs are judged by the same arithmetic.
    scorer = make_eval_step(build(dataclasses.replace(model_spec, backend="fast")))
    params = res.state.params
    last = res.history[-1]
    return {"backend": backend, "seed": seed, "steps": int(last["step"]), "train_loss": last["loss"],
            "val_loss": last["val_loss"], "train_mse_f32": evaluate(scorer, params, res.train, 64),
            "val_mse_f32": evaluate(scorer, params, res.val, 64), "wall_s": wall}


def table(rows: list[dict]) -> str:
    lines = ["| seed | backend | steps | train loss (last epoch) | val loss (runner) | train MSE (f32) | val MSE (f32) "
             "| wall s |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['backend']} | {r['steps']} | "
                     + " | ".join(f"{r[c]:.5f}" for c in COLUMNS) + f" | {r['wall_s']:.0f} |")
    by = {(r["seed"], r["backend"]): r for r in rows}
    for seed in sorted({r["seed"] for r in rows}):
        a, b = by[(seed, "fast")], by[(seed, "fast_bf16")]
        lines.append(f"| {seed} | bf16 / f32 - 1 | | " + " | ".join(f"{b[c] / a[c] - 1:+.2%}" for c in COLUMNS)
                     + " | |")
    f32 = [by[(s, "fast")] for s in sorted({r["seed"] for r in rows})]
    if len(f32) > 1:
        spread = [(max(r[c] for r in f32) - min(r[c] for r in f32)) / statistics.mean(r[c] for r in f32)
                  for c in COLUMNS]
        lines.append("| all | f32 across seeds: (max - min) / mean | | " + " | ".join(f"{s:.2%}" for s in spread)
                     + " | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600, help="training steps per run (whole epochs of 12 steps)")
    p.add_argument("--seeds", default="0", help="comma list of seeds; each trains both backends")
    args = p.parse_args(argv)
    data = load_sequences(builtin_file("ecg5000"))
    print(f"# ECG5000 (built-in): {data.n} sequences, T={data.steps}, F={data.features}; {args.steps} steps per run; "
          f"jax {jax.__version__}, {jax.devices()[0].platform}", flush=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",") if s):
        for backend in BACKENDS:
            rows.append(run(backend, seed, args.steps, data))
            print(f"  seed {seed} {backend}: {rows[-1]['wall_s']:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()

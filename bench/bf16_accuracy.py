"""What bfloat16 matmul operands cost in accuracy: ECG5000 trained on "fast" and "fast_bf16".

    python bench/bf16_accuracy.py                         # 2000 steps, seeds 0, 1, 2 (about 3 minutes on 2 cores)
    python bench/bf16_accuracy.py --steps 3000 --seeds 0,1,2,3,4

The package's built-in ECG5000 file (``jax_lstm_ae.data.builtin``, what
``jax-lstm-ae data ecg5000`` writes: 500 beats, T = 140, F = 1), all classes,
trained through the runner (``run_training``: its 80 / 20 split, z-score
normalisation) with the ECG settings of ``bench/quality.py`` (``jax-lstm-ae
train --hidden 64 --embedding-dim 32 --batch-size 16 --lr 5e-3 --schedule
cosine``: LSTM 1 -> 64 -> 32 = E, mean readout, repeat decoder 32 -> 64,
linear head, Adam with clipping, the rate decayed to zero over the run, so
the last epoch is a settled point rather than a sample of a noisy
trajectory), with backend "fast" and "fast_bf16" from the same seed for the
same whole epochs (``--steps`` rounded up), on one device.

For each run: the last epoch's mean training loss, the best validation loss
(the runner's, on the run's own backend), and the final parameters' train
and validation MSE scored in float32 ("fast"; so a bf16 run's model is judged
by the same arithmetic as the float32 one); then per backend the means over
the seeds, their relative difference bf16 / float32 - 1, the median of the
per-seed differences, and how far float32 runs of different seeds lie apart
(training from different seeds, or with different rounding, ends at
different points: that spread is the scale against which the bf16 difference
is read). A second table isolates the arithmetic from training: each
float32-trained model's validation MSE scored with "fast_bf16" against
"fast", the same parameters.
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
from jax_lstm_ae.nn.spec import EncoderSpec, ModelSpec
from jax_lstm_ae.train import make_eval_step
from jax_lstm_ae.train.fit import evaluate
from jax_lstm_ae.train.runner import run_training
from jax_lstm_ae.train.spec import OptimizerSpec, TrainSpec

BACKENDS = ("fast", "fast_bf16")
COLUMNS = ("train_loss", "best_val_loss", "train_mse", "val_mse")
HEADS = ("train loss (last epoch)", "best val loss", "train MSE (f32)", "val MSE (f32)")


def run(backend: str, seed: int, steps: int, data) -> dict:
    model_spec = ModelSpec(features=data.features, embedding_dim=32, encoder=EncoderSpec(hidden=(64,), pooling="mean"),
                           backend=backend)
    train_spec = TrainSpec(batch_size=16, epochs=1, min_steps=steps, seed=seed,
                           optimizer=OptimizerSpec(learning_rate=5e-3, schedule="cosine"))
    t0 = time.perf_counter()
    res = run_training(model_spec, train_spec, data)
    wall = time.perf_counter() - t0
    # The final parameters scored by both backends' arithmetic.
    score = {b: make_eval_step(build(dataclasses.replace(model_spec, backend=b))) for b in BACKENDS}
    params = res.state.params
    last = res.history[-1]
    return {"backend": backend, "seed": seed, "steps": int(last["step"]), "train_loss": last["loss"],
            "best_val_loss": min(r["val_loss"] for r in res.history),
            "train_mse": evaluate(score["fast"], params, res.train, 64),
            "val_mse": evaluate(score["fast"], params, res.val, 64),
            "val_mse_bf16": evaluate(score["fast_bf16"], params, res.val, 64), "wall_s": wall}


def _cells(values, fmt: str) -> str:
    return " | ".join(format(v, fmt) for v in values)


def table(rows: list[dict]) -> str:
    """Training: every run, the means over seeds and their relative difference,
    and the float32 runs' spread over seeds; then scoring alone: each float32
    run's final parameters scored with fast_bf16 against fast."""
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["seed"], r["backend"]): r for r in rows}
    lines = ["| seed | backend | steps | " + " | ".join(HEADS) + " | wall s |",
             "| --- | --- | ---: | " + "---: | " * len(HEADS) + "---: |"]
    lines += [f"| {r['seed']} | {r['backend']} | {r['steps']} | {_cells((r[c] for c in COLUMNS), '.5f')} "
              f"| {r['wall_s']:.0f} |" for r in rows]
    mean = {b: [statistics.mean(by[(s, b)][c] for s in seeds) for c in COLUMNS] for b in BACKENDS}
    for b in BACKENDS:
        lines.append(f"| mean of {len(seeds)} | {b} | | {_cells(mean[b], '.5f')} | |")
    rel = [m16 / m32 - 1 for m16, m32 in zip(mean["fast_bf16"], mean["fast"])]
    lines.append(f"| mean of {len(seeds)} | bf16 / f32 - 1 | | {_cells(rel, '+.1%')} | |")
    per_seed = [statistics.median(by[(s, 'fast_bf16')][c] / by[(s, 'fast')][c] - 1 for s in seeds) for c in COLUMNS]
    lines.append(f"| median over seeds | bf16 / f32 - 1 | | {_cells(per_seed, '+.1%')} | |")
    if len(seeds) > 1:
        spread = [(max(by[(s, "fast")][c] for s in seeds) - min(by[(s, "fast")][c] for s in seeds))
                  / statistics.mean(by[(s, "fast")][c] for s in seeds) for c in COLUMNS]
        lines.append(f"| {len(seeds)} seeds | f32: (max - min) / mean | | {_cells(spread, '.1%')} | |")
    lines += ["", "| seed | float32-trained parameters: val MSE scored by fast | by fast_bf16 | bf16 / f32 - 1 |",
              "| --- | ---: | ---: | ---: |"]
    for s in seeds:
        r = by[(s, "fast")]
        lines.append(f"| {s} | {r['val_mse']:.5f} | {r['val_mse_bf16']:.5f} | {r['val_mse_bf16'] / r['val_mse'] - 1:+.2%} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="training steps per run, rounded up to whole epochs")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds; each trains both backends")
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

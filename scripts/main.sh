#!/usr/bin/env bash
# The main job: install (into .venv), train an LSTM autoencoder on the built-in
# synthetic sines (no data file needed) into runs/demo, and say what to try next.
set -euo pipefail
EXTRAS=cli
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

run=runs/demo
jax-lstm-ae train --data synthetic:sines --out "$run" --force --decoder repeat --epochs 60 --schedule cosine "$@"
jax-lstm-ae info --run "$run"

cat <<MSG

Results in $run/:
  loss.png             training and validation loss per epoch
  reconstructions.png  validation sequences (solid) and their reconstructions (dashed)
  metrics.jsonl        one JSON line per epoch; config.json and checkpoint.msgpack: the model

Next (with the environment active: . .venv/bin/activate):
  jax-lstm-ae encode --run $run --out $run/z.npy                 # latents (N, 32) of the training data
  jax-lstm-ae reconstruct --run $run --out $run/recon.npz        # reconstructions + per-sequence errors
  jax-lstm-ae train --data synthetic:moving_one --out runs/moving_one --decoder teacher_forced --batch-size 16 --lr 0.02 --epochs 15
  jax-lstm-ae train --data FILE.txt --out runs/mine              # your own data (UCR .txt, .csv, .npy/.npz);
                                                                 # one long series: add --window 64 --stride 8
  jax-lstm-ae --help
MSG

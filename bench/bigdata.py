"""Data bigger than memory: train and score a series read on demand from a .npy file.

    python bench/bigdata.py                       # 10^8 rows x 8 features (3.2 GB in /tmp), 500 steps, 10^6 windows
    python bench/bigdata.py --rows 10000000       # a 320 MB file: the same protocol, smaller
    python bench/bigdata.py --dir /scratch        # where the file is written (it is deleted at the end)

Protocol. The parent writes a float32 series [R, 8] (eight sines of
different periods plus Gaussian noise, generated and written 2^20 rows at a
time, never whole) to a .npy file, then runs a fresh child process that:

1. opens it with ``open_npy(path, window=64, stride=1)``: R - 63 windows of
   [64, 8], cut as they are read (``lazy_dataset``);
2. trains through ``run_training`` with the command line's defaults (preset
   ``cli``: batch 32, E 64, mean readout, Adam 1e-2, z-score; at T = 64 its
   time pooling is d = 1, none) and ``max_steps=500``, with
   each batch split over one CPU device per core as the command does. The
   runner splits by index ranges (the last 20 % of the windows validate),
   fits the normaliser over every training window's steps in chunks (one
   scan of the training rows) and draws shuffled batches of rows read from
   the file;
3. fits a window-level Mahalanobis scorer on 16,384 evenly spaced windows of
   the validation stretch before the scored windows, then scores the last
   ``--score`` windows chunk by chunk and spreads them back to point scores
   (``apps.streaming.point_scores``).

It reports wall seconds of each phase, training windows/s over the steps
after the first (the first step compiles; it is timed from the read of
batch 2 to the end), scoring windows/s (the first chunk's compilation
included), and the peak resident memory of the child (``ru_maxrss``), also
as measured right after JAX started (the floor any JAX program pays). The
machine's load average is printed beside: other work on it slows the
figures, not the memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
F, T = 8, 64


def write_series(path: Path, rows: int, chunk: int = 1 << 20) -> float:
    """A float32 series [rows, F] written chunk by chunk; returns the seconds taken."""
    t0 = time.perf_counter()
    periods = np.array([50, 73, 120, 200, 333, 500, 800, 1300], np.float64)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, F)})
        for a in range(0, rows, chunk):
            r = np.arange(a, min(a + chunk, rows), dtype=np.float64)[:, None]
            x = np.sin(2 * np.pi * r / periods) + 0.1 * rng.standard_normal((r.shape[0], F))
            f.write(x.astype(np.float32).tobytes())
    return time.perf_counter() - t0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(path: str, steps: int, n_score: int) -> dict:
    from jax_lstm_ae.train.cores import all_cores_mesh

    from jax_lstm_ae.train.spec import preset

    model_spec, train_spec = preset("cli", F)
    mesh = all_cores_mesh(warn=False, max_devices=train_spec.batch_size)  # as `jax-lstm-ae train` does
    import jax

    jax.numpy.zeros(1).block_until_ready()
    rec = {"peak_mb_after_jax_start": peak_mb(), "devices": 1 if mesh is None else int(mesh.devices.size)}

    from jax_lstm_ae.apps.streaming import fit_scorer_sampled, point_scores
    from jax_lstm_ae.data import lazy_dataset, open_npy, split_sizes
    from jax_lstm_ae.data.lazy import LazyWindows
    from jax_lstm_ae.train.runner import run_training

    reads: list[float] = []  # when each batch was read (one read per training step)
    read = LazyWindows._read

    def timed_read(self, idx):
        reads.append(time.perf_counter())
        return read(self, idx)

    LazyWindows._read = timed_read
    scans: list[float] = []  # seconds of each statistics scan (the normaliser's)
    moments = LazyWindows.moments

    def timed_moments(self, *a, **kw):
        ts = time.perf_counter()
        out = moments(self, *a, **kw)
        scans.append(time.perf_counter() - ts)
        return out

    LazyWindows.moments = timed_moments
    t0 = time.perf_counter()
    data = lazy_dataset(open_npy(path, window=T, stride=1))
    rec["windows"] = data.n
    res = run_training(model_spec, train_spec, data, max_steps=steps, mesh=mesh)
    t_end = time.perf_counter()
    step_reads = reads[-steps:]
    rec["train_total_s"] = t_end - t0
    rec["train_before_first_step_s"] = step_reads[0] - t0  # split, normaliser scan, memory check, compilation
    rec["scan_s"] = sum(scans)
    rec["scan_rows_per_s"] = data.x.rows(0, split_sizes(data.n, train_spec.val_fraction)[0]).span()[1] / sum(scans)
    rec["train_first_step_s"] = step_reads[1] - step_reads[0]  # compiles
    rec["train_steps_s"] = t_end - step_reads[1]
    rec["train_windows_per_s"] = (steps - 1) * train_spec.batch_size / rec["train_steps_s"]
    rec["steps"] = int(res.state.step)
    rec["peak_mb_after_train"] = peak_mb()

    n_train, _ = split_sizes(data.n, train_spec.val_fraction)
    x = res.normalizer.apply(data).x
    scored = x.rows(data.n - n_score, data.n)
    t1 = time.perf_counter()
    scorer = fit_scorer_sampled(res.model, res.params, x.rows(n_train, data.n - n_score), method="mahalanobis",
                                level="window", mesh=mesh)
    t2 = time.perf_counter()
    points = point_scores(res.model, res.params, scored, scorer, mesh=mesh)
    t3 = time.perf_counter()
    rec.update(scorer_fit_s=t2 - t1, score_s=t3 - t2, score_windows=n_score, score_windows_per_s=n_score / (t3 - t2),
               points=int(points.size), points_finite=bool(np.isfinite(points).all()),
               peak_mb=peak_mb())
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10**8)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--score", type=int, default=10**6, help="windows scored (the last ones of the series)")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the .npy file is written")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.score)))
        return 0
    need = args.rows * F * 4
    free = shutil.disk_usage(args.dir).free
    if free < need + 2**30:
        print(f"{args.dir} has {free / 1e9:.1f} GB free; the file needs {need / 1e9:.1f} GB (+1 GB); "
              "pass --dir with room, or fewer --rows", file=sys.stderr)
        return 1
    path = Path(args.dir) / f"bigdata_{os.getpid()}.npy"
    try:
        write_s = write_series(path, args.rows)
        load0 = os.getloadavg()
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, __file__, "--child", str(path), "--steps", str(args.steps),
                               "--score", str(args.score)], env=env, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        path.unlink(missing_ok=True)
    load1 = os.getloadavg()
    gb = args.rows * F * 4 / 1e9
    print(f"series {args.rows:,} rows x {F} float32 = {gb:.2f} GB on disk (written in {write_s:.1f} s), "
          f"windows T={T} stride 1: {rec['windows']:,}; {rec['devices']} CPU device(s); "
          f"load average {load0[0]:.2f} before, {load1[0]:.2f} after")
    print(f"train  {rec['steps']} steps of batch 32: {rec['train_total_s']:.1f} s in all = "
          f"{rec['train_before_first_step_s']:.1f} s before the first step (of which the normaliser's scan of the "
          f"training rows {rec['scan_s']:.1f} s = {rec['scan_rows_per_s']:,.0f} rows/s; the rest: memory check "
          f"and compilation), {rec['train_first_step_s']:.1f} s first step, {rec['train_steps_s']:.1f} s for the "
          f"other {rec['steps'] - 1}: "
          f"{rec['train_windows_per_s']:,.0f} windows/s")
    print(f"score  {rec['score_windows']:,} windows: scorer fit {rec['scorer_fit_s']:.1f} s (16,384 windows), "
          f"scoring {rec['score_s']:.1f} s = {rec['score_windows_per_s']:,.0f} windows/s -> {rec['points']:,} "
          f"point scores ({'all finite' if rec['points_finite'] else 'NOT all finite'})")
    print(f"peak resident memory (ru_maxrss): {rec['peak_mb']:,.0f} MB (after JAX started: "
          f"{rec['peak_mb_after_jax_start']:,.0f} MB; after training: {rec['peak_mb_after_train']:,.0f} MB) "
          f"for a {gb:.2f} GB file")
    print("\n| file | windows (T 64, stride 1) | training rows' normaliser scan | training steps after the first | "
          "scoring | peak resident memory | of it, JAX started |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {args.rows:,} x {F} float32, {gb:.2f} GB | {rec['windows']:,} | {rec['scan_s']:.1f} s "
          f"({rec['scan_rows_per_s']:,.0f} rows/s) | {rec['steps'] - 1} in {rec['train_steps_s']:.1f} s "
          f"({rec['train_windows_per_s']:,.0f} windows/s) | {rec['score_windows']:,} windows in {rec['score_s']:.1f} s "
          f"({rec['score_windows_per_s']:,.0f} windows/s) | {rec['peak_mb']:,.0f} MB | "
          f"{rec['peak_mb_after_jax_start']:,.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

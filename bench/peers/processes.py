"""The batch split over the cores: D devices in one process vs D processes.

    python bench/peers/processes.py --config ecg --mode train --pairs 3

Both runs split each batch of the config over D = ``--devices`` parts (default:
one per core) and time the same library step:

- ``one process``: D CPU devices in one process (``la.use_all_cores()``,
  what the library and the ``jax-lstm-ae`` command do);
- ``D processes``: D processes on the loopback address, one CPU device
  each, each pinned to its own core (``os.sched_setaffinity``), joined by
  ``la.initialize_distributed``: the train step's gradients are summed over
  the processes (XLA's CPU collectives); ``encode`` needs no exchange.

The two kinds of run alternate ``--pairs`` times (each a fresh set of
processes, ``--seconds`` of steps after compiling) and each prints its median
step time; the ratio of medians is printed last. It shows how much of the
in-process split's loss (``bench/peers/scaling.py``: contention) is XLA:CPU
running several devices' programs in one process, and not the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _worker(args) -> None:
    """One process: build the config's model, time its step, print JSON."""
    sys.path.insert(0, str(HERE.parent))
    import jax_lstm_ae as la

    la.train.tune_cpu_allocator()
    if args.process_id is not None:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[args.process_id]})
        la.initialize_distributed(f"127.0.0.1:{args.port}", args.devices, args.process_id)
        mesh = la.make_data_mesh()  # one CPU device per process
    else:
        la.ask_for_cpu_devices(args.devices)
        mesh = la.make_data_mesh(args.devices)

    import jax

    from peers import CONFIGS
    from peers.jax_lstm_ae_peer import setup_with

    cfg = CONFIGS[args.config]
    model, opt, state, x, lengths = setup_with(la, cfg)
    if args.mode == "train":
        step = la.make_train_step(model, opt, mesh=mesh, global_batch=args.process_id is not None)
        batch = la.Batch(x, lengths)
        box = [state]

        def run():
            box[0], metrics = step(box[0], batch)
            jax.block_until_ready(metrics)
    else:
        share = cfg.batch // args.devices
        if args.process_id is not None:  # this process's rows, on its one device
            rows = slice(args.process_id * share, (args.process_id + 1) * share)
            xs, ls = x[rows], lengths[rows]
        else:
            from jax.sharding import NamedSharding, PartitionSpec

            xs, ls = jax.device_put((x, lengths), NamedSharding(mesh, PartitionSpec("data")))
        enc = jax.jit(model.encode)

        def run():
            jax.block_until_ready(enc(state.params, xs, ls))

    for _ in range(3):
        run()
    times, end = [], time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"ms": statistics.median(times) * 1e3, "steps": len(times)}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args, processes: bool) -> float:
    base = [sys.executable, __file__, "--_worker", "--config", args.config, "--mode", args.mode,
            "--devices", str(args.devices), "--seconds", str(args.seconds)]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if not processes:
        out = subprocess.run(base, env=env, capture_output=True, text=True, timeout=600, check=True)
        return json.loads(out.stdout.splitlines()[-1])["ms"]
    port = _free_port()
    procs = [subprocess.Popen(base + ["--process-id", str(i), "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(args.devices)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"a worker failed: {err[-2000:]}")
    # Every process runs the same steps (the train step waits on the all-reduce): take the slowest.
    return max(json.loads(o.splitlines()[-1])["ms"] for o, _ in outs)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="ecg")
    p.add_argument("--mode", default="train", choices=("train", "encode"))
    p.add_argument("--devices", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        return _worker(args)
    if args.devices > len(os.sched_getaffinity(0)):
        p.error(f"--devices {args.devices} is more than the {len(os.sched_getaffinity(0))} cores this process may use")
    one, many = [], []
    for _ in range(args.pairs):
        one.append(_launch(args, False))
        many.append(_launch(args, True))
        print(f"one process x {args.devices} devices {one[-1]:7.1f} ms/step   "
              f"{args.devices} processes x 1 device {many[-1]:7.1f} ms/step", flush=True)
    print(f"# {args.config} / {args.mode}: median {statistics.median(one):.1f} vs {statistics.median(many):.1f} ms/step; "
          f"one process / {args.devices} processes = {statistics.median(one) / statistics.median(many):.2f}")


if __name__ == "__main__":
    main()

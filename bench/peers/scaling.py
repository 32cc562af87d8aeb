"""Where the batch split over one CPU device per core loses time.

    python bench/peers/scaling.py --config ecg --mode train
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python bench/peers/scaling.py --config ecg --mode train

One process with D = ``--devices`` CPU devices (default: one per core). In
rounds, alternating, it times one step (ms) of:

- ``one device, B``: the whole batch on one device;
- ``one device, B/D``: one device's share of the batch, alone: the time the
  split step would take if the D devices did not slow each other;
- ``D devices, B/D each, no collective``: D independent single-device steps
  dispatched together (each on its own B/D rows), so the devices compete for
  the cores, memory bandwidth and XLA's thread pools, but exchange nothing;
- ``D devices, B (the split step)``: the library's data-parallel step
  (``make_train_step(..., mesh=)``), whose gradients are summed over devices.

Each variant's line also gives the process's CPU time over wall time (2.0:
both cores busy) and the busiest threads' shares: where the work runs
(XLA:CPU's client threads show as ``python``, its intra-op pool as
``tf_XLAEigen``).

Then: ``batch efficiency`` = (B time) / (D x B/D time), what halving the rows
costs each core; ``contention`` = (independent) / (B/D alone); ``collective``
= (split step) / (independent); ``scaling`` = (B time) / (split step time).
Encode and reconstruct have no collective (the rows are independent).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _thread_cpu() -> dict[str, tuple[str, float]]:
    """CPU seconds so far of each thread of this process, with its name (Linux /proc)."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as fh:
                name = fh.read().strip()
        except OSError:  # the thread ended
            continue
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="ecg")
    p.add_argument("--mode", default="train", choices=("train", "encode", "reconstruct"))
    p.add_argument("--devices", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    p.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                   help="tuned: jax_lstm_ae.train.tune_cpu_allocator() first, as throughput.py does")
    args = p.parse_args(argv)

    import jax_lstm_ae as la

    if args.allocator == "tuned":
        la.train.tune_cpu_allocator()
    la.ask_for_cpu_devices(args.devices)

    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    from peers import CONFIGS
    from peers.jax_lstm_ae_peer import setup_with

    cfg = CONFIGS[args.config]
    d = args.devices
    if cfg.batch % d:
        p.error(f"batch {cfg.batch} does not divide by {d} devices")
    devs = jax.devices("cpu")[:d]
    model, opt, state, x, lengths = setup_with(la, cfg)
    share = cfg.batch // d

    if args.mode == "train":
        single = jax.jit(la.train.train_step_fn(model, opt))
        split = la.make_train_step(model, opt, mesh=la.make_data_mesh(d), donate=False)
    else:
        fn = model.encode if args.mode == "encode" else model.reconstruct
        single = jax.jit(lambda s, b: fn(s.params, b.x, b.lengths))
        split = single  # the rows are independent: the sharded inputs say where each runs

    def on(dev, rows):
        return jax.device_put((state, la.Batch(x[:rows], lengths[:rows])), dev)

    whole = on(devs[0], cfg.batch)
    alone = on(devs[0], share)
    parts = [jax.device_put((state, la.Batch(x[i * share:(i + 1) * share], lengths[i * share:(i + 1) * share])), dv)
             for i, dv in enumerate(devs)]
    mesh = la.make_data_mesh(d)
    sharded = (jax.device_put(state, NamedSharding(mesh, PartitionSpec())),
               jax.device_put(la.Batch(x, lengths), NamedSharding(mesh, PartitionSpec("data"))))

    variants = {
        "one device, B": lambda: single(*whole),
        f"one device, B/{d}": lambda: single(*alone),
        f"{d} devices, B/{d} each, no collective": lambda: [single(*a) for a in parts],
        f"{d} devices, B (the split step)": lambda: split(*sharded),
    }
    for f in variants.values():  # compile and warm
        for _ in range(2):
            jax.block_until_ready(f())
    ms = {k: [] for k in variants}
    wall = dict.fromkeys(variants, 0.0)
    threads: dict[str, dict] = {k: {} for k in variants}  # variant -> thread id -> [name, CPU s]
    for r in range(args.rounds):
        names = list(variants)
        for k in names[r % len(names):] + names[: r % len(names)]:
            before = _thread_cpu()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                jax.block_until_ready(variants[k]())
            dt = time.perf_counter() - t0
            after = _thread_cpu()
            ms[k].append(dt / args.steps * 1e3)
            wall[k] += dt
            for tid, (name, cpu) in after.items():
                rec = threads[k].setdefault(tid, [name, 0.0])
                rec[1] += cpu - before.get(tid, (name, 0.0))[1]

    med = {k: statistics.median(v) for k, v in ms.items()}
    b, a, ind, sp = (med[k] for k in variants)
    print(f"# {args.config} / {args.mode}, B={cfg.batch}, {d} CPU devices, allocator {args.allocator}, "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    for k, v in ms.items():
        busy = sorted(((cpu / wall[k], name) for name, cpu in threads[k].values() if cpu > 0), reverse=True)
        top = ", ".join(f"{name} {share:.2f}" for share, name in busy[:4])
        print(f"{k:40s} median {med[k]:8.1f} ms   min {min(v):8.1f} ms   "
              f"CPU/wall {sum(share for share, _ in busy):.2f} ({top})")
    print(f"batch efficiency (B / ({d} x B/{d}))  {b / (d * a):.2f}")
    print(f"contention (independent / alone)     {ind / a:.2f}")
    print(f"collective (split / independent)     {sp / ind:.2f}")
    print(f"scaling (one device B / split)       {b / sp:.2f}  (ideal {d})")


if __name__ == "__main__":
    main()

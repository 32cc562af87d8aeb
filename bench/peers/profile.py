"""Where one device's step spends its time, per XLA operation (jax.profiler).

    python bench/peers/profile.py --config ecg --mode train --batch 32
    python bench/peers/profile.py --config ecg --mode encode --batch 32 --top 20

Traces ``--steps`` steps of the config's model on one CPU device (after
warming up) with ``jax.profiler.trace``, reads the trace back with
``jax.profiler.ProfileData`` and prints each XLA operation's *self* time per
step (its time minus the operations nested in it on the same thread, so a
``while`` loop's line is its own overhead, not its body's), summed over
threads, with the spread of its single events (a kernel XLA splits over its
intra-op threads lasts until its last part has run, so a long event next to
a short median is waiting, not work), and the same grouped by kind: ``ynn_fusion`` (XLA:CPU's YNNPACK
fusions: the products with the element-wise work fused around them),
other fusions (element-wise kernels), copies (layout changes and
transposes), ``while`` (loop control) and the rest. ``--batch`` sets B
(default: the config's; 32 is one device's half of ``ecg``'s batch).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RUNTIME = ("ThunkExecutor", "PjitFunction", "PjRt", "Execute", "$", "block_until_ready")


def _kind(name: str) -> str:
    if name.startswith("ynn_fusion"):
        return "ynn_fusion (products + fused element-wise)"
    if name.startswith("while"):
        return "while (loop control)"
    if "copy" in name or "transpose" in name:
        return "copies and transposes"
    if "fusion" in name:
        return "other fusions (element-wise)"
    return "other"


def self_times(pd) -> dict[str, list[float]]:
    """Self times (ns) of every XLA operation's events, by name, over all threads."""
    out: dict[str, list[float]] = collections.defaultdict(list)
    for plane in pd.planes:
        for line in plane.lines:
            events = sorted(((e.start_ns, e.duration_ns, e.name) for e in line.events), key=lambda e: (e[0], -e[1]))
            stack: list[list] = []  # open events: [end, name, duration, time of direct children]

            def close(rec):
                end, name, dur, child = rec
                if not name.startswith(RUNTIME):
                    out[name].append(dur - child)
                if stack:
                    stack[-1][3] += dur

            for start, dur, name in events:
                while stack and stack[-1][0] <= start:
                    close(stack.pop())
                stack.append([start + dur, name, dur, 0.0])
            while stack:
                close(stack.pop())
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="ecg")
    p.add_argument("--mode", default="train", choices=("train", "encode", "reconstruct"))
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)

    import jax_lstm_ae as la

    la.train.tune_cpu_allocator()
    import jax
    from jax.profiler import ProfileData

    from peers import CONFIGS
    from peers.jax_lstm_ae_peer import setup_with

    cfg = CONFIGS[args.config]
    b = args.batch or cfg.batch
    model, opt, state, x, lengths = setup_with(la, cfg)
    x, lengths = x[:b], lengths[:b]
    if args.mode == "train":
        fn, fargs = jax.jit(la.train.train_step_fn(model, opt)), (state, la.Batch(x, lengths))
    else:
        method = model.encode if args.mode == "encode" else model.reconstruct
        fn, fargs = jax.jit(method), (state.params, x, lengths)
    for _ in range(3):
        jax.block_until_ready(fn(*fargs))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                jax.block_until_ready(fn(*fargs))
            wall = (time.perf_counter() - t0) / args.steps
        pd = ProfileData.from_file(str(next(Path(d).rglob("*.xplane.pb"))))
        ops = self_times(pd)
    per_step = {k: sum(v) / args.steps / 1e6 for k, v in ops.items()}
    total = sum(per_step.values())
    print(f"# {args.config} / {args.mode}, B={x.shape[0]}, one CPU device: {wall * 1e3:.1f} ms per step (traced), "
          f"{total:.1f} ms of XLA operations per step over all threads")
    kinds: dict[str, float] = collections.defaultdict(float)
    for name, ms in per_step.items():
        kinds[_kind(name)] += ms
    print(f"\n| {args.config} {args.mode}, B={x.shape[0]}: kind of operation | ms per step | share |")
    print("| --- | ---: | ---: |")
    for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {ms:.1f} | {ms / total:.0%} |")
    print(f"\n| the {args.top} largest operations | ms per step | events per step | event min / median / max ms |")
    print("| --- | ---: | ---: | --- |")
    for name, ms in sorted(per_step.items(), key=lambda kv: -kv[1])[: args.top]:
        ev = sorted(ops[name])
        label = " ".join(name.split())[:60].replace("|", "/")
        print(f"| `{label}` | {ms:.2f} | {len(ev) / args.steps:.0f} | "
              f"{ev[0] / 1e6:.3f} / {ev[len(ev) // 2] / 1e6:.3f} / {ev[-1] / 1e6:.3f} |")


if __name__ == "__main__":
    main()

"""Throughput of jax_lstm_ae against PyTorch, Flax and Keras on the same autoencoder.

    python bench/throughput.py --config ecg --impl jax_lstm_ae,torch,flax --mode train
    python bench/throughput.py --config ecg,wide,braun --impl jax_lstm_ae,torch,torch_compile,flax,keras \\
        --mode train,encode,reconstruct --json results.json

Protocol (big_vision's Chrono habits): each implementation is built and run
until warm; that first part (tracing, compilation, autotuning) is reported
separately as ``compile_s``. Then ``--rounds`` rounds run the implementations
one after another, in a rotated order each round, each for about
``--round-s`` seconds, so a noisy shared machine slows them alike. A round
gives sequences/s per implementation; the table shows the median and the
min-max over rounds, and the ratio of this library to each peer is the median
of the per-round ratios. Peak memory is measured in a fresh subprocess per
implementation (peak RSS over the process's RSS before building the model);
for this library XLA's own buffer account of the compiled step is added.

``--impl jax_lstm_ae@reference`` (any backend name after ``@``) adds this
library on another layer backend, to compare backends in one run;
``torch@1`` runs PyTorch with one intra-op thread (its OpenMP threads suffer
most when other processes share the cores). ``jax_lstm_ae@fast_bf16`` (this
library with bfloat16 matmul operands) has its PyTorch counterpart in
``torch_bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the
forward pass and loss, under which oneDNN's fused LSTM runs in bfloat16
(``peers/torch_peer.py``).
``jax_lstm_ae`` runs as the library's defaults do on this machine: the
batch split over one CPU device per core (``la.use_all_cores()``, what the
``jax-lstm-ae`` command does); ``jax_lstm_ae:1`` is one device (what code
that does not ask for the split gets), ``jax_lstm_ae:N`` N devices.
``--devices N`` adds ``jax_lstm_ae:N`` beside each ``jax_lstm_ae`` spec. The
CPU devices are asked for before JAX starts (``jax_num_cpu_devices``); more
devices than cores shows the overhead of sharding, not a speed-up. A peer whose
package is missing is reported as unavailable, not a crash. Peers: ``pip
install -e .[bench]`` (torch==2.13.0, keras>=3; flax is a core dependency).

``--baseline PATH`` adds ``baseline``: this library as the checkout at PATH
has it (e.g. ``git worktree add ../old HEAD~5``), built in the same process,
so a change is measured before/after in one run.

The machine's limit is in every table: the run times a large float32 GEMM
(XLA, all cores; ``--gemm-n``) at its start and end and takes the faster;
each row gives the model's matmul FLOPs per step (``peers.model_flops``: the
LSTM and output products, backward counted as twice the forward), the
achieved GFLOP/s and that as a fraction of the GEMM rate.

``--allocator tuned`` (the default) calls ``jax_lstm_ae.tune_cpu_allocator()``
first: glibc then keeps freed heap memory mapped, so XLA's per-step
temporaries stop page-faulting. It is process-wide, so every implementation
in the run gets it; ``--allocator default`` measures glibc as it comes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import CONFIGS, IMPLS, MODES, build, model_flops  # noqa: E402

OURS = "jax_lstm_ae"


def _split_impl(spec: str) -> tuple[str, dict]:
    """``jax_lstm_ae@reference`` -> ("jax_lstm_ae", {"backend": "reference"});
    ``jax_lstm_ae:8`` -> ("jax_lstm_ae", {"devices": 8})."""
    spec, _, devices = spec.partition(":")
    name, _, backend = spec.partition("@")
    return name, ({"backend": backend} if backend else {}) | ({"devices": int(devices)} if devices else {})


def _cpu_devices(specs: list[str]) -> None:
    """One CPU device per core for the default ``jax_lstm_ae`` (and ``baseline``)
    spec, or the largest ``:N``; must run before JAX starts."""
    from jax_lstm_ae.train import ask_for_cpu_devices, cpu_cores

    wants = [_split_impl(s)[1].get("devices", cpu_cores() if _split_impl(s)[0] in (OURS, "baseline") else 1)
             for s in specs]
    ask_for_cpu_devices(max(wants + [1]))


def _status_bytes(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process. ``ru_maxrss`` would not
    do: Linux carries it over from the parent across fork + exec."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if field == "VmHWM" else 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _build_runner(spec, cfg, mode, opts):
    name, extra = _split_impl(spec)
    return build(name, cfg, mode, **{**opts, **extra})


def _child(args) -> None:
    """Subprocess: build one implementation, run a few steps, print its peak memory."""
    cfg = CONFIGS[args.config].with_steps(args.seq_len) if args.seq_len else CONFIGS[args.config]
    name, _ = _split_impl(args.impl)
    # Import the framework first so its import is not counted as the model's memory.
    __import__(IMPLS[name][0])
    base = _status_bytes("VmRSS")
    runner = _build_runner(args.impl, cfg, args.mode, _impl_options(args))
    for _ in range(3):
        runner.step()
    peak = _status_bytes("VmHWM")
    print(json.dumps({"peak_rss": peak, "base_rss": base, "framework_bytes": runner.memory()}))


def _measure_memory(args, spec, config, mode) -> dict:
    cmd = [sys.executable, __file__, "--_child", "--impl", spec, "--config", config, "--mode", mode]
    cmd += _option_argv(args)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.memory_timeout, check=True)
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        rec["peak_delta"] = rec["peak_rss"] - rec["base_rss"]
        return rec
    except (subprocess.SubprocessError, json.JSONDecodeError, IndexError) as err:
        return {"error": f"{type(err).__name__}: {str(err)[-300:]}"}


def _impl_options(args) -> dict:
    opts = {"backend": args.backend, "unroll": args.unroll, "remat": args.remat}
    return opts | ({"path": args.baseline} if args.baseline else {})


def _option_argv(args) -> list[str]:
    argv = ["--backend", args.backend, "--unroll", str(args.unroll), "--allocator", args.allocator]
    if args.remat:
        argv += ["--remat", str(args.remat)]
    if args.seq_len:
        argv += ["--seq-len", str(args.seq_len)]
    return argv


def run_one(args, config: str, mode: str, specs: list[str]) -> list[dict]:
    """All implementations on one (config, mode), alternating in rounds."""
    cfg = CONFIGS[config].with_steps(args.seq_len) if args.seq_len else CONFIGS[config]
    runners, records = {}, {}
    for spec in specs:
        rec = {"impl": spec, "config": config, "mode": mode, "B": cfg.batch, "T": cfg.steps, "F": cfg.features,
               "E": cfg.latent}
        records[spec] = rec
        t0 = time.perf_counter()
        try:
            runner = _build_runner(spec, cfg, mode, _impl_options(args))
            runner.step()  # trace + compile + first run
            rec["compile_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            for _ in range(args.warmup):
                runner.step()
            per_step = (time.perf_counter() - t1) / max(args.warmup, 1)
        except ImportError as err:
            rec["status"] = f"unavailable: {err}"
            print(f"  {spec}: unavailable ({err})", file=sys.stderr)
            continue
        except Exception as err:  # noqa: BLE001 - a failing peer is reported, not fatal
            rec["status"] = f"failed: {type(err).__name__}: {str(err)[:300]}"
            print(f"  {spec}: failed ({type(err).__name__}: {str(err)[:300]})", file=sys.stderr)
            continue
        rec["status"] = "ok"
        rec["versions"] = runner.versions
        rec["iters"] = max(1, int(round(args.round_s / max(per_step, 1e-6))))
        runners[spec] = runner
        print(f"  {spec}: compile {rec['compile_s']:.1f}s, ~{per_step * 1e3:.1f} ms/step, "
              f"{rec['iters']} steps/round", file=sys.stderr)

    order = list(runners)
    rates = {spec: [] for spec in order}
    for r in range(args.rounds):
        rot = order[r % len(order):] + order[: r % len(order)] if order else []
        for spec in rot:
            n = records[spec]["iters"]
            t0 = time.perf_counter()
            for _ in range(n):
                runners[spec].step()
            rates[spec].append(cfg.batch * n / (time.perf_counter() - t0))

    ours = next((s for s in order if _split_impl(s)[0] == OURS), None)
    for spec in order:
        rec, rs = records[spec], rates[spec]
        rec["seq_per_s"] = {"median": statistics.median(rs), "min": min(rs), "max": max(rs), "rounds": rs}
        rec["ms_per_step"] = cfg.batch / rec["seq_per_s"]["median"] * 1e3
    if ours is not None:
        for spec in order:
            per_round = [a / b for a, b in zip(rates[ours], rates[spec])]
            records[spec]["ours_over_this"] = statistics.median(per_round)
    if args.memory:
        for spec in order:
            records[spec]["memory"] = _measure_memory(args, spec, config, mode)
    return [records[s] for s in specs]


def gemm_gflops(n: int, reps: int = 7) -> float:
    """This machine's float32 GEMM rate through XLA (median of ``reps``)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    mm(a, a).block_until_ready()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        mm(a, a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def add_limits(records: list[dict], gemm: float) -> None:
    for rec in records:
        if rec.get("status") != "ok":
            continue
        cfg = CONFIGS[rec["config"]].with_steps(rec["T"])
        flop = model_flops(cfg, rec["mode"])
        rate = flop * rec["seq_per_s"]["median"] / cfg.batch / 1e9
        rec.update(gflop_per_step=flop / 1e9, gflops=rate, gemm_fraction=rate / gemm)


def _fmt_mb(x) -> str:
    return "-" if x is None else f"{x / 2**20:.0f}"


def table(records: list[dict]) -> str:
    lines = [
        "| config | mode | impl | seq/s median | seq/s min-max | ms/step | ours / this | GFLOP/step | GFLOP/s "
        "| of GEMM | compile s | peak MiB | XLA MiB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rec in records:
        head = f"| {rec['config']} | {rec['mode']} | {rec['impl']} "
        if rec.get("status") != "ok":
            lines.append(head + f"| {rec.get('status', '?')} | | | | | | | | | |")
            continue
        s = rec["seq_per_s"]
        mem = rec.get("memory", {})
        ratio = rec.get("ours_over_this")
        lines.append(
            head + f"| {s['median']:.0f} | {s['min']:.0f}-{s['max']:.0f} | {rec['ms_per_step']:.1f} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} | {rec['gflop_per_step']:.2f} | {rec['gflops']:.1f} | "
            f"{rec['gemm_fraction']:.0%} | {rec['compile_s']:.1f} | "
            f"{_fmt_mb(mem.get('peak_delta'))} | {_fmt_mb(mem.get('framework_bytes'))} |"
        )
    return "\n".join(lines)


# (config, mode, peer) -> the speed-up over that peer this library aims at, as the median per-round ratio.
TARGETS = {("ecg", "train", "torch"): 1.3, ("ecg", "train", "flax"): 2.0, ("ecg", "encode", "torch"): 1.3,
           ("wide", "train", "torch"): 1.1, ("braun", "train", "torch"): 1.2}


def targets_table(records: list[dict]) -> str | None:
    """The targets whose config, mode and peer this run measured: goal, the measured ratio, met or not."""
    ratio = {(r["config"], r["mode"], r["impl"]): r.get("ours_over_this") for r in records if r.get("status") == "ok"}
    rows = [(k, goal, ratio[k]) for k, goal in TARGETS.items() if ratio.get(k) is not None]
    if not rows:
        return None
    lines = ["| target | measured (median per-round ratio) | met |", "| --- | ---: | --- |"]
    lines += [f"| {c} {m}: ours >= {goal:.1f}x {peer} | {got:.2f}x | {'yes' if got >= goal else 'no'} |"
              for (c, m, peer), goal, got in rows]
    return "\n".join(lines)


def machine() -> dict:
    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    for mod in ("jax", "jaxlib", "flax", "optax", "torch", "keras", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - absent peers are simply not listed
            pass
    return info


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="ecg", help=f"comma list of {sorted(CONFIGS)}")
    p.add_argument("--impl", default="jax_lstm_ae,torch,flax", help=f"comma list of {sorted(IMPLS)} (name@backend)")
    p.add_argument("--mode", default="train", help=f"comma list of {MODES}")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--round-s", type=float, default=1.0, help="seconds per implementation per round (about)")
    p.add_argument("--warmup", type=int, default=2, help="steps after the first, before timing")
    p.add_argument("--backend", default="auto", help="jax_lstm_ae layer backend")
    p.add_argument("--unroll", type=int, default=1)
    p.add_argument("--remat", type=int, default=None, help="jax_lstm_ae: checkpoint the stacks in chunks of K steps")
    p.add_argument("--seq-len", type=int, default=None, help="override the config's T")
    p.add_argument("--devices", type=int, default=None, metavar="N",
                   help="also run jax_lstm_ae on N devices (spec jax_lstm_ae:N; 1: one device)")
    p.add_argument("--baseline", default=None, metavar="PATH",
                   help="also run this library as the checkout at PATH has it (impl 'baseline')")
    p.add_argument("--gemm-n", type=int, default=2048, help="size of the square float32 GEMM that measures the limit")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the per-impl memory subprocesses")
    p.add_argument("--memory-timeout", type=float, default=900)
    p.add_argument("--json", default=None, help="write one record per (impl, config, mode) here")
    p.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                   help="tuned: jax_lstm_ae.tune_cpu_allocator() at start-up, for every impl in this process\n"
                        "(glibc keeps freed heap mapped; what the jax-lstm-ae command does); default: glibc as is")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.allocator == "tuned":  # before any framework starts its threads
        from jax_lstm_ae.train import tune_cpu_allocator

        tune_cpu_allocator()
    if args._child:
        _cpu_devices([args.impl])
        return _child(args)

    specs = [s for s in args.impl.split(",") if s]
    if args.baseline and "baseline" not in {_split_impl(s)[0] for s in specs}:
        specs.append("baseline")
    if args.devices:  # the spec's name and backend on N devices, beside it
        more = [f"{s.partition(':')[0]}:{args.devices}" for s in specs if _split_impl(s)[0] == OURS]
        specs = list(dict.fromkeys(specs + more))
    _cpu_devices(specs)
    for s in specs:
        if _split_impl(s)[0] not in IMPLS:
            p.error(f"unknown impl {s!r}; choose from {sorted(IMPLS)}")
    configs = [c for c in args.config.split(",") if c]
    modes = [m for m in args.mode.split(",") if m]
    for c in configs:
        if c not in CONFIGS:
            p.error(f"unknown config {c!r}; choose from {sorted(CONFIGS)}")
    for m in modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r}; choose from {MODES}")

    info = machine()
    info["allocator"] = args.allocator
    print(f"# {info['date']} | {info['cpu']} | {info['cores']} cores | "
          + " ".join(f"{k} {v}" for k, v in info.items() if k not in ("date", "cpu", "cores")), flush=True)
    gemm_start = gemm_gflops(args.gemm_n)
    records = []
    for c in configs:
        for m in modes:
            print(f"[{c} / {m}]", file=sys.stderr, flush=True)
            records += run_one(args, c, m, specs)
    info["gemm_gflops"] = max(gemm_start, gemm_gflops(args.gemm_n))
    add_limits(records, info["gemm_gflops"])
    print(f"# float32 GEMM {args.gemm_n}x{args.gemm_n}: {info['gemm_gflops']:.0f} GFLOP/s (the limit)")
    print(table(records))
    goals = targets_table(records)
    if goals:
        print("\n" + goals)
    if args.json:
        out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": info, "records": records}
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""GPU benchmark of the LSTM layer backends (scan, fast, cudnn, pallas) against
PyTorch's cuDNN ``nn.LSTM`` and Flax's ``nn.RNN``, on one NVIDIA GPU.

One call on the GPU machine (from the repository root)::

    PYTHONPATH=.:bench PYTHONUNBUFFERED=1 python3 bench/gpu_bench.py \\
        --json $OUT/gpu_bench.json --max-seconds 540

Parts (``--parts``, a comma list; default ``floor,check,layer,model,sweep``):

* ``floor`` -- analytic work per training step of each config: matmul FLOPs,
  the bytes the saved activations must move, and the number of dependent
  (sequential) LSTM steps; needs no GPU.
* ``lower`` -- lower the configs' train step with the Pallas backends for
  CUDA and count the Triton kernels: a check that needs no GPU (not in the
  default list).
* ``check`` -- every backend against the plain scan on a small ragged batch
  (values and gradients, float32 at HIGHEST precision); a backend that fails
  is reported and left out of the timings.
* ``tune`` -- the Pallas kernel's settings (block_b, num_warps, hold_weights)
  on each layer shape of the configs (not in the default list: long).
* ``layer`` -- one layer, forward + backward, per backend and torch ``nn.LSTM``.
* ``model`` -- the train step of ``--configs`` (default ecg, wide): this
  library on each backend, torch (cuDNN, eager) and flax.
* ``sweep`` -- ecg train over B = 8 ... 4096: the best backends and torch.

Protocol (as bench/throughput.py): compilation and warm-up are timed apart
(``compile_s``); then ``--rounds`` rounds run the implementations one after
another in a rotated order, each for ``--round-s`` seconds; the table gives
the median and min-max of sequences/s over rounds, and ratios are medians of
per-round ratios. ``--max-seconds`` stops starting new work once spent (what
was skipped is printed), so one call fits the device's 10-minute limit;
results are written to ``--json`` after every item.

Precision: ``--precision default`` leaves each framework's default (JAX/XLA
and Pallas use TF32 for float32 dots on Hopper unless told otherwise; PyTorch
allows TF32 in cuDNN by default but not in its matmuls); ``highest`` turns
TF32 off on both sides and ``tf32`` on on both sides. The settings in force
are printed and recorded.

On a machine without a GPU everything still runs (Pallas in interpret mode,
cuDNN through its JAX reference, torch on CPU) -- use ``--smoke`` there to
check the script on tiny sizes; its timings mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from peers import CONFIGS, Config, layers_of  # noqa: E402

BACKENDS = ("reference", "fast", "cudnn", "pallas", "pallas_bf16")
PARTS = ("floor", "lower", "check", "tune", "layer", "model", "sweep")
SWEEP_BATCHES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

# ---------------------------------------------------------------- bookkeeping


class Clock:
    """Wall-clock budget: parts ask before starting an item."""

    def __init__(self, max_seconds: float):
        self.start = time.perf_counter()
        self.max_seconds = max_seconds
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.max_seconds - (time.perf_counter() - self.start)

    def allow(self, what: str, need: float = 20.0) -> bool:
        if self.left() < need:
            self.skipped.append(what)
            print(f"  [budget] skipped {what} ({self.left():.0f} s left)")
            return False
        return True


class Record:
    def __init__(self, path: str | None):
        self.path = path
        self.items: list[dict] = []
        self.meta: dict = {}

    def add(self, **item):
        self.items.append(item)
        self.flush()

    def flush(self):
        if self.path:
            Path(self.path).write_text(json.dumps({"meta": self.meta, "results": self.items}, indent=1, default=str))


def _sync_torch():
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    except ImportError:
        pass


def _measure(runners: dict, batch: int, rounds: int, round_s: float) -> dict:
    """runners: name -> step() (blocking). Rotated rounds; seq/s per round."""
    names = list(runners)
    per = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            step = runners[n]
            iters, t0 = 0, time.perf_counter()
            while True:
                step()
                iters += 1
                dt = time.perf_counter() - t0
                if dt >= round_s and iters >= 3:
                    break
            per[n].append(batch * iters / dt)
    return per


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": len(values)}


def _ratio(per: dict, a: str, b: str) -> float | None:
    if a not in per or b not in per:
        return None
    return statistics.median(x / y for x, y in zip(per[a], per[b]))


def _print_table(title: str, per: dict, batch: int, compile_s: dict, peers=("torch", "flax")):
    print(f"\n### {title} (B={batch}; sequences/s, median [min-max] over {len(next(iter(per.values())))} rounds)")
    print("| impl | seq/s | min-max | compile s | " + " | ".join(f"x {p}" for p in peers) + " |")
    print("| --- | ---: | --- | ---: | " + " | ".join("---:" for _ in peers) + " |")
    for n, v in per.items():
        s = _summary(v)
        ratios = []
        for p in peers:
            r = _ratio(per, n, p) if n != p else None
            ratios.append(f"{r:.2f}" if r is not None else "")
        print(f"| {n} | {s['median']:.0f} | {s['min']:.0f}-{s['max']:.0f} | {compile_s.get(n, float('nan')):.1f} | "
              + " | ".join(ratios) + " |")


# ---------------------------------------------------------------- floor


def _layers(cfg: Config):
    """(in_features, hidden, projects_inputs) of each LSTM layer of the model."""
    return layers_of(cfg)


def floor(cfg: Config) -> dict:
    """Analytic lower bounds for one training step (forward + backward)."""
    bt = cfg.batch * cfg.steps
    fwd = 0
    act_bytes = 0
    for f_in, h, projects in _layers(cfg):
        g = 4 * h
        fwd += 2 * bt * h * g + (2 * bt * f_in * g if projects else 2 * cfg.batch * f_in * g)
        # saved for the backward pass, written once and read once: gates [G], c [H], h [H]
        act_bytes += 2 * bt * (g + 2 * h) * 4
    fwd += 2 * bt * cfg.dec_sizes[-1] * cfg.features  # head
    n_layers = len(cfg.enc_sizes) + len(cfg.dec_sizes)
    # backward: d(inputs) and d(weights) GEMMs, each the size of the forward's
    return {
        "config": cfg.name, "batch": cfg.batch, "steps": cfg.steps,
        "train_gflop": 3 * fwd / 1e9, "activation_gbytes": act_bytes / 1e9,
        "sequential_steps": 2 * n_layers * cfg.steps,
    }


def part_floor(configs, rec, clock, args):
    print("\n### floor: work per training step (analytic)")
    print("| config | B | T | train GFLOP | activations GB moved | dependent steps |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for cfg in configs:
        f = floor(cfg)
        rec.add(part="floor", **f)
        print(f"| {cfg.name} | {cfg.batch} | {cfg.steps} | {f['train_gflop']:.1f} | "
              f"{f['activation_gbytes']:.3f} | {f['sequential_steps']} |")


# ---------------------------------------------------------------- lower


def part_lower(configs, rec, clock, args):
    """Cross-lower the train step for CUDA with compiled (not interpreted)
    Pallas kernels: every layer must pass the Pallas->Triton lowering."""
    import optax

    import jax_lstm_ae as la

    # On the GPU the Pallas backends compile their kernels (interpret mode is
    # only chosen where no accelerator is present).
    print("\n### lower: train step lowered for CUDA with the Pallas backends")
    for cfg in configs:
        for backend in ("pallas", "pallas_bf16"):
            kw = dict(backend=backend)
            model = la.make_autoencoder(la.lstm_encoder(cfg.enc_sizes, **kw), la.repeat(cfg.dec_sizes, **kw),
                                        la.linear(), features=cfg.features)
            opt = optax.adam(1e-3)
            state = jax.eval_shape(lambda k: la.create_train_state(model, opt, k), jax.random.key(0))
            batch = la.Batch(jax.ShapeDtypeStruct((cfg.batch, cfg.steps, cfg.features), jnp.float32),
                             jax.ShapeDtypeStruct((cfg.batch,), jnp.int32))
            try:
                text = jax.jit(la.train.train_step_fn(model, opt)).trace(state, batch).lower(
                    lowering_platforms=("cuda",)).as_text()
                n = text.count("xla.gpu.triton")
                print(f"  {cfg.name} {backend}: {n} Triton kernels")
                rec.add(part="lower", config=cfg.name, backend=backend, triton_kernels=n)
            except Exception as err:  # noqa: BLE001
                print(f"  {cfg.name} {backend}: FAILED {type(err).__name__}: {str(err)[:300]}")
                rec.add(part="lower", config=cfg.name, backend=backend, error=str(err)[:300])


# ---------------------------------------------------------------- layer functions


def _layer_fn(backend: str, **pallas_opts):
    """backend -> f(params, xs[B,T,F], lengths) -> hs[B,T,H] (with h and c folded in)."""
    from jax_lstm_ae.kernels.reference import lstm_layer

    if backend == "reference":
        def run(p, xs, lengths):
            hs, _ = jax.vmap(lambda x, n: lstm_layer(p, x, n))(xs, lengths)
            return hs
        return run
    if backend == "cudnn":
        from jax_lstm_ae.kernels.cudnn import cudnn_layer_xs

        def run(p, xs, lengths):
            z = jnp.zeros((xs.shape[0], p.w_h.shape[0]), jnp.float32)
            return cudnn_layer_xs(p, xs, lengths, z, z)[0]
        return run
    if backend.startswith("pallas"):
        from jax_lstm_ae.kernels.pallas import make_pallas_layer

        fn = make_pallas_layer(matmul_dtype=jnp.bfloat16 if backend == "pallas_bf16" else jnp.float32, **pallas_opts)
    else:
        from jax_lstm_ae.kernels.fast import lstm_fast as fn

    def run(p, xs, lengths):
        z = jnp.zeros((xs.shape[0], p.w_h.shape[0]), jnp.float32)
        gx = xs @ p.w_i + p.b[None, None, :]
        return fn(p, gx, lengths, z, z, reverse=False)[0]
    return run


def _layer_step(backend, p, xs, lengths, **pallas_opts):
    """A jitted forward+backward of one layer; returns a blocking step()."""
    run = _layer_fn(backend, **pallas_opts)
    w = jnp.asarray(np.random.default_rng(1).standard_normal(xs.shape[:2] + (p.w_h.shape[0],)), jnp.float32)
    grad = jax.jit(jax.grad(lambda p, xs: jnp.sum(run(p, xs, lengths) * w), argnums=(0, 1)))

    def step():
        jax.block_until_ready(grad(p, xs))

    return step


def _torch_layer_step(f_in, hidden, batch, steps):
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(f_in, hidden, batch_first=True).to(dev)
    xs = torch.randn(batch, steps, f_in, device=dev, requires_grad=True)
    w = torch.randn(batch, steps, hidden, device=dev)

    def step():
        lstm.zero_grad(set_to_none=True)
        xs.grad = None
        out, _ = lstm(xs)
        (out * w).sum().backward()
        _sync_torch()

    return step


def _params(f_in, hidden, seed=0):
    from jax_lstm_ae.nn import init_lstm

    return init_lstm(jax.random.key(seed), f_in, hidden)


# ---------------------------------------------------------------- check


def part_check(configs, rec, clock, args) -> set:
    """Backends vs the scan on a ragged batch; returns the set that failed."""
    print("\n### check: backends vs the scan (float32, HIGHEST precision, ragged lengths, values + grads)")
    broken = set()
    b, t, f, h = 24, 33, 7, 48
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.standard_normal((b, t, f)), jnp.float32)
    lengths = jnp.asarray(rng.integers(0, t + 1, b), jnp.int32)
    w = jnp.asarray(rng.standard_normal((b, t, h)), jnp.float32)
    p = _params(f, h)

    def outputs(backend):
        run = _layer_fn(backend)
        with jax.default_matmul_precision("highest"):
            loss = lambda p, xs: jnp.sum(run(p, xs, lengths) * w)  # noqa: E731
            return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(p, xs)

    want = outputs("reference")
    for backend in BACKENDS[1:]:
        if not clock.allow(f"check {backend}", 10):
            continue
        try:
            got = outputs(backend)
            err = max(float(jnp.max(jnp.abs(a - c))) for a, c in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
            scale = max(float(jnp.max(jnp.abs(c))) for c in jax.tree.leaves(want))
            tol = 3e-2 if backend.endswith("bf16") else 1e-3
            ok = err <= tol * max(1.0, scale)
            print(f"  {backend}: max abs error {err:.2e} (scale {scale:.2e}) -> {'ok' if ok else 'WRONG'}")
            rec.add(part="check", backend=backend, max_abs_err=err, scale=scale, ok=ok)
            if not ok:
                broken.add(backend)
        except Exception as err:  # noqa: BLE001 - report and go on
            print(f"  {backend}: FAILED {type(err).__name__}: {err}")
            traceback.print_exc(limit=3)
            rec.add(part="check", backend=backend, error=f"{type(err).__name__}: {err}", ok=False)
            broken.add(backend)
    return broken


# ---------------------------------------------------------------- tune


def part_tune(configs, rec, clock, args):
    """One setting changed at a time from the default (block_b=16, 4 warps,
    weights held when <= 64 KiB), per distinct (H, B, T): the kernel sees only
    gates, so F does not matter."""
    print("\n### tune: Pallas kernel settings per layer shape (forward+backward, ms)")
    shapes = sorted({(hd, cfg.batch, cfg.steps) for cfg in configs for _, hd, _ in _layers(cfg)})
    variants = [{}] + [{"block_b": b} for b in (32, 64)] + [{"num_warps": w} for w in (8, 16)] + [
        {"hold_weights": h} for h in (True, False)]
    rng = np.random.default_rng(0)
    for hidden, batch, steps in shapes:
        f_in = 8
        xs = jnp.asarray(rng.standard_normal((batch, steps, f_in)), jnp.float32)
        lengths = jnp.full((batch,), steps, jnp.int32)
        p = _params(f_in, hidden)
        runners, compile_s = {}, {}
        for backend in ("pallas", "pallas_bf16"):
            for opts in variants:
                name = backend + " " + (" ".join(f"{k}={v}" for k, v in opts.items()) or "default")
                if opts.get("block_b", 16) > max(16, batch) or not clock.allow(f"tune H={hidden} {name}"):
                    continue
                try:
                    t0 = time.perf_counter()
                    step = _layer_step(backend, p, xs, lengths, **{"block_b": 16, **opts})
                    step()
                    compile_s[name] = time.perf_counter() - t0
                    runners[name] = step
                except Exception as err:  # noqa: BLE001
                    print(f"  {name}: FAILED {type(err).__name__}: {str(err)[:200]}")
        if not runners:
            continue
        per = _measure(runners, batch, max(1, args.rounds // 2), args.round_s / 2)
        print(f"\nH={hidden} B={batch} T={steps}:")
        for n in sorted(per, key=lambda n: -statistics.median(per[n])):
            ms = 1e3 * batch / statistics.median(per[n])
            print(f"  {n}: {ms:.3f} ms (compile {compile_s[n]:.1f} s)")
            rec.add(part="tune", hidden=hidden, batch=batch, steps=steps, setting=n, ms=ms, compile_s=compile_s[n])


# ---------------------------------------------------------------- layer


def part_layer(configs, rec, clock, args, broken):
    shapes = sorted({(f_in, hd, cfg.batch, cfg.steps) for cfg in configs for f_in, hd, _ in _layers(cfg)})
    rng = np.random.default_rng(0)
    for f_in, hidden, batch, steps in shapes:
        if not clock.allow(f"layer {f_in}->{hidden}", 40):
            continue
        xs = jnp.asarray(rng.standard_normal((batch, steps, f_in)), jnp.float32)
        lengths = jnp.full((batch,), steps, jnp.int32)
        p = _params(f_in, hidden)
        runners, compile_s = {}, {}
        for backend in [b for b in BACKENDS if b not in broken]:
            try:
                t0 = time.perf_counter()
                step = _layer_step(backend, p, xs, lengths)
                step()
                compile_s[backend] = time.perf_counter() - t0
                runners[backend] = step
            except Exception as err:  # noqa: BLE001
                print(f"  {backend}: FAILED {type(err).__name__}: {str(err)[:300]}")
        try:
            t0 = time.perf_counter()
            step = _torch_layer_step(f_in, hidden, batch, steps)
            step()
            compile_s["torch"] = time.perf_counter() - t0
            runners["torch"] = step
        except Exception as err:  # noqa: BLE001
            print(f"  torch: unavailable ({type(err).__name__}: {err})")
        per = _measure(runners, batch, args.rounds, args.round_s)
        _print_table(f"layer F={f_in} -> H={hidden}, T={steps}, forward+backward", per, batch, compile_s,
                     peers=("torch", "reference"))
        for n, v in per.items():
            rec.add(part="layer", f_in=f_in, hidden=hidden, batch=batch, steps=steps, impl=n,
                    compile_s=compile_s[n], **_summary(v), x_torch=_ratio(per, n, "torch"))


# ---------------------------------------------------------------- model


def _torch_cuda_runner(cfg):
    """PyTorch nn.LSTM (cuDNN on a GPU), eager, the bench peer's model moved to the device."""
    import torch
    from torch import nn

    from peers._data import batch as data
    from peers.torch_peer import Autoencoder

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = Autoencoder(cfg).to(dev)
    x = torch.from_numpy(data(cfg)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), x)
        loss.backward()
        opt.step()
        loss.item()

    return step


def _model_runners(cfg, impls, broken):
    from peers import build

    runners, compile_s, memory = {}, {}, {}
    for impl in impls:
        t0 = time.perf_counter()
        try:
            if impl == "torch":
                step = _torch_cuda_runner(cfg)
                memory[impl] = _torch_peak_bytes
            elif impl == "flax":
                step = build("flax", cfg, "train").step
            else:
                backend = impl.split("@", 1)[1]
                if backend in broken:
                    continue
                runner = build("jax_lstm_ae", cfg, "train", backend=backend)
                step = runner.step
                memory[impl] = runner.memory  # XLA's buffer account of the compiled step (compiles again)
            step()
            step()
            compile_s[impl] = time.perf_counter() - t0
            runners[impl] = step
        except Exception as err:  # noqa: BLE001
            print(f"  {impl}: FAILED {type(err).__name__}: {str(err)[:300]}")
    return runners, compile_s, memory


def _torch_peak_bytes():
    import torch

    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None


def part_model(configs, rec, clock, args, broken):
    impls = [f"jax_lstm_ae@{b}" for b in BACKENDS] + ["torch", "flax"]
    for cfg in configs:
        if not clock.allow(f"model {cfg.name}", 90):
            continue
        runners, compile_s, memory = _model_runners(cfg, impls, broken)
        per = _measure(runners, cfg.batch, args.rounds, args.round_s)
        _print_table(f"{cfg.name} train", per, cfg.batch, compile_s)
        mem = {}
        for n, fn in memory.items():
            if n in per and clock.allow(f"memory {cfg.name} {n}", 60):
                try:
                    mem[n] = fn()
                except Exception as err:  # noqa: BLE001 - a diagnostic only
                    print(f"  memory of {n}: {type(err).__name__}: {err}")
        if mem:
            print("  memory (MB; jax: XLA's account of the compiled step, torch: peak allocated in the process): "
                  + ", ".join(f"{n}={(b or 0) / 2**20:.1f}" for n, b in mem.items()))
        for n, v in per.items():
            rec.add(part="model", config=cfg.name, batch=cfg.batch, impl=n, compile_s=compile_s[n], **_summary(v),
                    x_torch=_ratio(per, n, "torch"), x_flax=_ratio(per, n, "flax"), memory_bytes=mem.get(n))


def part_sweep(configs, rec, clock, args, broken):
    base = CONFIGS["ecg"] if not args.smoke else configs[0]
    impls = [f"jax_lstm_ae@{b}" for b in args.sweep_backends.split(",")] + ["torch"]
    print(f"\n### sweep: {base.name} train, sequences/s by batch size ({', '.join(impls)})")
    batches = SWEEP_BATCHES if not args.smoke else (2, 4)
    for b in batches:
        if not clock.allow(f"sweep B={b}", 60):
            continue
        cfg = dataclasses.replace(base, batch=b)
        runners, compile_s, _ = _model_runners(cfg, impls, broken)
        per = _measure(runners, b, max(2, args.rounds // 2), args.round_s / 2)
        line = "  ".join(f"{n}={statistics.median(v):.0f}" for n, v in per.items())
        print(f"  B={b}: {line}")
        for n, v in per.items():
            rec.add(part="sweep", config=base.name, batch=b, impl=n, compile_s=compile_s[n], **_summary(v),
                    x_torch=_ratio(per, n, "torch"))


# ---------------------------------------------------------------- main


def _meta(args) -> dict:
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": sys.argv, "jax": jax.__version__,
        "jax_backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "precision_flag": args.precision,
    }
    try:
        import torch

        meta.update(torch=torch.__version__, torch_cuda=torch.cuda.is_available(),
                    torch_cudnn=str(torch.backends.cudnn.version()),
                    torch_cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    torch_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
        if torch.cuda.is_available():
            meta["torch_device"] = torch.cuda.get_device_name()
    except ImportError:
        meta["torch"] = None
    try:
        import flax

        meta["flax"] = flax.__version__
    except ImportError:
        pass
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="floor,check,layer,model,sweep")
    ap.add_argument("--configs", default="ecg,wide")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-s", type=float, default=1.0)
    ap.add_argument("--max-seconds", type=float, default=540.0)
    ap.add_argument("--precision", choices=("default", "highest", "tf32"), default="default")
    ap.add_argument("--sweep-backends", default="cudnn,pallas")
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check the script on a CPU")
    args = ap.parse_args(argv)

    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        ap.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    if args.precision != "default":
        tf32 = args.precision == "tf32"
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "highest")
        try:
            import torch

            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
        except ImportError:
            pass
    configs = [CONFIGS[c] for c in args.configs.split(",")]
    if args.smoke:
        configs = [dataclasses.replace(c, batch=4, steps=6, features=min(c.features, 3), latent=4,
                                       enc_sizes=(8, 4), dec_sizes=(4, 8)) for c in configs[:1]]
        args.rounds, args.round_s = 2, 0.05

    clock = Clock(args.max_seconds)
    rec = Record(args.json)
    rec.meta = _meta(args)
    print("# jax_lstm_ae GPU benchmark")
    for k, v in rec.meta.items():
        print(f"- {k}: {v}")
    import jax_lstm_ae.kernels.cudnn  # noqa: F401 - register the GPU backends
    import jax_lstm_ae.kernels.pallas  # noqa: F401

    broken: set = set()
    if "floor" in parts:
        part_floor(configs, rec, clock, args)
    if "lower" in parts:
        part_lower(configs, rec, clock, args)
    if "check" in parts:
        broken = part_check(configs, rec, clock, args)
    if "tune" in parts:
        part_tune(configs, rec, clock, args)
    if "layer" in parts:
        part_layer(configs, rec, clock, args, broken)
    if "model" in parts:
        part_model(configs, rec, clock, args, broken)
    if "sweep" in parts:
        part_sweep(configs, rec, clock, args, broken)
    rec.meta["skipped"] = clock.skipped
    rec.meta["elapsed_s"] = time.perf_counter() - clock.start
    rec.flush()
    print(f"\ndone in {rec.meta['elapsed_s']:.0f} s; skipped: {clock.skipped or 'nothing'}")


if __name__ == "__main__":
    main()

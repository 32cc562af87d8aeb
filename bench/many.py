"""Many small models at once: K ECG-sized LSTM autoencoders, 200 steps each.

    python bench/many.py                  # K = 1, 8, 32 (about 10 minutes on 2 cores)
    python bench/many.py --k 128 --impl ours:map,ours:one_by_one,torch:loop,flax:loop,flax:vmap
    python bench/many.py --quick          # K = 1, 4; 20 steps; a smoke run

Each model: T 140, F 1, encoder LSTM 1 -> 32 (E 32), repeat decoder LSTM
32 -> 32, a per-step Linear 32 -> 1, MSE, Adam(1e-3) without clipping,
batches of B 32 drawn from 640 standard-normal sequences (20 steps an epoch;
every model its own seed). Implementations, all training K models to the end:

- ``ours:vmap``, ``ours:map``, ``ours:loop``: ``run_training_many`` with that
  strategy (one call; ``auto`` picks one of them, marked in the table), with
  ``mesh=use_all_cores()`` as the ``jax-lstm-ae`` command sets up (vmap and
  map split the K models over one CPU device per core; ``--one-device``: not);
- ``ours:one_by_one``: ``run_training`` called K times (our single-model path,
  with the same mesh: each batch split over the cores);
- ``torch:loop``: a Python loop over K ``nn.LSTM`` autoencoders
  (``peers.torch_peer.Autoencoder``), each its own Adam, the loop a user writes;
- ``torch:vmap``: the K models stacked with ``torch.func.stack_module_state``
  and trained with ``torch.func.vmap(grad(...))`` and one Adam over the
  stacked tensors (reported as unavailable where it fails);
- ``flax:loop``: a Python loop over K Flax linen autoencoders
  (``peers.flax_peer.Autoencoder``: ``nn.RNN`` over ``OptimizedLSTMCell``),
  one jitted Adam step compiled once and called for each model in turn;
- ``flax:vmap``: the same step under ``jax.vmap`` over K stacked params and
  Adam states (what ``nn.vmap`` of the module amounts to): one program, on one
  device.

Protocol: every implementation first trains its K models for one epoch (20
steps) to warm up: compilation included, those seconds are ``first s``. Then ``--reps`` rounds run them all
in a rotated order; the table gives the median seconds to train all K (and
the min-max), models per second, and the ratios of the medians.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

N, T, F, E, B = 640, 140, 1, 32, 32
IMPLS = ("ours:vmap", "ours:map", "ours:loop", "ours:one_by_one", "torch:loop", "torch:vmap", "flax:loop",
         "flax:vmap")


def _data():
    from jax_lstm_ae.data import Dataset

    x = np.random.default_rng(0).standard_normal((N, T, F), dtype=np.float32)
    return Dataset(x, np.full(N, T, np.int32))


MESH = None  # one CPU device per core (use_all_cores), unless --one-device


def ours(strategy: str, k: int, steps: int):
    from jax_lstm_ae.nn import ModelSpec
    from jax_lstm_ae.train import OptimizerSpec, TrainSpec, run_training
    from jax_lstm_ae.train.many import run_training_many

    data, spe = _data(), N // B
    model = ModelSpec(features=F, embedding_dim=E)
    specs = [TrainSpec(batch_size=B, epochs=max(steps // spe, 1), min_steps=0, val_fraction=0.0, seed=s,
                       optimizer=OptimizerSpec(learning_rate=1e-3, clip_norm=0.0)) for s in range(k)]
    if strategy == "one_by_one":
        return lambda: [run_training(model, s, data, mesh=MESH) for s in specs]
    return lambda: run_training_many(model, specs, data, strategy=strategy, mesh=MESH)


def torch_impl(kind: str, k: int, steps: int):
    import torch
    from torch import nn

    from peers import Config
    from peers.torch_peer import Autoencoder

    cfg = Config("many", B, T, F, E, (E,), (E,))
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((N, T, F), dtype=np.float32))
    spe = N // B

    def order(epoch):
        return torch.randperm(N, generator=torch.Generator().manual_seed(epoch))

    if kind == "loop":
        def run():
            for m in range(k):
                torch.manual_seed(m)
                model = Autoencoder(cfg)
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                for i in range(steps):
                    idx = order(i // spe)[(i % spe) * B:(i % spe + 1) * B]
                    xb = x[idx]
                    opt.zero_grad(set_to_none=True)
                    nn.functional.mse_loss(model(xb), xb).backward()
                    opt.step()
        return run

    from torch.func import functional_call, grad, stack_module_state, vmap

    def run():
        models = []
        for m in range(k):
            torch.manual_seed(m)
            models.append(Autoencoder(cfg))
        params, buffers = stack_module_state(models)
        base = Autoencoder(cfg).to("meta")
        opt = torch.optim.Adam(list(params.values()), lr=1e-3)

        def loss(p, b, xb):
            return nn.functional.mse_loss(functional_call(base, (p, b), (xb,)), xb)

        g = vmap(grad(loss))
        for i in range(steps):
            idx = torch.stack([order(i // spe)[(i % spe) * B:(i % spe + 1) * B]] * k)
            grads = g(params, buffers, x[idx])
            for name, p in params.items():
                p.grad = grads[name]
            opt.step()
    return run


@functools.lru_cache(maxsize=None)
def _flax_fns():
    """The jitted init and step, built once: the warm-up compiles what the timed rounds run."""
    import jax
    import jax.numpy as jnp
    import optax

    from peers.flax_peer import Autoencoder

    model, opt = Autoencoder((E,), (E,), F, T), optax.adam(1e-3)

    def one(p, o, xb):
        loss, g = jax.value_and_grad(lambda p: jnp.mean((model.apply(p, xb) - xb) ** 2))(p)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    def init(seed):
        p = model.init(jax.random.PRNGKey(seed), jnp.zeros((B, T, F), jnp.float32))
        return p, opt.init(p)

    return (jax.jit(init), jax.jit(one, donate_argnums=(0, 1)), jax.jit(jax.vmap(init)),
            jax.jit(jax.vmap(one, in_axes=(0, 0, None)), donate_argnums=(0, 1)))


def flax_impl(kind: str, k: int, steps: int):
    import jax
    import jax.numpy as jnp

    init, step, inits, steps_k = _flax_fns()
    spe = N // B
    x = np.random.default_rng(0).standard_normal((N, T, F), dtype=np.float32)
    orders = [np.random.default_rng(e).permutation(N) for e in range(steps // spe + 1)]
    xs = [jnp.asarray(x[orders[i // spe][(i % spe) * B:(i % spe + 1) * B]]) for i in range(steps)]

    if kind == "loop":
        def run():
            for m in range(k):
                p, o = init(m)
                for xb in xs:
                    p, o, loss = step(p, o, xb)
                jax.block_until_ready(loss)
        return run

    def run():
        p, o = inits(jnp.arange(k))
        for xb in xs:
            p, o, loss = steps_k(p, o, xb)
        jax.block_until_ready(loss)
    return run


def build(impl: str, k: int, steps: int):
    family, kind = impl.split(":")
    return {"ours": ours, "torch": torch_impl, "flax": flax_impl}[family](kind, k, steps)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", default="1,8,32", help="numbers of models, comma-separated")
    p.add_argument("--steps", type=int, default=200, help="training steps of each model (20 an epoch)")
    p.add_argument("--reps", type=int, default=None,
                   help="timed rounds after the warm-up (default: 3; 2 from K 32; 1 from K 64)")
    p.add_argument("--impl", default=",".join(IMPLS), help=f"comma-separated, of {', '.join(IMPLS)}")
    p.add_argument("--one-device", action="store_true", help="ours on one CPU device (default: one per core)")
    p.add_argument("--torch-vmap-max-k", type=int, default=1,
                   help="run torch:vmap up to this K, one round (it falls back to a loop per model inside: slow)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads for the torch rows (default: torch's own, one per core); 1 avoids "
                        "OpenMP's spinning barriers on a machine loaded by other work")
    p.add_argument("--quick", action="store_true", help="K = 1, 4 and 20 steps, one round: a smoke run")
    a = p.parse_args(argv)
    if a.quick:
        a.k, a.steps, a.reps = "1,4", 20, 1
    global MESH
    if not a.one_device:
        from jax_lstm_ae import use_all_cores

        MESH = use_all_cores()  # before JAX starts: what the jax-lstm-ae command does
    import jax
    import torch

    import flax

    if a.torch_threads is not None:
        torch.set_num_threads(a.torch_threads)

    from jax_lstm_ae.train.many import resolve_strategy

    auto = resolve_strategy("auto")
    impls = a.impl.split(",")
    print(f"# many models: T {T}, F {F}, H=E {E}, B {B}, {a.steps} steps each; jax {jax.__version__} on "
          f"{jax.default_backend()} ({len(jax.devices())} devices for ours), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), flax {flax.__version__}; "
          f"auto -> {auto}\n", flush=True)
    rows = []
    for k in [int(v) for v in a.k.split(",")]:
        reps = a.reps if a.reps is not None else (3 if k < 32 else 2 if k < 64 else 1)
        runs, first, times = {}, {}, {}
        for impl in impls:
            try:
                if impl == "torch:vmap" and k > a.torch_vmap_max_k:
                    continue
                warm = build(impl, k, min(a.steps, N // B))  # one epoch: compiles what the full run runs
                t0 = time.perf_counter()
                warm()
                first[impl], times[impl] = time.perf_counter() - t0, []
                runs[impl] = build(impl, k, a.steps)
            except Exception as e:  # a peer that cannot do this (torch.func over nn.LSTM) is reported, not fatal
                print(f"K {k} {impl}: unavailable ({type(e).__name__}: {str(e).splitlines()[0][:120]})", flush=True)
                runs.pop(impl, None)
        for r in range(reps):
            names = [i for i in runs if i != "torch:vmap" or r == 0]
            for impl in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                runs[impl]()
                times[impl].append(time.perf_counter() - t0)
                print(f"K {k} round {r + 1} {impl}: {times[impl][-1]:.2f} s", flush=True)
        med = {i: statistics.median(t) for i, t in times.items()}
        torch_best = min((med[i] for i in med if i.startswith("torch")), default=None)
        flax_best = min((med[i] for i in med if i.startswith("flax")), default=None)
        for impl, ts in times.items():
            rows.append((k, impl + (" (auto)" if impl == f"ours:{auto}" else ""), med[impl], min(ts), max(ts),
                         k / med[impl], first[impl], med.get("ours:one_by_one", float("nan")) / med[impl],
                         torch_best / med[impl] if torch_best else float("nan"),
                         flax_best / med[impl] if flax_best else float("nan")))
    print(f"\n`{' '.join(['python bench/many.py', *(sys.argv[1:] if argv is None else argv)])}`\n")
    print("| K | implementation | seconds (median) | min-max | models/s | first s | x one-by-one | x best torch | "
          "x best flax |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, name, m, lo, hi, mps, f, x1, xt, xf in rows:
        print(f"| {k} | {name} | {m:.2f} | {lo:.2f}-{hi:.2f} | {mps:.2f} | {f:.1f} | {x1:.2f} | {xt:.2f} | {xf:.2f} |")


if __name__ == "__main__":
    main()

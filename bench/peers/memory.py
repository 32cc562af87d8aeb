"""Training memory against sequence length, with and without ``remat``.

    python bench/peers/memory.py 1000,2000,5000,10000

XLA's own account of the compiled train step (the ``long`` config's model:
B=16, F=4, E=64, encoder F -> 128 -> 64, repeat decoder 64 -> 64 -> 128,
Adam): temporary buffers and arguments, for the "fast" backend without remat
and with ``remat=100`` (checkpoint every 100 steps). Compiles only; runs nothing.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import optax

import jax_lstm_ae as la

F, E, B = 4, 64, 16


def main(lengths: list[int]) -> None:
    for t in lengths:
        for remat in (None, 100):
            kw = dict(backend="fast", remat=remat)
            model = la.make_autoencoder(la.lstm_encoder((2 * E, E), **kw), la.repeat((E, 2 * E), **kw), features=F)
            opt = optax.adam(1e-3)
            state = la.create_train_state(model, opt, jax.random.PRNGKey(0))
            batch = la.Batch(jnp.zeros((B, t, F)), jnp.full((B,), t, jnp.int32))
            stats = jax.jit(la.train.train_step_fn(model, opt)).lower(state, batch).compile().memory_analysis()
            print(json.dumps({"T": t, "remat": remat, "temp_MiB": round(stats.temp_size_in_bytes / 2**20, 1),
                              "args_MiB": round(stats.argument_size_in_bytes / 2**20, 1)}), flush=True)


if __name__ == "__main__":
    main([int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "1000,2000,5000,10000").split(",")])

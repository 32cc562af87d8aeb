"""Flax linen: nn.RNN over nn.OptimizedLSTMCell, optax Adam, jitted step."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from peers import Runner
from peers._data import batch


class Autoencoder(nn.Module):
    enc_sizes: tuple[int, ...]
    dec_sizes: tuple[int, ...]
    features: int
    steps: int

    def encode(self, x):
        h = x
        carry = None
        for size in self.enc_sizes:
            carry, h = nn.RNN(nn.OptimizedLSTMCell(size), return_carry=True)(h)
        return carry[1]  # (c, h): the final h, [B, E]

    @nn.compact
    def __call__(self, x, encode_only: bool = False):
        z = self.encode(x)
        if encode_only:
            return z
        h = jnp.repeat(z[:, None, :], self.steps, axis=1)
        for size in self.dec_sizes:
            h = nn.RNN(nn.OptimizedLSTMCell(size))(h)
        return nn.Dense(self.features)(h)


def build(cfg, mode, **_) -> Runner:
    model = Autoencoder(cfg.enc_sizes, cfg.dec_sizes, cfg.features, cfg.steps)
    x = jnp.asarray(batch(cfg))
    params = model.init(jax.random.PRNGKey(0), x)
    versions = {"flax": flax.__version__, "jax": jax.__version__}
    if mode == "train":
        opt = optax.adam(1e-3)
        state = [params, opt.init(params)]

        @jax.jit
        def train(params, opt_state, x):
            loss, grads = jax.value_and_grad(lambda p: jnp.mean((model.apply(p, x) - x) ** 2))(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        def step():
            state[0], state[1], loss = train(state[0], state[1], x)
            jax.block_until_ready(loss)

        return Runner(step, versions)

    fn = jax.jit(lambda p, x: model.apply(p, x, encode_only=(mode == "encode")))

    def step():
        jax.block_until_ready(fn(params, x))

    return Runner(step, versions)

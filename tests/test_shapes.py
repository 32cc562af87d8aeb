"""The shape contracts of the public functions, checked at run time.

Each contract is written once with jaxtyping (the B/T/F/H/E/V/G letters of
``jax_lstm_ae._typing``) and checked by beartype on models of several sizes:
a letter must mean the same size across the arguments and results of a call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

jaxtyping = pytest.importorskip("jaxtyping", reason="jaxtyping (test extra) checks the shape contracts")
beartype = pytest.importorskip("beartype", reason="beartype (test extra) is the runtime checker")

import jax_lstm_ae as la  # noqa: E402
from jaxtyping import Array, Float, Int, jaxtyped  # noqa: E402

check = jaxtyped(typechecker=beartype.beartype)


@check
def encode(model: la.Autoencoder, params: dict, x: Float[Array, "B T F"], lengths: Int[Array, " B"]
           ) -> Float[Array, "B E"]:
    return model.encode(params, x, lengths)


@check
def encode_tokens(model: la.Autoencoder, params: dict, x: Int[Array, "B T"], lengths: Int[Array, " B"]
                  ) -> Float[Array, "B E"]:
    return model.encode(params, x, lengths)


@check
def reconstruct(model: la.Autoencoder, params: dict, x: Float[Array, "B T F"], lengths: Int[Array, " B"]
                ) -> Float[Array, "B T F"]:
    return model.reconstruct(params, x, lengths)


@check
def reconstruct_tokens(model: la.Autoencoder, params: dict, x: Int[Array, "B T"], lengths: Int[Array, " B"]
                       ) -> Float[Array, "B T V"]:
    return model.reconstruct(params, x, lengths)


@check
def step_errors(model: la.Autoencoder, params: dict, x: Float[Array, "B T F"], lengths: Int[Array, " B"]
                ) -> Float[Array, "B T"]:
    return model.step_errors(params, x, lengths)


@check
def decode(model: la.Autoencoder, params: dict, z: Float[Array, "B E"], lengths: Int[Array, " B"], steps: int
           ) -> Float[Array, "B T F"]:
    return model.decode(params, z, lengths, steps=steps)


@check
def loss(model: la.Autoencoder, params: dict, x: Float[Array, "B T F"], lengths: Int[Array, " B"]
         ) -> Float[Array, ""]:
    return model.loss(params, x, lengths, jax.random.PRNGKey(0))


@check
def stack(layers: list, xs: Float[Array, "B T F"], lengths: Int[Array, " B"], backend: str
          ) -> tuple[Float[Array, "B T H"], list]:
    return la.nn.lstm_stack_batched(layers, xs, lengths, backend=backend)


@check
def stack_one(layers: list, xs: Float[Array, "T F"], length: Int[Array, ""]) -> tuple[Float[Array, "T H"], list]:
    return la.nn.lstm_stack(layers, xs, length)


@check
def state(h: Float[Array, "B H"], c: Float[Array, "B H"]) -> None:
    del h, c


@pytest.mark.parametrize("b,t,f,e", [(3, 5, 2, 4), (1, 9, 4, 6)])
def test_model_contracts(b, t, f, e):
    x = jax.random.normal(jax.random.PRNGKey(0), (b, t, f))
    lengths = jnp.full((b,), t, jnp.int32).at[0].set(max(1, t - 2))
    for dec in (la.repeat((e, 2 * e)), la.teacher_forced((e,))):
        model = la.make_autoencoder(la.lstm_encoder((2 * e, e)), dec, la.linear(), features=f)
        params = model.init(jax.random.PRNGKey(1))
        z = encode(model, params, x, lengths)
        assert z.shape == (b, e)
        reconstruct(model, params, x, lengths)
        step_errors(model, params, x, lengths)
        decode(model, params, z, lengths, t)
        loss(model, params, x, lengths)
    v = 7
    tokens = jax.random.randint(jax.random.PRNGKey(2), (b, t), 0, v)
    model = la.make_autoencoder(la.lstm_encoder((e,), vocab_size=v), la.repeat((e,)))
    params = model.init(jax.random.PRNGKey(1))
    encode_tokens(model, params, tokens, lengths)
    assert reconstruct_tokens(model, params, tokens, lengths).shape == (b, t, v)


@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_stack_contracts(backend):
    b, t, f, h = 2, 6, 3, 5
    layers = la.nn.init_stack(jax.random.PRNGKey(0), f, (4, h))
    xs = jax.random.normal(jax.random.PRNGKey(1), (b, t, f))
    lengths = jnp.array([6, 2], jnp.int32)
    hs, finals = stack(layers, xs, lengths, backend)
    assert hs.shape == (b, t, h)
    for fin in finals:
        state(fin.h, fin.c)
    stack_one(layers, xs[0], lengths[0])


def test_a_broken_contract_is_caught():
    """The checker really runs: a latent of the wrong width fails."""
    model = la.make_autoencoder(la.lstm_encoder((4,)), la.repeat((4,)), features=2)
    params = model.init(jax.random.PRNGKey(0))
    with pytest.raises(jaxtyping.TypeCheckError):
        decode(model, params, jnp.zeros((2, 4)), jnp.ones((3,), jnp.int32), 5)

"""The "fast_bf16" backend: the "fast" kernels with bfloat16 matmul operands.

Values and gradients are compared with the float32 "reference" backend by the
relative error of each array as a whole, ||a - ref|| / ||ref||. bfloat16 keeps
8 significant bits: rounding an operand costs a relative error of up to 2^-9
(its unit roundoff, 2.0e-3), a product of rounded operands a few of those, and
the recurrence carries them on over the steps; the backward pass starts from
the forward's rounded activations and adds its own. Measured on the CASES
below over ten seeds each: values (outputs, final states, loss) at most
1.3e-2, gradients at most 3.2e-2 (both for the layer with F = 200 inputs and
H = 8, whose gate pre-activations have a spread of about 3, so the gates
saturate and their derivatives amplify the error; below 1.2e-2 in the other
cases). The bounds, VALUE_REL = 2e-2 and GRAD_REL = 5e-2, are about 10 and
25 unit roundoffs, three orders of magnitude above float32's differences
(2e-5 in ``tests/test_fast.py``). The float32 "fast" path is unchanged: its own
tests keep their float32 tolerances, and here no bfloat16 value appears in
its program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jex_core

import jax_lstm_ae as la
from jax_lstm_ae.backends import lstm_stack_batched
from jax_lstm_ae.kernels import fast as _fast
from jax_lstm_ae.kernels.cell import LSTMState

B, T = 5, 9
LENGTHS = jnp.array([9, 3, 1, 7, 0], jnp.int32)  # ragged, a full row and an empty one
VALUE_REL, GRAD_REL = 2e-2, 5e-2  # module doc


def _rel(a, ref) -> float:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-30))


def _within_bf16(got, ref):
    """``got`` and ``ref`` are (values, gradients) pairs: every leaf within
    VALUE_REL / GRAD_REL of the reference."""
    for part, bound in zip((0, 1), (VALUE_REL, GRAD_REL)):
        errs = [_rel(a, b) for a, b in zip(jax.tree.leaves(got[part]), jax.tree.leaves(ref[part]), strict=True)]
        assert max(errs) < bound, (part, errs)


# (features, layer sizes, bidirectional, initial states): the input product in
# the loop (few features) and hoisted out of it (many), a 2-layer stack, a
# bidirectional stack whose second layer reads 2H features.
CASES = [
    (1, (16, 8), False, False),
    (3, (8, 4), True, False),
    (_fast.IN_LOOP_MAX_FEATURES + 72, (8,), True, False),
    (4, (12, 6), False, True),
]


def _stack_loss(layers, x, h0, c0, backend):
    states = None if h0 is None else [LSTMState(h, c) for h, c in zip(h0, c0)]
    hs, fins = lstm_stack_batched(layers, x, LENGTHS, states, backend=backend)
    return jnp.sum(jnp.sin(hs) * hs) + sum(jnp.sum(jnp.cos(f)) for f in jax.tree.leaves(fins)), (hs, fins)


def _case(features, sizes, bidirectional, with_states, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    layers = la.nn.init_stack(k[0], features, sizes, bidirectional=bidirectional)
    x = jax.random.normal(k[1], (B, T, features))
    if not with_states:
        return layers, x, None, None
    h0 = [jax.random.normal(jax.random.fold_in(k[2], i), (B, s)) for i, s in enumerate(sizes)]
    c0 = [jax.random.normal(jax.random.fold_in(k[3], i), (B, s)) for i, s in enumerate(sizes)]
    return layers, x, h0, c0


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"F{c[0]}-{'x'.join(map(str, c[1]))}{'-bi' if c[2] else ''}"
                                                      f"{'-h0' if c[3] else ''}")
def test_stack_values_and_gradients_within_bf16_tolerance(case):
    layers, x, h0, c0 = _case(*case)
    argnums = (0, 1) if h0 is None else (0, 1, 2, 3)
    run = jax.jit(jax.value_and_grad(_stack_loss, argnums=argnums, has_aux=True), static_argnums=4)
    ref, got, f32 = (run(layers, x, h0, c0, b) for b in ("reference", "fast_bf16", "fast"))
    _within_bf16(got, ref)
    # bfloat16 did round something: fast_bf16 is not the float32 path
    assert max(_rel(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(f32))) > 1e-4
    hs = np.asarray(got[0][1][0])
    mask = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
    assert np.all(hs[~mask] == 0.0)  # padded steps stay exactly zero
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(got))


def test_every_first_input_of_the_layer_function():
    """``lstm_fast`` (precomputed gates) and the stack's constant-gates layer 0."""
    layers, x, _, _ = _case(3, (6,), False, False, seed=1)
    p = layers[0]
    gx = x @ p.w_i + p.b[None, None]
    h0 = jax.random.normal(jax.random.PRNGKey(2), (B, 6))

    def loss(p, gx, h0, mm):
        hs, h, c = _fast.lstm_fast(p, gx, LENGTHS, h0, h0 * 0.5, reverse=True, matmul_dtype=mm)
        return jnp.sum(jnp.sin(hs)) + jnp.sum(h * c)

    grad = jax.value_and_grad(loss, argnums=(0, 1, 2))
    _within_bf16(grad(p, gx, h0, jnp.bfloat16), grad(p, gx, h0, jnp.float32))

    def const_loss(layers, g, mm):
        hs, fins = _fast.stack_fast(layers, g, LENGTHS, [None], first="const", steps=T, matmul_dtype=mm)
        return jnp.sum(jnp.sin(hs)) + jnp.sum(fins[0].c)

    g = gx[:, 0]
    grad = jax.value_and_grad(const_loss, argnums=(0, 1))
    _within_bf16(grad(layers, g, jnp.bfloat16), grad(layers, g, jnp.float32))


def _dots(jaxpr) -> list:
    """Every dot_general equation in a jaxpr, sub-jaxprs (scan bodies, custom VJPs) included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jex_core.ClosedJaxpr):
                    found += _dots(sub.jaxpr)
                elif isinstance(sub, jex_core.Jaxpr):
                    found += _dots(sub)
    return found


def test_every_product_takes_bf16_operands_and_sums_in_float32():
    """In the training gradient of a stack with both input-product paths:
    every matmul of "fast_bf16" (forward and backward, weight gradients
    included) reads bf16 and writes float32; "fast" has no bf16 at all."""
    layers, x, _, _ = _case(_fast.IN_LOOP_MAX_FEATURES + 2, (6, 4), False, False)

    def grad_jaxpr(backend):
        return jax.make_jaxpr(jax.grad(lambda l, x: _stack_loss(l, x, None, None, backend)[0], argnums=(0, 1)))(
            layers, x)

    dots = _dots(grad_jaxpr("fast_bf16").jaxpr)
    # per layer: forward h @ w_h and x @ w_i, backward dz @ w_h^T, dW_h, dW_i and dx
    assert len(dots) == 12
    for eqn in dots:
        assert [v.aval.dtype for v in eqn.invars] == [jnp.bfloat16] * 2, eqn
        assert eqn.outvars[0].aval.dtype == jnp.float32, eqn
    assert "bf16" not in str(grad_jaxpr("fast"))


def test_a_model_trains_on_fast_bf16_like_float32():
    """Built from a ModelSpec (the field config.json stores): loss and
    gradients of the whole autoencoder near the float32 reference, and a
    few Adam steps lower the loss as float32's do."""
    spec = la.ModelSpec(features=2, embedding_dim=8, backend="fast_bf16")
    assert spec.backend == "fast_bf16" and la.ModelSpec.from_dict(spec.to_dict()) == spec
    models = {b: la.build(la.ModelSpec(features=2, embedding_dim=8, backend=b)) for b in ("reference", "fast_bf16")}
    x = jnp.sin(jnp.linspace(0, 6, T)[None, :, None] * jnp.arange(1, B + 1)[:, None, None]) * jnp.ones((1, 1, 2))
    lengths = jnp.maximum(LENGTHS, 1)
    params = models["reference"].init(jax.random.PRNGKey(0))
    got = {b: jax.value_and_grad(m.loss)(params, x, lengths) for b, m in models.items()}
    _within_bf16(got["fast_bf16"], got["reference"])
    losses = {}
    for b, model in models.items():
        opt = la.make_optimizer(1e-2)
        state = la.create_train_state(model, opt, jax.random.PRNGKey(0))
        step = la.make_train_step(model, opt)
        for _ in range(20):
            state, metrics = step(state, la.Batch(x, lengths))
        losses[b] = float(metrics["loss"])
    assert losses["fast_bf16"] < float(got["reference"][0]) * 0.8
    assert abs(losses["fast_bf16"] - losses["reference"]) < VALUE_REL * losses["reference"], losses

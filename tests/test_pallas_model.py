"""The GPU backends inside a whole model, as ``backend=`` names:
the seed autoencoder's loss and gradients with ``backend="pallas"`` and
``backend="cudnn"`` equal the plain scan's (on CPU: Pallas interpret mode and
cuDNN's JAX reference; tiny sizes)."""

import jax
import jax.numpy as jnp
import numpy as np

from jax_lstm_ae import recurrent_autoencoder

B, T, F, E = 3, 5, 2, 4


def _loss_and_grads(backend):
    model = recurrent_autoencoder(F, E, backend=backend)
    params = model.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, F)), jnp.float32)
    lengths = jnp.array([5, 2, 4], jnp.int32)
    step = jax.jit(jax.value_and_grad(lambda p: model.loss(p, x, lengths)))
    opts = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
    with jax.default_matmul_precision("highest"):  # no TF32 on a GPU: same maths on every backend
        return step.trace(params).lower().compile(compiler_options=opts)(params)


def test_pallas_and_cudnn_backends_train_like_the_scan():
    want = _loss_and_grads("reference")
    for backend in ("pallas", "cudnn"):
        got = _loss_and_grads(backend)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5, err_msg=backend)

"""The fused Pallas kernels against the scan reference: values and gradients.

On CPU the kernels run in interpret mode (slow, so the shapes are tiny); the
GPU test compiles them with Triton and is skipped without a GPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lstm_ae.kernels.cell import LSTMParams, LSTMState
from jax_lstm_ae.kernels.pallas import make_pallas_layer, padded_hidden, pallas_layer
from jax_lstm_ae.kernels.reference import project_inputs, scan_gates

gpu_only = pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs an NVIDIA GPU (Triton)")

# H=5 pads to 16 units; B=19 with 16-example tiles pads to 32 (two programs);
# lengths cover full, partial, one step and empty; the second tile's longest
# length is 4 < T, so the kernels skip its last steps.
B, T, F, H = 19, 6, 3, 5
LENGTHS = np.array([6, 3, 1, 0, 5] + [4] * 14, np.int32)


def _data():
    """Drawn with NumPy (no compilation); PyTorch's uniform init for the weights."""
    rng = np.random.default_rng(0)
    bound = 1 / np.sqrt(H)
    params = LSTMParams(*(jnp.asarray(rng.uniform(-bound, bound, s), jnp.float32)
                          for s in ((F, 4 * H), (H, 4 * H), (4 * H,))))
    # weights: a fixed random readout so every output element gets its own cotangent
    xs, h0, c0, weights = (jnp.asarray(a, jnp.float32) for a in (
        rng.normal(size=(B, T, F)), 0.5 * rng.normal(size=(B, H)), 0.5 * rng.normal(size=(B, H)),
        rng.normal(size=(B, T, H))))
    return params, xs, h0, c0, weights


def scan_reference(params, gates_x, lengths, h0, c0, *, reverse=False):
    hs, (h, c) = jax.vmap(lambda g, n, h, c: scan_gates(params, g, n, LSTMState(h, c), reverse=reverse))(
        gates_x, lengths, h0, c0
    )
    return hs, h, c


def _loss(layer_fn, reverse, weights, lengths):
    def loss(params, xs, h0, c0):
        gx = jax.vmap(project_inputs, in_axes=(None, 0))(params, xs)
        out = layer_fn(params, gx, lengths, h0, c0, reverse=reverse)
        hs, h, c = out
        return jnp.sum(hs * weights) + jnp.sum(jnp.sin(h)) + jnp.sum(c * c), out

    return loss


def _outputs_and_grads(layer_fn, reverse, weights, lengths):
    """One compiled program: layer outputs and d loss / d (params, xs, h0, c0).

    Compiled with XLA's backend optimisations off: interpret-mode kernels are
    large programs and this halves the test time; the numerics are the same
    to float32 rounding.
    """
    grad = jax.grad(_loss(layer_fn, reverse, weights, lengths), argnums=(0, 1, 2, 3), has_aux=True)
    jitted = jax.jit(lambda *a: grad(*a)[::-1])

    def run(*args):
        opts = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
        # float32 dots everywhere (no TF32 on a GPU), so both sides compute the same maths
        with jax.default_matmul_precision("highest"):
            return jitted.trace(*args).lower().compile(compiler_options=opts)(*args)

    return run


_REFERENCE_CACHE = {}


def _reference(reverse):
    """Scan outputs and gradients on _data(), computed once per direction."""
    if reverse not in _REFERENCE_CACHE:
        params, xs, h0, c0, weights = _data()
        _REFERENCE_CACHE[reverse] = _outputs_and_grads(scan_reference, reverse, weights, jnp.asarray(LENGTHS))(
            params, xs, h0, c0
        )
    return _REFERENCE_CACHE[reverse]


def _assert_close(a, b, atol, rtol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol)


def test_padded_hidden():
    assert [padded_hidden(h) for h in (1, 5, 16, 17, 64, 100)] == [16, 16, 16, 32, 64, 128]


@pytest.mark.parametrize("reverse", [False, True])
def test_float32_values_and_gradients_match_scan(reverse):
    params, xs, h0, c0, weights = _data()
    lengths = jnp.asarray(LENGTHS)
    fn = make_pallas_layer(block_b=16)
    got, got_g = _outputs_and_grads(fn, reverse, weights, lengths)(params, xs, h0, c0)
    want, want_g = _reference(reverse)
    _assert_close(got, want, atol=1e-6)
    # padded steps emit exact zeros; an empty example keeps its initial state
    assert not np.any(np.asarray(got[0])[LENGTHS[:, None] <= np.arange(T)[None, :]])
    np.testing.assert_array_equal(np.asarray(got[1])[3], np.asarray(h0)[3])

    assert isinstance(got_g[0], LSTMParams)
    _assert_close(got_g, want_g, atol=2e-5, rtol=1e-5)


def test_bfloat16_matmul_stays_close_to_float32():
    """bf16 operands, float32 state: within bf16 rounding of the float32 scan."""
    params, xs, h0, c0, weights = _data()
    lengths = jnp.asarray(LENGTHS)
    fn = make_pallas_layer(matmul_dtype=jnp.bfloat16, block_b=16)
    got, got_g = _outputs_and_grads(fn, True, weights, lengths)(params, xs, h0, c0)
    want, want_g = _reference(True)
    _assert_close(got, want, atol=2e-2)
    assert got[0].dtype == jnp.float32
    # the rounding is real (this is not the float32 kernel)
    assert float(jnp.max(jnp.abs(got[0] - want[0]))) > 1e-7

    for a, b in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g)):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=3e-2 * scale)


def test_rejects_wrong_shapes():
    params, xs, h0, c0, _ = _data()
    gx = jnp.zeros((B, T, 4 * H + 1))
    with pytest.raises(ValueError, match="G = 4H"):
        pallas_layer(params, gx, jnp.asarray(LENGTHS), h0, c0)
    with pytest.raises(ValueError, match=r"\(B, T, G\)"):
        pallas_layer(params, gx[0], jnp.asarray(LENGTHS), h0, c0)


def test_kernels_lower_for_cuda_triton():
    """Without a GPU, check that both kernels pass the Pallas->Triton lowering
    (power-of-two tiles, supported primitives) by lowering for CUDA."""
    params, xs, h0, c0, weights = _data()
    lengths = jnp.asarray(LENGTHS)
    fn = make_pallas_layer(matmul_dtype=jnp.bfloat16, interpret=False)
    lowered = jax.jit(jax.grad(_loss(fn, True, weights, lengths), has_aux=True)).trace(params, xs, h0, c0)
    text = lowered.lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("xla.gpu.triton") == 2  # forward and backward kernels


@gpu_only
@pytest.mark.parametrize("matmul_dtype", [jnp.float32, jnp.bfloat16])
def test_compiled_kernels_on_gpu(matmul_dtype):
    params, xs, h0, c0, weights = _data()
    lengths = jnp.asarray(LENGTHS)
    fn = make_pallas_layer(matmul_dtype=matmul_dtype)
    want, want_g = _reference(False)
    got, got_g = _outputs_and_grads(fn, False, weights, lengths)(params, xs, h0, c0)
    tol = 1e-4 if matmul_dtype == jnp.float32 else 3e-2
    _assert_close(got, want, atol=tol)
    for a, b in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=tol * max(1.0, float(jnp.max(jnp.abs(b)))))

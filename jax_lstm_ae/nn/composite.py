"""The composite model of Srivastava et al. (2015): one encoder, two decoders.

One encoder reads the past; a *reconstruction* decoder rebuilds it (often in
reverse order) and a *prediction* decoder produces the next K steps, both
from the same latent z, trained jointly:

    loss = mean_{valid past steps} err(recon, past)
         + predict_weight * mean_{K future steps} err(pred, future)

Each example of a batch x[B, T, F] with lengths[B] holds its past and its
future back to back: the past is the first ``length - K`` steps, the future
the K steps after it (``join_future`` builds such a batch from separate
(past, future) arrays). Lengths must lie in [K, T]; a length-0 row (the
padding rows data parallelism adds) adds nothing to either term.

Either decoder may be left out: without the reconstructor this is a plain
sequence-to-sequence predictor, e.g. Keras's ``LSTM -> RepeatVector(n_out) ->
LSTM -> Dense`` with n_out != n_in (``predict`` returns [B, K, F]).

    model = make_composite(lstm_encoder((32,)), reconstructor=conditional((32,), reverse_target=True),
                           predictor=conditional((32,)), horizon=5, features=F)
    state = create_train_state(model, optimizer, key)      # jax_lstm_ae.train
    train_step = make_train_step(model, optimizer)          # the library's step, unchanged

The model exposes ``init`` / ``loss`` / ``encode`` with the
:class:`~jax_lstm_ae.nn.model.Autoencoder`'s signatures, so
``train.make_train_step`` and ``make_eval_step`` take it as they are.

When it helps (Srivastava et al. 2015, Sec. 3): reconstruction alone lets a
decoder memorise the input, and prediction alone only needs the last few
steps; together the latent has to keep the whole past *and* what it implies
about the future, which gave better features for downstream classifiers on
their video data. Use it when sequences continue (series, trajectories) and
the latent feeds a probe or a forecaster; for plain anomaly scoring of
fixed windows the autoencoder is simpler.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_lstm_ae.nn.decoders import Decoder
from jax_lstm_ae.nn.encoder import Encoder
from jax_lstm_ae.nn.heads import Head
from jax_lstm_ae.nn.model import Autoencoder, decode_logits, make_autoencoder, step_mask
from jax_lstm_ae._typing import Array, PRNGKey, PyTree


class Composite(NamedTuple):
    """Encoder + reconstruction decoder + prediction decoder (module doc).

    Params are ``{"encoder": ..., "reconstruct": {"decoder", "head"},
    "predict": {"decoder", "head"}}`` (a branch left out is absent); each
    branch has its own output layer of the same :class:`Head` kind."""

    encoder: Encoder
    reconstructor: Decoder | None
    predictor: Decoder | None
    head: Head
    features: int  # F (V for tokens)
    horizon: int  # K future steps
    predict_weight: float = 1.0

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    @property
    def tokens(self) -> bool:
        return self.encoder.vocab_size is not None

    def branch(self, name: str) -> Autoencoder:
        """The branch ``"reconstruct"`` or ``"predict"`` as an Autoencoder
        (params ``{"encoder": ..., "decoder": ..., "head": ...}``)."""
        dec = self.reconstructor if name == "reconstruct" else self.predictor
        if dec is None:
            raise ValueError(f"this composite model has no {name} decoder")
        return Autoencoder(self.encoder, dec, self.head, self.features)

    def branch_params(self, params: PyTree, name: str) -> PyTree:
        return {"encoder": params["encoder"], **params[name]}

    def init(self, key: PRNGKey) -> PyTree:
        k_e, k_r, k_p = jax.random.split(key, 3)
        params = {"encoder": self.encoder.init(k_e, self.features)}
        for name, k in (("reconstruct", k_r), ("predict", k_p)):
            if (self.reconstructor if name == "reconstruct" else self.predictor) is not None:
                p = self.branch(name).init(k)
                params[name] = {"decoder": p["decoder"], "head": p["head"]}
        return params

    def check_batch(self, x, lengths=None) -> tuple[Array, Array]:
        """As ``Autoencoder.check_batch``, and lengths (when concrete) in [K, T]."""
        x, lengths = Autoencoder(self.encoder, self.reconstructor or self.predictor, self.head,
                                 self.features).check_batch(x, lengths)
        if x.shape[1] < self.horizon:
            raise ValueError(f"x has T={x.shape[1]} steps but the composite model predicts K={self.horizon}; "
                             f"each example needs its past and K={self.horizon} future steps")
        if not isinstance(lengths, jax.core.Tracer):
            ls = np.asarray(lengths)
            if ls.min() < self.horizon:
                bad = int(np.flatnonzero(ls < self.horizon)[0])
                raise ValueError(
                    f"example {bad} has length {int(ls[bad])} but the last K={self.horizon} steps of each example "
                    "are its future: lengths must lie in [K, T]"
                )
        return x, lengths

    def loss(self, params: PyTree, x, lengths=None, key: PRNGKey | None = None, *, train: bool = True,
             inputs=None) -> Array:
        """Reconstruction error over the valid past steps plus ``predict_weight``
        times the prediction error over the K future steps (scalar)."""
        x, lengths = self.check_batch(x, lengths)
        if inputs is not None:
            inputs = jnp.asarray(inputs)
            if inputs.shape != x.shape or inputs.dtype != x.dtype:
                raise ValueError(f"inputs must match x: x is {x.dtype}{x.shape}, inputs {inputs.dtype}{inputs.shape}")
        return _loss(self, params, x, lengths, key, train, inputs)

    def losses(self, params: PyTree, x, lengths=None) -> dict[str, Array]:
        """Inference-mode ``{"reconstruct", "predict"}`` mean errors (each over its own steps)."""
        x, lengths = self.check_batch(x, lengths)
        return _losses(self, params, x, lengths)

    def encode(self, params: PyTree, x, lengths=None) -> Array:
        """The past x[B, T, F] (all ``lengths`` steps are past) -> z[B, E]."""
        return self.branch("predict" if self.reconstructor is None else "reconstruct").encode(
            {"encoder": params["encoder"], "decoder": None, "head": None}, x, lengths)

    def predict(self, params: PyTree, x, lengths=None) -> Array:
        """The past x[B, T, F] (all ``lengths`` steps) -> the next K steps [B, K, F]
        in data space (free-running)."""
        ae = self.branch("predict")
        x, lengths = ae.check_batch(x, lengths)
        z = ae.encode({"encoder": params["encoder"], "decoder": None, "head": None}, x, lengths)
        return ae.decode(self.branch_params(params, "predict"), z, steps=self.horizon)


def _forward(model: Composite, params, x, lengths, key, train, inputs):
    """The batch through the encoder and both decoders (each part's one batched
    apply) -> (mean reconstruction error, mean prediction error)."""
    b, t = x.shape[0], x.shape[1]
    k = model.horizon
    past = jnp.clip(lengths - k, 0, t - k)  # [B]: the valid past of each example
    z = model.encoder.apply(params["encoder"], x if inputs is None else inputs, past)
    chex.assert_shape(z, (b, model.latent_dim))
    k_r = k_p = None
    if key is not None:  # one key per example, split between the two decoders
        pairs = jax.vmap(jax.random.split)(jax.random.split(key, b))
        k_r, k_p = pairs[:, 0], pairs[:, 1]
    err_r = jnp.zeros((b, t), jnp.float32)
    err_p = jnp.zeros((b, k), jnp.float32)
    error = jax.vmap(model.head.error)
    target = jax.vmap(model.head.target)
    if model.reconstructor is not None:
        logits = decode_logits(model.branch("reconstruct"), model.branch_params(params, "reconstruct"), z, past, t,
                               target(x) if train else None, k_r)
        err_r = jnp.where(step_mask(past, t), error(logits, x), 0.0)
    if model.predictor is not None:
        future = jax.vmap(lambda xi, p: lax.dynamic_slice_in_dim(xi, p, k, axis=0))(x, past)  # [B, K, F]
        logits = decode_logits(model.branch("predict"), model.branch_params(params, "predict"), z,
                               jnp.full((b,), k, jnp.int32), k, target(future) if train else None, k_p)
        err_p = jnp.where((lengths >= k)[:, None], error(logits, future), 0.0)
    full = jnp.sum(lengths >= k)
    r = jnp.sum(err_r) / jnp.maximum(jnp.sum(past), 1).astype(err_r.dtype)
    p = jnp.sum(err_p) / jnp.maximum(full * k, 1).astype(err_p.dtype)
    return r, p


@partial(jax.jit, static_argnums=(0, 5))
def _loss(model: Composite, params, x, lengths, key, train, inputs):
    r, p = _forward(model, params, x, lengths, key, train, inputs)
    return r + model.predict_weight * p


@partial(jax.jit, static_argnums=0)
def _losses(model: Composite, params, x, lengths):
    r, p = _forward(model, params, x, lengths, None, False, None)
    return {"reconstruct": r, "predict": p}


def make_composite(
    encoder: Encoder,
    *,
    reconstructor: Decoder | None,
    predictor: Decoder | None,
    horizon: int,
    head: Head | None = None,
    features: int | None = None,
    predict_weight: float = 1.0,
) -> Composite:
    """Assemble a composite model (module doc); checks the parts as ``make_autoencoder`` does.

    Args:
      reconstructor, predictor: the two decoders (either may be None, not both).
      horizon: K, the number of future steps the predictor produces.
      head: the output layer kind of both branches (default ``linear("mse")``).
      predict_weight: weight of the prediction term in the loss.
    """
    if reconstructor is None and predictor is None:
        raise ValueError("make_composite needs a reconstructor, a predictor or both")
    if int(horizon) < 1:
        raise ValueError(f"horizon is the number of future steps and must be >= 1, got {horizon}")
    if not predict_weight >= 0.0:
        raise ValueError(f"predict_weight must be >= 0, got {predict_weight}")
    checked = [make_autoencoder(encoder, d, head, features=features) for d in (reconstructor, predictor) if d is not None]
    ae = checked[0]
    return Composite(encoder, reconstructor, predictor, ae.head, ae.features, int(horizon), float(predict_weight))


def join_future(past, lengths, future) -> tuple[np.ndarray, np.ndarray]:
    """(past[B, T, F] with lengths[B], future[B, K, F]) -> (x[B, T + K, F], lengths + K):
    each example's future written right after its valid past, the layout
    :class:`Composite` reads (NumPy, host side)."""
    past, future = np.asarray(past), np.asarray(future)
    lengths = np.full(past.shape[0], past.shape[1], np.int32) if lengths is None else np.asarray(lengths, np.int32)
    if past.ndim != future.ndim or past.shape[0] != future.shape[0] or past.shape[2:] != future.shape[2:]:
        raise ValueError(f"past {past.shape} and future {future.shape} must share B and F")
    b, t = past.shape[:2]
    k = future.shape[1]
    x = np.zeros((b, t + k, *past.shape[2:]), np.result_type(past, future))
    if lengths.shape != (b,) or lengths.min() < 0 or lengths.max() > t:
        raise ValueError(f"lengths must have shape ({b},) and lie in [0, T={t}]")
    valid = (np.arange(t)[None, :] < lengths[:, None]).reshape(b, t, *[1] * (past.ndim - 2))
    x[:, :t] = np.where(valid, past, 0)
    rows = np.arange(b)[:, None]
    x[rows, lengths[:, None] + np.arange(k)[None, :]] = future
    return x, lengths + k

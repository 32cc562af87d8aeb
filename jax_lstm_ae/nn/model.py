"""The autoencoder: an encoder, a decoder and a head, on pure functions.

The methods (``encode``, ``decode``, ``reconstruct``, ``step_errors``,
``loss``) take a batch x[B, T, F] and run the parts' one ``apply`` each
(``Encoder.apply``, ``Decoder.apply``) on their backends. They check their
inputs (shapes always, values when concrete), assert ``z`` is exactly
(B, E) with chex, and run jitted code. For one example add a batch axis
(``x[None]``). The per-example specification of the whole forward pass and
loss, which the tests compare with ``jax.vmap``, lives in
``tests/reference_model.py``.

    model = make_autoencoder(lstm_encoder((128, 64)), repeat((64, 128)), linear(), features=F)
    params = model.init(key)
    z = model.encode(params, x, lengths)                    # [B, E]
    model = model.replace(decoder=teacher_forced((64,)))    # swap a strategy: a new, checked value
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jax_lstm_ae.nn.decoders import Decoder, output_width, repeat
from jax_lstm_ae.nn.encoder import Encoder, lstm_encoder
from jax_lstm_ae.nn.heads import Head, linear, softmax
from jax_lstm_ae.nn.pool import pool_time, pooled_steps, unpool
from jax_lstm_ae.kernels.reference import reverse_valid
from jax_lstm_ae._typing import Array, BatchLatent, BatchSeq, Lengths, PRNGKey, PyTree


def step_mask(lengths: Lengths, steps: int) -> Array:
    """[B] lengths -> [B, T] True on valid steps."""
    return jnp.arange(steps)[None, :] < lengths[:, None]


class Autoencoder(NamedTuple):
    """An LSTM autoencoder as a value. Swap a part with ``model.replace(...)``.

    Params are ``{"encoder": ..., "decoder": ..., "head": ...}``.
    """

    encoder: Encoder
    decoder: Decoder
    head: Head
    features: int  # F for real inputs; V for token inputs
    spec: Any = None  # the ModelSpec it was built from (nn.spec.build), or None
    pool: int = 1  # time pooling d (nn.pool): the encoder reads means of d steps; outputs stand for d steps

    # ------------------------------------------------------------ properties
    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    @property
    def tokens(self) -> bool:
        return self.encoder.vocab_size is not None

    @property
    def output_dim(self) -> int:
        """K: F for real/binary data, V for tokens."""
        return self.head.vocab_size if self.tokens else self.features

    def replace(self, **parts) -> "Autoencoder":
        """A new model with some parts swapped (``encoder``, ``decoder``,
        ``head``, ``features``), checked as :func:`make_autoencoder` checks."""
        parts_ = ("encoder", "decoder", "head", "features")
        unknown = set(parts) - set(parts_)
        if unknown:
            raise TypeError(f"Autoencoder.replace takes {parts_}, got {sorted(unknown)}; for a ModelSpec use "
                            "dataclasses.replace(spec, ...)")
        new = self._replace(**parts)
        return make_autoencoder(new.encoder, new.decoder, new.head, features=new.features)._replace(pool=self.pool)

    # ------------------------------------------------------------ functions
    def init(self, key: PRNGKey) -> PyTree:
        k_e, k_d, k_h = jax.random.split(key, 3)
        return {
            "encoder": self.encoder.init(k_e, self.features),
            "decoder": self.decoder.init(k_d, self.latent_dim, self.output_dim),
            "head": self.head.init(k_h, output_width(self.decoder), self.output_dim),
        }

    def check_batch(self, x, lengths=None) -> tuple[Array, Array]:
        """Validate a batch and return ``(x, lengths[B] int32)``.

        Raises ValueError / TypeError naming the problem. Length *values* are
        checked only when concrete (outside ``jit``)."""
        x = jnp.asarray(x)
        want_rank = 2 if self.tokens else 3
        layout = "(B, T) integer tokens" if self.tokens else f"(B, T, F={self.features})"
        if x.ndim != want_rank:
            hint = " ; for one example add a batch axis, x[None]" if x.ndim == want_rank - 1 else ""
            raise ValueError(f"expected x of shape {layout}, got shape {x.shape}{hint}")
        if self.tokens:
            if not jnp.issubdtype(x.dtype, jnp.integer):
                raise TypeError(f"this model embeds tokens and expects integer x, got dtype {x.dtype}")
        else:
            if not jnp.issubdtype(x.dtype, jnp.floating):
                raise TypeError(
                    f"this model is real-valued and expects floating x, got dtype {x.dtype}; "
                    "cast with x.astype(jnp.float32), or build the encoder with vocab_size=V for tokens"
                )
            if x.shape[2] != self.features:
                raise ValueError(f"x has F={x.shape[2]} features but the model was built for F={self.features}")
        b, t = x.shape[0], x.shape[1]
        if t < 1 or b < 1:
            raise ValueError(f"x must hold at least one example of at least one step, got shape {x.shape}")
        if lengths is None:
            lengths = jnp.full((b,), t, jnp.int32)
        else:
            lengths = jnp.asarray(lengths)
            if lengths.shape != (b,):
                raise ValueError(f"lengths must have shape (B,)=({b},), got {lengths.shape}")
            if not jnp.issubdtype(lengths.dtype, jnp.integer):
                raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
            lengths = lengths.astype(jnp.int32)
        if not isinstance(lengths, jax.core.Tracer):
            # Length 0 is allowed: an empty sequence adds nothing to the loss.
            ls = np.asarray(lengths)
            if ls.min() < 0 or ls.max() > t:
                bad = int(np.flatnonzero((ls < 0) | (ls > t))[0])
                raise ValueError(
                    f"lengths must lie in [0, T={t}]; example {bad} has length {int(ls[bad])}"
                )
        if self.tokens and not isinstance(x, jax.core.Tracer):
            xs = np.asarray(x)
            valid = np.arange(t)[None, :] < np.asarray(lengths)[:, None]
            v = xs[valid]
            if v.size and (v.min() < 0 or v.max() >= self.features):
                raise ValueError(f"tokens must lie in [0, V={self.features}), got values in [{v.min()}, {v.max()}]")
        return x, lengths

    def encode(self, params: PyTree, x: BatchSeq, lengths: Lengths | None = None) -> BatchLatent:
        """x[B, T, F] (or tokens[B, T]), lengths[B] -> z[B, E]."""
        x, lengths = self.check_batch(x, lengths)
        return _encode(self, params, x, lengths)

    def decode(self, params: PyTree, z: BatchLatent, lengths: Lengths | None = None, *, steps: int) -> Array:
        """z[B, E] -> predictions[B, T, K] (free-running; zero on padding)."""
        z = jnp.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected z of shape (B, E={self.latent_dim}), got {z.shape}")
        if lengths is None:
            lengths = jnp.full((z.shape[0],), steps, jnp.int32)
        return _decode(self, params, z, jnp.asarray(lengths, jnp.int32), steps)

    def reconstruct(self, params: PyTree, x: BatchSeq, lengths: Lengths | None = None) -> Array:
        """x -> predictions[B, T, K] in data space (values, probabilities), zero on padding."""
        x, lengths = self.check_batch(x, lengths)
        return _reconstruct(self, params, x, lengths)

    def step_errors(self, params: PyTree, x: BatchSeq, lengths: Lengths | None = None) -> Array:
        """Per-step reconstruction error [B, T] (inference mode), zero on padding."""
        x, lengths = self.check_batch(x, lengths)
        return _step_errors(self, params, x, lengths)

    def loss(
        self, params: PyTree, x: BatchSeq, lengths: Lengths | None = None, key: PRNGKey | None = None,
        *, train: bool = True, inputs: BatchSeq | None = None,
    ) -> Array:
        """Mean per-step error over all valid steps of the batch (scalar).

        ``train=True`` feeds targets to decoders that use them (teacher
        forcing, scheduled sampling); ``train=False`` decodes free-running.
        ``inputs`` (same shape as x): what the encoder reads instead of x,
        e.g. a corrupted x (``jax_lstm_ae.train.noise``); x stays the target."""
        x, lengths = self.check_batch(x, lengths)
        if inputs is not None:
            inputs = jnp.asarray(inputs)
            if inputs.shape != x.shape or inputs.dtype != x.dtype:
                raise ValueError(f"inputs must match x: x is {x.dtype}{x.shape}, inputs {inputs.dtype}{inputs.shape}")
        return _loss(self, params, x, lengths, key, train, inputs)


# Module-level jitted cores; the model is a hashable static argument.
def _head_fns(head: Head, params: PyTree):
    """(readout h[H] -> prediction[K], head h[..., H] -> logits[..., K])."""

    def apply(h):
        with jax.named_scope(f"head_{head.name}"):
            return head.apply(params["head"], h)

    return (lambda h: head.activate(apply(h))), apply


def decode_logits(model: Autoencoder, params: PyTree, z: Array, lengths: Array, steps: int,
                  targets: Array | None = None, keys: Array | None = None) -> Array:
    """z[B, E] -> logits[B, T, K] in the input's order, zero on padding,
    unchecked and un-jitted (a building block, as :func:`forward_batch`).
    ``targets`` [B, T, K] (the input's order) switch teacher forcing on;
    ``keys`` [B]: one PRNG key per example (scheduled sampling). With time
    pooling d (``model.pool``) the decoder runs over ceil(T / d) steps, fed
    pooled targets, and each output is repeated for the d steps it stands for."""
    d = model.pool
    if d > 1:
        full_lengths, full_steps = lengths, steps
        lengths, steps = (lengths + d - 1) // d, pooled_steps(steps, d)
        if targets is not None:
            targets = pool_time(targets, full_lengths, d)[0]
    readout, head = _head_fns(model.head, params)
    reverse = model.decoder.reverse_target
    if targets is not None and reverse:
        targets = jax.vmap(reverse_valid)(targets, lengths)
    logits = model.decoder.apply(params["decoder"], z, lengths, targets, keys, steps=steps, readout=readout,
                                 head=head)
    if reverse:
        logits = jax.vmap(reverse_valid)(logits, lengths)
    if d > 1:
        logits, lengths, steps = unpool(logits, d, full_steps), full_lengths, full_steps
    return jnp.where(step_mask(lengths, steps)[..., None], logits, 0.0)


def _encode_batch(model: Autoencoder, params, x, lengths, keys=None):
    if model.pool > 1:
        x, lengths = pool_time(x, lengths, model.pool)
    z = model.encoder.apply(params["encoder"], x, lengths, None, keys)
    chex.assert_shape(z, (x.shape[0], model.latent_dim))
    return z


def forward_batch(model: Autoencoder, params: PyTree, x: Array, lengths: Array, keys: Array | None = None,
                  *, train: bool = False, inputs: Array | None = None) -> tuple[Array, Array]:
    """x[B, T, F], lengths[B] -> (z[B, E], logits[B, T, K]), unchecked and un-jitted
    (a building block for steps that shard the batch themselves).

    ``keys`` [B]: one PRNG key per example (scheduled sampling), or None.
    ``train``: feed targets to the decoders that use them. ``inputs``: what the
    encoder reads instead of x (denoising)."""
    enc_keys = None
    if train and keys is not None and model.encoder.dropout:  # each example's key split in two
        pairs = jax.vmap(jax.random.split)(keys)
        enc_keys, keys = pairs[:, 0], pairs[:, 1]
    z = _encode_batch(model, params, x if inputs is None else inputs, lengths, enc_keys)
    targets = jax.vmap(model.head.target)(x) if train else None
    return z, decode_logits(model, params, z, lengths, x.shape[1], targets, keys)


def error_terms(model: Autoencoder, params: PyTree, x: Array, lengths: Array, keys: Array | None = None,
                *, train: bool = False, inputs: Array | None = None) -> Array:
    """Per-step errors [B, T], zero on padding (see :func:`forward_batch`);
    the loss is their sum over the sum of lengths."""
    _, logits = forward_batch(model, params, x, lengths, keys, train=train, inputs=inputs)
    err = jax.vmap(model.head.error)(logits, x)
    return jnp.where(step_mask(lengths, x.shape[1]), err, 0.0)


def _errors(model, params, x, lengths, key, train, inputs=None):
    keys = None if key is None else jax.random.split(key, x.shape[0])
    return error_terms(model, params, x, lengths, keys, train=train, inputs=inputs)


@partial(jax.jit, static_argnums=0)
def _encode(model: Autoencoder, params, x, lengths):
    return _encode_batch(model, params, x, lengths)


@partial(jax.jit, static_argnums=(0, 4))
def _decode(model: Autoencoder, params, z, lengths, steps):
    logits = decode_logits(model, params, z, lengths, steps)
    return jnp.where(step_mask(lengths, steps)[..., None], model.head.activate(logits), 0.0)


@partial(jax.jit, static_argnums=0)
def _reconstruct(model: Autoencoder, params, x, lengths):
    _, logits = forward_batch(model, params, x, lengths)
    return jnp.where(step_mask(lengths, x.shape[1])[..., None], model.head.activate(logits), 0.0)


@partial(jax.jit, static_argnums=0)
def _step_errors(model: Autoencoder, params, x, lengths):
    return _errors(model, params, x, lengths, None, False)


@partial(jax.jit, static_argnums=(0, 5))
def _loss(model: Autoencoder, params, x, lengths, key, train, inputs):
    err = _errors(model, params, x, lengths, key, train, inputs)
    # A batch of empty sequences has no valid step: loss 0, not 0 / 0.
    return jnp.sum(err) / jnp.maximum(jnp.sum(lengths), 1).astype(err.dtype)


def make_autoencoder(encoder: Encoder, decoder: Decoder, head: Head | None = None, *, features: int | None = None) -> Autoencoder:
    """Assemble a model, checking that the parts fit together.

    Args:
      features: F, the number of input features (real-valued inputs). For a
        token encoder leave it out: it is V.
      head: defaults to ``linear("mse")`` (``softmax(V)`` for tokens).
    """
    if encoder.vocab_size is not None:
        v = encoder.vocab_size
        head = softmax(v) if head is None else head
        if head.vocab_size != v:
            raise ValueError(f"a token encoder (V={v}) needs the softmax({v}) head, got {head.name}")
        if features not in (None, v):
            raise ValueError(f"token models take features=V={v} (or None), got {features}")
        features = v
    else:
        head = linear() if head is None else head
        if head.vocab_size is not None:
            raise ValueError("the softmax head is for token inputs: build the encoder with vocab_size=V")
        if features is None or features < 1:
            raise ValueError(f"make_autoencoder needs features=F >= 1 for real-valued inputs, got {features}")
        if head.name.startswith("identity") and output_width(decoder) != features:
            raise ValueError(
                f"the identity head uses the decoder's top LSTM output as the reconstruction, so its width "
                f"must equal F={features}, got {output_width(decoder)}; end the decoder sizes with {features} "
                "or use the linear head"
            )
    return Autoencoder(encoder, decoder, head, int(features))


def recurrent_autoencoder(features: int, embedding_dim: int = 64, **kw) -> Autoencoder:
    """The seed answers' two-layer ``RecurrentAutoencoder``: encoder LSTM
    F -> 2E -> E, repeat decoder E -> E -> 2E, Linear 2E -> F, MSE."""
    e = int(embedding_dim)
    return make_autoencoder(lstm_encoder((2 * e, e), **kw), repeat((e, 2 * e), **kw), linear(), features=features)

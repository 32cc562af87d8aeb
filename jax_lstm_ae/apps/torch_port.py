"""Import PyTorch weights given as a mapping of NumPy arrays (no torch needed).

``nn.LSTM`` stores, per layer k (suffix ``_reverse`` for the backward
direction), ``weight_ih_lk`` [G, F], ``weight_hh_lk`` [G, H], ``bias_ih_lk`` and
``bias_hh_lk`` [G], gates in the order i, f, g, o, the same as ours, so
``w_i = weight_ih.T``, ``w_h = weight_hh.T``, ``b = bias_ih + bias_hh``.
``nn.Linear`` stores ``weight`` [out, in] and ``bias`` [out]; ``nn.Embedding``
stores ``weight`` [V, D].

Get the mapping with ``{k: v.detach().cpu().numpy() for k, v in
module.state_dict().items()}`` (or ``np.load`` of a saved ``.npz``).
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np

from jax_lstm_ae.kernels.cell import LayerParams, LSTMParams
from jax_lstm_ae.nn.encoder import Encoder, lstm_encoder
from jax_lstm_ae.nn.model import Autoencoder, recurrent_autoencoder
from jax_lstm_ae._typing import PyTree


def _get(sd: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key not in sd:
        near = sorted(k for k in sd if k.rsplit(".", 1)[0] == key.rsplit(".", 1)[0])[:6]
        raise KeyError(f"state_dict has no {key!r}; keys under that module: {near or sorted(sd)[:6]}")
    return np.asarray(sd[key], np.float32)


def _direction(sd, prefix: str, k: int, suffix: str) -> LSTMParams:
    w_ih = _get(sd, f"{prefix}weight_ih_l{k}{suffix}")
    w_hh = _get(sd, f"{prefix}weight_hh_l{k}{suffix}")
    if w_ih.shape[0] != 4 * w_hh.shape[1] or w_hh.shape[0] != w_ih.shape[0]:
        raise ValueError(f"{prefix}l{k}{suffix}: weight shapes {w_ih.shape}, {w_hh.shape} are not an LSTM's")
    bias = np.zeros(w_ih.shape[0], np.float32)
    for name in ("bias_ih", "bias_hh"):  # absent when the module had bias=False
        if f"{prefix}{name}_l{k}{suffix}" in sd:
            bias = bias + _get(sd, f"{prefix}{name}_l{k}{suffix}")
    return LSTMParams(jnp.asarray(w_ih.T), jnp.asarray(w_hh.T), jnp.asarray(bias))


def lstm_from_torch(sd: Mapping[str, np.ndarray], prefix: str = "") -> list[LayerParams]:
    """All layers of one ``nn.LSTM`` (its ``num_layers`` and ``bidirectional``
    read from the keys) -> a stack for :func:`jax_lstm_ae.lstm_stack`."""
    if prefix and not prefix.endswith("."):
        prefix += "."
    layers: list[LayerParams] = []
    k = 0
    while f"{prefix}weight_ih_l{k}" in sd:
        fwd = _direction(sd, prefix, k, "")
        if f"{prefix}weight_ih_l{k}_reverse" in sd:
            layers.append((fwd, _direction(sd, prefix, k, "_reverse")))
        else:
            layers.append(fwd)
        k += 1
    if not layers:
        raise KeyError(f"no nn.LSTM weights under prefix {prefix!r} (looked for {prefix}weight_ih_l0)")
    if any(k.startswith(prefix) and ("proj" in k) for k in sd):
        raise ValueError("nn.LSTM with proj_size > 0 is not supported")
    return layers


def linear_from_torch(sd: Mapping[str, np.ndarray], prefix: str) -> dict:
    """One ``nn.Linear`` -> ``{"w": [in, out], "b": [out]}``."""
    if prefix and not prefix.endswith("."):
        prefix += "."
    w = _get(sd, f"{prefix}weight")
    b = _get(sd, f"{prefix}bias") if f"{prefix}bias" in sd else np.zeros(w.shape[0], np.float32)
    return {"w": jnp.asarray(w.T), "b": jnp.asarray(b)}


def embedding_from_torch(sd: Mapping[str, np.ndarray], prefix: str = "embedding") -> jnp.ndarray:
    """One ``nn.Embedding`` -> its [V, D] table (an encoder's ``params["embedding"]``)."""
    if prefix and not prefix.endswith("."):
        prefix += "."
    w = _get(sd, f"{prefix}weight")
    if w.ndim != 2:
        raise ValueError(f"{prefix}weight is not an nn.Embedding table [V, D]: shape {w.shape}")
    return jnp.asarray(w)


def token_encoder_from_torch(
    sd: Mapping[str, np.ndarray], *, embedding: str = "embedding", lstm: str = "lstm", backend: str = "auto",
    dropout: float = 0.0,
) -> tuple[Encoder, PyTree]:
    """``nn.Embedding`` + (stacked, optionally bidirectional) ``nn.LSTM``, the
    seq2seq tutorials' ``EncoderRNN`` / ``EncoderLSTM`` -> ``(encoder, params)``.

    ``encoder.apply(params, tokens[B, T], lengths[B])`` is the top layer's last
    hidden state [B, H], ``hidden[0][-1]`` of PyTorch's ``forward(inputs, hidden)``
    started from zeros (``concat(h_fwd, h_bwd)`` when bidirectional).
    ``nn.LSTM(dropout=p)`` drops between layers in training only: pass the
    same ``dropout`` to train with it (the encoder drops when given a key),
    inference matches either way; ``embedding`` and ``lstm`` are the
    submodules' names. ``encoder.apply(..., initial)`` starts from a given
    ``hidden`` (one ``LSTMState`` of [B, H] per layer) instead of zeros.
    """
    table = embedding_from_torch(sd, embedding)
    layers = lstm_from_torch(sd, lstm)
    bi = not isinstance(layers[0], LSTMParams)
    first = layers[0][0] if bi else layers[0]
    if first.w_i.shape[0] != table.shape[1]:
        raise ValueError(
            f"the LSTM reads {first.w_i.shape[0]} features but the embedding gives D={table.shape[1]}"
        )
    sizes = tuple(int((layer[0] if bi else layer).w_h.shape[0]) for layer in layers)
    enc = lstm_encoder(sizes, bidirectional=bi, vocab_size=int(table.shape[0]), token_dim=int(table.shape[1]),
                       backend=backend, dropout=dropout)
    return enc, {"embedding": table, "lstm": layers}


def recurrent_autoencoder_from_torch(sd: Mapping[str, np.ndarray]) -> tuple[Autoencoder, PyTree]:
    """The seed answers' ``RecurrentAutoencoder`` (``encoder.rnn1``, ``encoder.rnn2``,
    ``decoder.rnn1``, ``decoder.rnn2``, ``decoder.output_layer``) -> ``(model, params)``.

    F and E are read from the weights. z is [B, E] and the decoder sees z
    repeated over T, for any batch (the seed model is batch-safe too; the
    reshape-based ``Encoder`` of the other answer is the one that is not).
    """
    enc = lstm_from_torch(sd, "encoder.rnn1") + lstm_from_torch(sd, "encoder.rnn2")
    dec = lstm_from_torch(sd, "decoder.rnn1") + lstm_from_torch(sd, "decoder.rnn2")
    head = linear_from_torch(sd, "decoder.output_layer")
    if not all(isinstance(layer, LSTMParams) for layer in enc + dec):
        raise ValueError("RecurrentAutoencoder's LSTMs are unidirectional; got a bidirectional one")
    features = enc[0].w_i.shape[0]
    e = enc[1].w_h.shape[0]
    model = recurrent_autoencoder(features, e)
    want = {"encoder": [(features, 2 * e), (2 * e, e)], "decoder": [(e, e), (e, 2 * e)]}
    got = {"encoder": [p.w_i.shape[0:1] + p.w_h.shape[0:1] for p in enc],
           "decoder": [p.w_i.shape[0:1] + p.w_h.shape[0:1] for p in dec]}
    if got != want or head["w"].shape != (2 * e, features):
        raise ValueError(f"weights are not a RecurrentAutoencoder(F={features}, E={e}): layer (in, hidden) {got}")
    return model, {"encoder": {"lstm": enc}, "decoder": {"lstm": dec}, "head": head}

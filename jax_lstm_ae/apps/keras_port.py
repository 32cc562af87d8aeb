"""Import Keras weights given as NumPy arrays (no Keras import needed).

Keras's ``LSTM`` stores ``kernel`` [F, 4H], ``recurrent_kernel`` [H, 4H] and
``bias`` [4H], gates in the order i, f, c, o (input, forget, cell candidate,
output): the same as ours (i, f, g, o), so they map one to one:
``w_i = kernel``, ``w_h = recurrent_kernel``, ``b = bias``. ``Dense`` stores
``kernel`` [in, out] and ``bias`` [out]; ``Embedding`` stores
``embeddings`` [V, D].

Whole Sequential autoencoders come from ``model.get_weights()`` and a layer
description, for instance ``model.get_config()["layers"]`` (a list of
``{"class_name": ..., "config": {...}}``), or a short hand-written list:

    layers = [{"class_name": "LSTM", "units": 20},
              {"class_name": "Reshape", "target_shape": (10, 2)},
              {"class_name": "LSTM", "units": 5, "return_sequences": True}]
    model, params = sequential_from_keras(layers, weights, input_shape=(10, 5), loss="binary_crossentropy")

Shapes understood (E = the encoder's last LSTM, ``return_sequences=False``):

| Keras layers after the encoder                           | this library                              |
| -------------------------------------------------------- | ----------------------------------------- |
| RepeatVector(T), LSTM..., [TimeDistributed(]Dense(F)[)]  | ``repeat`` decoder, ``linear`` head       |
| RepeatVector(K != T), LSTM..., Dense                     | a :class:`Composite` predictor of K steps |
| Reshape((T, W)), LSTM(return_sequences=True)...          | ``latent_as_sequence`` decoder            |
| Reshape((S, W)), LSTM..., LSTM(T*F), Reshape((T, F))     | ``final_state`` decoder                   |
| decoder ending in LSTM(F) (no Dense)                     | ``identity`` head                         |

An ``Embedding`` first makes a token encoder (the head is then a Dense to V).
``loss`` is the loss the Keras model was compiled with: ``"mse"``, ``"mae"``
or ``"binary_crossentropy"`` (identity head, Keras's clipping; with a final
``Dense(F, activation="sigmoid")`` the ``sigmoid`` head).

Cell activations (``activation="relu"``, ``recurrent_activation="hard_sigmoid"``,
...) are passed on to the factories, which use Keras's names and semantics.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from jax_lstm_ae.kernels.cell import LSTMParams
from jax_lstm_ae.nn.composite import Composite, make_composite
from jax_lstm_ae.nn.decoders import final_state, latent_as_sequence, repeat
from jax_lstm_ae.nn.encoder import lstm_encoder
from jax_lstm_ae.nn.heads import identity, linear, sigmoid, softmax
from jax_lstm_ae.nn.model import Autoencoder, make_autoencoder
from jax_lstm_ae._typing import PyTree


# ------------------------------------------------------------------ single layers
def lstm_from_keras(kernel, recurrent_kernel, bias=None) -> LSTMParams:
    """One Keras ``LSTM`` (``layer.get_weights()``) -> :class:`LSTMParams`."""
    w_i = np.asarray(kernel, np.float32)
    w_h = np.asarray(recurrent_kernel, np.float32)
    if w_i.ndim != 2 or w_h.ndim != 2 or w_h.shape[1] != 4 * w_h.shape[0] or w_i.shape[1] != w_h.shape[1]:
        raise ValueError(
            f"kernel {w_i.shape} and recurrent_kernel {w_h.shape} are not a Keras LSTM's: "
            "expected [F, 4H] and [H, 4H]"
        )
    b = np.zeros(w_h.shape[1], np.float32) if bias is None else np.asarray(bias, np.float32)
    if b.shape != (w_h.shape[1],):
        raise ValueError(f"LSTM bias must have shape ({w_h.shape[1]},) = (4H,), got {b.shape}")
    return LSTMParams(jnp.asarray(w_i), jnp.asarray(w_h), jnp.asarray(b))


def dense_from_keras(kernel, bias=None) -> dict:
    """One Keras ``Dense`` (or ``TimeDistributed(Dense)``) -> ``{"w": [in, out], "b": [out]}``."""
    w = np.asarray(kernel, np.float32)
    if w.ndim != 2:
        raise ValueError(f"a Dense kernel is [in, out], got shape {w.shape}")
    b = np.zeros(w.shape[1], np.float32) if bias is None else np.asarray(bias, np.float32)
    if b.shape != (w.shape[1],):
        raise ValueError(f"Dense bias must have shape ({w.shape[1]},), got {b.shape}")
    return {"w": jnp.asarray(w), "b": jnp.asarray(b)}


def embedding_from_keras(embeddings) -> jnp.ndarray:
    """One Keras ``Embedding`` -> the [V, D] table (``encoder params["embedding"]``)."""
    e = np.asarray(embeddings, np.float32)
    if e.ndim != 2:
        raise ValueError(f"Embedding weights are [V, D], got shape {e.shape}")
    return jnp.asarray(e)


# ------------------------------------------------------------------ Sequential models
_WEIGHTLESS = ("InputLayer", "RepeatVector", "Reshape", "Dropout", "Activation")
_KNOWN = ("LSTM", "Dense", "TimeDistributed", "Embedding", *_WEIGHTLESS)


def _layer_spec(spec: Any) -> tuple[str, dict]:
    """``{"class_name", "config"}`` (Keras's get_config), a flat dict with
    ``class_name``, or ``(class_name, config)`` -> (class_name, config)."""
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
        name, cfg = spec[0], dict(spec[1])
    elif isinstance(spec, Mapping) and "class_name" in spec:
        name = spec["class_name"]
        cfg = dict(spec["config"]) if "config" in spec else {k: v for k, v in spec.items() if k != "class_name"}
    else:
        raise ValueError(f"a layer is described by {{'class_name': ..., 'config': {{...}}}}, got {spec!r}")
    if name == "TimeDistributed":
        inner_name, inner = _layer_spec(cfg["layer"])
        if inner_name != "Dense":
            raise ValueError(f"TimeDistributed({inner_name}) is not supported; only TimeDistributed(Dense)")
        return "Dense", inner
    if name not in _KNOWN:
        raise ValueError(f"Keras layer {name!r} is not supported; supported: {', '.join(_KNOWN)}")
    return name, cfg


def _take(weights: list, n: int, what: str) -> list:
    if len(weights) < n:
        raise ValueError(f"ran out of weight arrays at {what}: pass model.get_weights() in layer order")
    out = weights[:n]
    del weights[:n]
    return out


def _activations(cfgs: Sequence[dict], where: str) -> dict:
    """The factories' activation keywords for a group of LSTM layers ({} for Keras's defaults)."""
    acts = {(c.get("activation", "tanh"), c.get("recurrent_activation", "sigmoid")) for c in cfgs}
    if len(acts) > 1:
        raise ValueError(f"the {where} LSTM layers use different activations {sorted(acts)}; "
                         "one factory takes one activation for all its layers")
    act, rec = acts.pop()
    kw = {}
    if act != "tanh":
        kw["activation"] = act
    if rec != "sigmoid":
        kw["recurrent_activation"] = rec
    return kw


def _build(factory, sizes, kw, where: str, **more):
    del where  # the factories name a bad activation themselves
    return factory(sizes, **kw, **more)


def _lstm_layer(cfg: dict, weights: list, what: str) -> LSTMParams:
    if cfg.get("go_backwards") or cfg.get("stateful") or cfg.get("return_state"):
        raise ValueError(f"{what}: go_backwards, stateful and return_state LSTMs are not supported")
    n = 3 if cfg.get("use_bias", True) else 2
    w = _take(weights, n, what)
    p = lstm_from_keras(*w)
    if "units" in cfg and p.w_h.shape[0] != int(cfg["units"]):
        raise ValueError(f"{what} has units={cfg['units']} but its weights hold H={p.w_h.shape[0]}")
    return p


def sequential_from_keras(
    layers: Sequence[Any],
    weights: Sequence[np.ndarray],
    *,
    input_shape: tuple[int, ...] | None = None,
    loss: str = "mse",
    backend: str = "auto",
) -> tuple[Autoencoder | Composite, PyTree]:
    """A Keras Sequential LSTM autoencoder -> ``(model, params)`` (module doc).

    Args:
      layers: the layer description, e.g. ``keras_model.get_config()["layers"]``.
      weights: ``keras_model.get_weights()`` (NumPy arrays in layer order).
      input_shape: (T, F) (or (T,) for tokens); read from an ``InputLayer``
        in ``layers`` when there is one.
      loss: what the Keras model was compiled with: "mse", "mae" or
        "binary_crossentropy".
    Returns an :class:`Autoencoder` (``reconstruct`` gives the Keras
    model's output for sequences of the full length T), or a
    :class:`Composite` predictor (``predict``) for ``RepeatVector(K)`` with
    K != T.
    """
    specs = [_layer_spec(s) for s in layers]
    ws = [np.asarray(w) for w in weights]
    if specs and specs[0][0] == "InputLayer":
        shape = specs[0][1].get("batch_shape") or specs[0][1].get("batch_input_shape")
        if input_shape is None and shape is not None:
            input_shape = tuple(int(s) for s in shape[1:])
        specs = specs[1:]
    specs = [(n, c) for n, c in specs if n != "Dropout"]  # identity at inference
    if input_shape is None:
        raise ValueError("give input_shape=(T, F), or include the model's InputLayer in layers")
    steps = int(input_shape[0])
    loss_key = {"mse": "mse", "mean_squared_error": "mse", "mae": "mae", "mean_absolute_error": "mae",
                "binary_crossentropy": "bce", "bce": "bce"}.get(loss)
    if loss_key is None:
        raise ValueError(f"loss must be 'mse', 'mae' or 'binary_crossentropy', got {loss!r}")

    i = 0
    vocab = emb = None
    if specs and specs[0][0] == "Embedding":
        emb = embedding_from_keras(*_take(ws, 1, "Embedding"))
        vocab = emb.shape[0]
        i = 1
    # -- encoder: LSTMs up to the first one that returns its last state
    enc_cfgs, enc_layers = [], []
    while i < len(specs) and specs[i][0] == "LSTM":
        enc_cfgs.append(specs[i][1])
        enc_layers.append(_lstm_layer(specs[i][1], ws, f"encoder LSTM {len(enc_layers)}"))
        i += 1
        if not enc_cfgs[-1].get("return_sequences", False):
            break
    if not enc_layers or enc_cfgs[-1].get("return_sequences", False):
        raise ValueError("expected the encoder: LSTM layers ending in one with return_sequences=False")
    features = vocab if vocab is not None else int(enc_layers[0].w_i.shape[0])
    e = int(enc_layers[-1].w_h.shape[0])
    enc_kw = _activations(enc_cfgs, "encoder")
    enc_sizes = tuple(int(p.w_h.shape[0]) for p in enc_layers)
    token_kw = {} if vocab is None else {"vocab_size": vocab, "token_dim": int(emb.shape[1])}
    encoder = _build(lstm_encoder, enc_sizes, enc_kw, "encoder", init="orthogonal", backend=backend, **token_kw)
    enc_params: dict = {"lstm": enc_layers}
    if emb is not None:
        enc_params["embedding"] = emb

    # -- bridge
    if i >= len(specs) or specs[i][0] not in ("RepeatVector", "Reshape"):
        raise ValueError("expected RepeatVector or Reshape after the encoder's last LSTM")
    bridge, bcfg = specs[i]
    i += 1
    # -- decoder LSTMs
    dec_cfgs, dec_layers = [], []
    while i < len(specs) and specs[i][0] == "LSTM":
        dec_cfgs.append(specs[i][1])
        dec_layers.append(_lstm_layer(specs[i][1], ws, f"decoder LSTM {len(dec_layers)}"))
        i += 1
    if not dec_layers:
        raise ValueError(f"expected decoder LSTM layers after {bridge}")
    dec_sizes = tuple(int(p.w_h.shape[0]) for p in dec_layers)
    dec_kw = _activations(dec_cfgs, "decoder")
    last_seq = [bool(c.get("return_sequences", False)) for c in dec_cfgs]
    # -- output
    head_params: dict = {}
    dense_act = None
    if i < len(specs) and specs[i][0] == "Reshape":  # final-state decoder
        out_shape = tuple(int(s) for s in specs[i][1]["target_shape"])
        i += 1
    else:
        out_shape = None
    if i < len(specs) and specs[i][0] == "Dense":
        cfg = specs[i][1]
        head_params = dense_from_keras(*_take(ws, 2 if cfg.get("use_bias", True) else 1, "Dense"))
        dense_act = cfg.get("activation", "linear")
        i += 1
    if i < len(specs):
        raise ValueError(f"layer {specs[i][0]} after the decoder is not supported")
    if ws:
        raise ValueError(f"{len(ws)} weight arrays left over: the layer description does not match the weights")

    if dense_act is None:
        head = identity(loss_key)
    elif vocab is not None:
        if dense_act not in ("softmax", "linear"):
            raise ValueError(f"a token model's output Dense needs a softmax (or linear logits), got {dense_act!r}")
        head = softmax(vocab)
    elif dense_act == "linear":
        if loss_key == "bce":
            raise ValueError("binary_crossentropy on a linear Dense output: use Dense(F, activation='sigmoid')")
        head = linear(loss_key)
    elif dense_act == "sigmoid":
        if loss_key != "bce":
            raise ValueError(f"a sigmoid output Dense is imported as the sigmoid head (BCE); got loss={loss!r}")
        head = sigmoid()
    else:
        raise ValueError(f"output Dense activation {dense_act!r} is not supported; use linear or sigmoid")

    if bridge == "RepeatVector":
        if not all(last_seq):
            raise ValueError("after RepeatVector every decoder LSTM needs return_sequences=True")
        n_out = int(bcfg["n"])
        decoder = _build(repeat, dec_sizes, dec_kw, "decoder", init="orthogonal", backend=backend)
        if n_out != steps:
            model = make_composite(encoder, reconstructor=None, predictor=decoder, horizon=n_out, head=head,
                                   features=features)
            return model, {"encoder": enc_params, "predict": {"decoder": {"lstm": dec_layers}, "head": head_params}}
    else:
        s_in, w_in = (int(v) for v in bcfg["target_shape"])
        if s_in * w_in != e:
            raise ValueError(f"Reshape({(s_in, w_in)}) of the latent needs E={s_in * w_in}, the encoder gives E={e}")
        if out_shape is not None:
            if any(last_seq[-1:]) or not all(last_seq[:-1]):
                raise ValueError("a final-state decoder ends in an LSTM with return_sequences=False")
            if out_shape[0] != steps:
                raise ValueError(f"the final Reshape{out_shape} gives T={out_shape[0]} steps, the input has T={steps}")
            decoder = _build(final_state, dec_sizes, dec_kw, "decoder", steps=steps, latent_steps=s_in,
                             init="orthogonal", backend=backend)
        else:
            if not all(last_seq):
                raise ValueError("after Reshape every decoder LSTM needs return_sequences=True "
                                 "(or end in Reshape((T, F)) for a final-state decoder)")
            if s_in != steps:
                raise ValueError(f"Reshape({(s_in, w_in)}) feeds {s_in} steps but the input has T={steps}; "
                                 "latent_as_sequence needs the same T")
            decoder = _build(latent_as_sequence, dec_sizes, dec_kw, "decoder", steps=steps, init="orthogonal",
                             backend=backend)
    model = make_autoencoder(encoder, decoder, head, features=None if vocab is not None else features)
    return model, {"encoder": enc_params, "decoder": {"lstm": dec_layers}, "head": head_params}

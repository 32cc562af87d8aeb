"""Plain float64 NumPy references: an LSTM written the way a textbook (and
PyTorch's documentation) writes it, one step at a time, no JAX."""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_params(p):
    """LSTMParams (any array type) -> tuple of float64 arrays."""
    return tuple(np.asarray(a, np.float64) for a in (p.w_i, p.w_h, p.b))


def np_step(p, h, c, x):
    w_i, w_h, b = np_params(p)
    hidden = w_h.shape[0]
    g = x @ w_i + h @ w_h + b
    i, f, gg, o = (g[k * hidden : (k + 1) * hidden] for k in range(4))
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
    h = sigmoid(o) * np.tanh(c)
    return h, c


def np_layer(p, xs, length, h0=None, c0=None, reverse=False):
    """One layer over xs[T, F]: valid steps only, zeros elsewhere."""
    xs = np.asarray(xs, np.float64)
    hidden = np.asarray(p.w_h).shape[0]
    h = np.zeros(hidden) if h0 is None else np.asarray(h0, np.float64)
    c = np.zeros(hidden) if c0 is None else np.asarray(c0, np.float64)
    hs = np.zeros((xs.shape[0], hidden))
    order = range(length - 1, -1, -1) if reverse else range(length)
    for t in order:
        h, c = np_step(p, h, c, xs[t])
        hs[t] = h
    return hs, h, c


def np_stack(layers, xs, length):
    """A stack; a tuple entry that is not an LSTMParams is a bidirectional pair."""
    from jax_lstm_ae.nn import LSTMParams

    finals = []
    for layer in layers:
        if isinstance(layer, LSTMParams):
            xs, h, c = np_layer(layer, xs, length)
            finals.append((h, c))
        else:
            hf, h_f, c_f = np_layer(layer[0], xs, length)
            hb, h_b, c_b = np_layer(layer[1], xs, length, reverse=True)
            xs = np.concatenate([hf, hb], axis=-1)
            finals.append(((h_f, c_f), (h_b, c_b)))
    return xs, finals

"""Keras 3 on its JAX backend: Sequential LSTM / RepeatVector autoencoder."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

from peers import Runner  # noqa: E402
from peers._data import batch  # noqa: E402


def build(cfg, mode, **_) -> Runner:
    if keras.backend.backend() != "jax":
        raise ImportError(f"keras is set to the {keras.backend.backend()!r} backend; set KERAS_BACKEND=jax")
    keras.utils.set_random_seed(0)
    x = batch(cfg)
    inp = keras.Input((cfg.steps, cfg.features))
    h = inp
    for k, size in enumerate(cfg.enc_sizes):
        h = keras.layers.LSTM(size, return_sequences=k < len(cfg.enc_sizes) - 1)(h)
    z = h
    h = keras.layers.RepeatVector(cfg.steps)(z)
    for size in cfg.dec_sizes:
        h = keras.layers.LSTM(size, return_sequences=True)(h)
    out = keras.layers.TimeDistributed(keras.layers.Dense(cfg.features))(h)
    versions = {"keras": keras.__version__}
    if mode == "train":
        model = keras.Model(inp, out)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=True)

        def step():
            model.train_on_batch(x, x)

        return Runner(step, versions)
    model = keras.Model(inp, z if mode == "encode" else out)

    def step():
        model.predict_on_batch(x)

    return Runner(step, versions)

"""The model layers: cell -> layer -> encoder / decoders / heads -> model (pure functions on pytrees)."""

from jax_lstm_ae.nn.cell import INITS, LSTMParams, LSTMState, init_lstm, lstm_cell, lstm_step, zero_state
from jax_lstm_ae.nn.layer import BACKENDS, init_stack, lstm_layer, lstm_stack, register_backend, resolve_backend, scan_gates
from jax_lstm_ae.nn.encoder import Encoder, POOLINGS, lstm_encoder
from jax_lstm_ae.nn.decoders import DECODERS, Decoder, conditional, final_state, latent_as_sequence, output_width, repeat, teacher_forced, unconditioned
from jax_lstm_ae.nn.heads import HEADS, Head, identity, keras_binary_crossentropy, linear, masked_mean, sigmoid, softmax
from jax_lstm_ae.nn.composite import Composite, join_future, make_composite
from jax_lstm_ae.nn.model import Autoencoder, make_autoencoder, recurrent_autoencoder, reverse_valid, step_mask

__all__ = [
    "Autoencoder",
    "BACKENDS",
    "Composite",
    "DECODERS",
    "Decoder",
    "Encoder",
    "HEADS",
    "Head",
    "INITS",
    "LSTMParams",
    "LSTMState",
    "POOLINGS",
    "conditional",
    "final_state",
    "identity",
    "init_lstm",
    "init_stack",
    "join_future",
    "keras_binary_crossentropy",
    "latent_as_sequence",
    "linear",
    "lstm_cell",
    "lstm_encoder",
    "lstm_layer",
    "lstm_stack",
    "lstm_step",
    "make_autoencoder",
    "make_composite",
    "masked_mean",
    "output_width",
    "recurrent_autoencoder",
    "register_backend",
    "repeat",
    "resolve_backend",
    "reverse_valid",
    "scan_gates",
    "sigmoid",
    "softmax",
    "step_mask",
    "teacher_forced",
    "unconditioned",
    "zero_state",
]

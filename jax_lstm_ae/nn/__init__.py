"""The model floor: encoder / decoders / heads -> model -> spec (the model as a value), pure functions on pytrees.

It stands on ``jax_lstm_ae.kernels`` (the cell, the per-example reference
scans) and ``jax_lstm_ae.backends`` (the backend choice and the batched
stack); their common names are re-exported here (``nn.lstm_stack``,
``nn.BACKENDS``, ...)."""

from jax_lstm_ae.kernels.cell import ACTIVATIONS, INITS, LSTMParams, LSTMState, LayerParams, init_lstm, lstm_cell, lstm_step, zero_state
from jax_lstm_ae.kernels.reference import init_stack, reverse_valid
from jax_lstm_ae.backends import BACKENDS, Backend, StackFn, check_backend, lstm_layer, lstm_stack, lstm_stack_batched, resolve_backend, scan_gates
from jax_lstm_ae.nn.encoder import Encoder, POOLINGS, lstm_encoder
from jax_lstm_ae.nn.decoders import DECODERS, Decoder, conditional, final_state, latent_as_sequence, output_width, repeat, teacher_forced, unconditioned
from jax_lstm_ae.nn.heads import HEADS, Head, identity, keras_binary_crossentropy, linear, masked_mean, sigmoid, softmax
from jax_lstm_ae.nn.model import Autoencoder, error_terms, forward_batch, make_autoencoder, recurrent_autoencoder, step_mask
from jax_lstm_ae.nn.spec import Activation, CellSpec, DType, DecoderKind, DecoderSpec, EncoderSpec, FirstOutput, HeadKind, HeadSpec, Init, Loss, ModelSpec, Pooling, Spec, SpecError, StateInit, build
from jax_lstm_ae.nn.composite import Composite, join_future, make_composite

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Autoencoder",
    "BACKENDS",
    "Backend",
    "CellSpec",
    "Composite",
    "DECODERS",
    "DType",
    "Decoder",
    "DecoderKind",
    "DecoderSpec",
    "Encoder",
    "EncoderSpec",
    "FirstOutput",
    "HEADS",
    "Head",
    "HeadKind",
    "HeadSpec",
    "INITS",
    "Init",
    "LSTMParams",
    "LSTMState",
    "LayerParams",
    "Loss",
    "ModelSpec",
    "POOLINGS",
    "Pooling",
    "Spec",
    "SpecError",
    "StackFn",
    "StateInit",
    "build",
    "check_backend",
    "conditional",
    "error_terms",
    "final_state",
    "forward_batch",
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
    "lstm_stack_batched",
    "lstm_step",
    "make_autoencoder",
    "make_composite",
    "masked_mean",
    "output_width",
    "recurrent_autoencoder",
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

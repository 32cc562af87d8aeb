"""The ground floor: the LSTM cell, the per-example reference scans and the batched kernels.

- ``cell``: parameters, initialisers, activations and one pure step on one example;
- ``reference``: layers and stacks over time on one example (the specification);
- ``fast``, ``pallas``, ``cudnn`` (and ``common``): the batched kernels behind
  the "fast" / "fast_bf16", "pallas" / "pallas_bf16" and "cudnn" backends. They are not
  imported here: ``jax_lstm_ae.backends`` loads each when its backend is first
  traced.

This floor imports nothing else of the package (only ``jax_lstm_ae._typing``).
"""

from jax_lstm_ae.kernels.cell import (
    ACTIVATIONS,
    DEFAULT_ACTIVATIONS,
    INITS,
    Init,
    LayerParams,
    LSTMParams,
    LSTMState,
    check_activations,
    dense,
    gate_math,
    init_lstm,
    lstm_cell,
    lstm_step,
    zero_state,
)
from jax_lstm_ae.kernels.reference import (
    init_stack,
    lstm_layer,
    lstm_stack,
    project_inputs,
    reverse_valid,
    scan_gates,
    stack_output_size,
    stack_reference_batched,
)

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_ACTIVATIONS",
    "INITS",
    "Init",
    "LSTMParams",
    "LSTMState",
    "LayerParams",
    "check_activations",
    "dense",
    "gate_math",
    "init_lstm",
    "init_stack",
    "lstm_cell",
    "lstm_layer",
    "lstm_stack",
    "lstm_step",
    "project_inputs",
    "reverse_valid",
    "scan_gates",
    "stack_output_size",
    "stack_reference_batched",
    "zero_state",
]

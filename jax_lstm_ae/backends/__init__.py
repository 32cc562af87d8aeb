"""The middle floor: which backend runs an LSTM stack, and the batched stack on it.

A closed set of backends (:class:`Backend`: "auto", "reference", "fast",
"fast_bf16", "pallas", "pallas_bf16", "cudnn"), checked when a model is built and resolved
in one place (:func:`resolve_backend`) when it is traced. The kernels live one
floor down, in ``jax_lstm_ae.kernels``; this floor imports only them, and the
Pallas and cuDNN kernel modules only when their backend is first traced.
"""

from jax_lstm_ae.backends.dispatch import (
    BACKENDS,
    Backend,
    StackFn,
    check_backend,
    lstm_layer,
    lstm_stack,
    lstm_stack_batched,
    resolve_backend,
    scan_gates,
    stack_function,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "StackFn",
    "check_backend",
    "lstm_layer",
    "lstm_stack",
    "lstm_stack_batched",
    "resolve_backend",
    "scan_gates",
    "stack_function",
]

"""The command line ``jax-lstm-ae`` (``python -m jax_lstm_ae``): train,
encode, reconstruct, info, detect, probe."""

from jax_lstm_ae.cli.main import entry_point, main

__all__ = ["entry_point", "main"]

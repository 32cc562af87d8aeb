"""``python -m jax_lstm_ae`` runs the ``jax-lstm-ae`` command."""

import sys

from jax_lstm_ae.cli.main import entry_point

sys.exit(entry_point())

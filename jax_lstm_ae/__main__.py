"""``python -m jax_lstm_ae`` runs the ``jax-lstm-ae`` command."""

import sys

from jax_lstm_ae._cli import main

sys.exit(main())

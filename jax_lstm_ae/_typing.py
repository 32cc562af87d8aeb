"""Shape legend and type aliases shared by every module.

Letters used in docstrings, tests and the aliases below:

    B  batch                 T  time steps          F  input features
    H  hidden units          E  embedding (latent)  V  vocabulary size
    G  = 4H fused gates      D  devices

Functions are written for ONE example (no B) and batched with ``jax.vmap``;
the batched boundary (``Autoencoder.encode`` etc.) asserts shapes with chex.
The aliases are documentation: they are all ``jax.Array`` at run time.
"""

from __future__ import annotations

from typing import Any

import jax

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any

Seq = Array  # [T, F] one real-valued example
Tokens = Array  # [T] one integer example
Gates = Array  # [T, G] or [G]
Hidden = Array  # [H]
Latent = Array  # [E]
Length = Array  # [] int32, 1 <= length <= T
BatchSeq = Array  # [B, T, F] (or [B, T] tokens)
BatchLatent = Array  # [B, E]
Lengths = Array  # [B] int32

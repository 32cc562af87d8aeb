"""tune_cpu_allocator: XLA's per-run temporary buffer stops page-faulting.

Each check runs in a fresh process, because the setting must come before JAX
starts its CPU client and changes the whole process.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

_SCRIPT = r"""
import json, resource, sys
import jax_lstm_ae as la
applied = la.train.tune_cpu_allocator() if sys.argv[1] == "tuned" else False
import jax, jax.numpy as jnp, optax
model = la.make_autoencoder(la.lstm_encoder((64,)), la.repeat((64,)), features=1)
opt = optax.adam(1e-3)
state = la.create_train_state(model, opt, jax.random.PRNGKey(0))
step = la.make_train_step(model, opt)
x = jax.random.normal(jax.random.PRNGKey(1), (64, 140, 1))
batch = la.Batch(x, jnp.full((64,), 140, jnp.int32))
temp = jax.jit(la.train.train_step_fn(model, opt)).lower(state, batch).compile().memory_analysis().temp_size_in_bytes
for _ in range(5):  # the heap settles over the first steps
    state, m = step(state, batch); jax.block_until_ready(m)
per_step = []
for _ in range(7):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    state, m = step(state, batch); jax.block_until_ready(m)
    per_step.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
faults = sorted(per_step)[len(per_step) // 2]  # the median step
print(json.dumps({"applied": applied, "faults": faults, "per_step": per_step, "pages": temp / 4096,
                  "again": la.train.tune_cpu_allocator()}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_heap_keeps_xla_temporaries_mapped():
    """A small autoencoder's train step (XLA temporaries of about 55 MiB):
    without the setting every step maps them afresh, with it the median step
    almost never does (an odd step may still grow the heap once)."""
    plain, tuned = _run("plain"), _run("tuned")
    assert tuned["applied"] and tuned["again"] and not plain["applied"]
    assert plain["faults"] > 0.5 * plain["pages"], plain
    assert tuned["faults"] < 0.05 * tuned["pages"], tuned

"""This library as another checkout has it (``--baseline PATH`` of
bench/throughput.py): a before/after comparison in one process.

The other checkout's package is imported under the same name with
``sys.modules`` swapped for the duration of the build and the first step
(which traces and compiles, so its lazy imports resolve to that checkout);
the compiled step then keeps its own code whatever is imported later.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path

from peers import Runner
from peers.jax_lstm_ae_peer import build_with

_NAME = "jax_lstm_ae"


def _ours() -> dict:
    return {k: m for k, m in sys.modules.items() if k == _NAME or k.startswith(_NAME + ".")}


@contextlib.contextmanager
def _library_from(path: str):
    root = str(Path(path).resolve())
    if not (Path(root) / _NAME / "__init__.py").exists():
        raise ImportError(f"--baseline {path}: no {_NAME} package there (give a checkout's root folder)")
    saved = _ours()
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, root)
    try:
        yield importlib.import_module(_NAME)
    finally:
        for k in _ours():
            del sys.modules[k]
        sys.path.remove(root)
        sys.modules.update(saved)


def build(cfg, mode, *, path: str, **kw) -> Runner:
    with _library_from(path) as la:
        runner = build_with(la, cfg, mode, **kw)
        runner.step()  # trace and compile while the checkout is the imported package
        runner.versions["checkout"] = str(Path(path).resolve())
    return runner

"""The package's shape: no private JAX API, arrows that point one way (down the
floors kernels -> backends -> nn -> ...), no import cycles, a curated top
level, and model building that never starts a JAX runtime."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import jax_lstm_ae as la

PKG = Path(la.__file__).resolve().parent
ROOT = PKG.parent

# Floor -> the floors it may import from (besides itself and the shared typing module).
ALLOWED = {
    "kernels": set(),  # the cell, the reference scans and the batched kernels
    "backends": {"kernels"},  # the backend set and the batched dispatch
    "nn": {"kernels", "backends"},
    "data": set(),
    "train": {"kernels", "backends", "nn", "data"},
    "apps": {"kernels", "backends", "nn", "data", "train"},
    "cli": {"kernels", "backends", "nn", "data", "train", "apps"},
}
# The folders whose modules must import one another without cycles (the
# import-cycle check below covers these three floors only).


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        yield path, path.relative_to(PKG).parts


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def test_no_private_jax_api():
    bad = [(str(p.relative_to(ROOT)), m) for p, _ in _modules() for m in _imports(p)
           if m.startswith("jax._src") or m == "jax._src"]
    assert not bad, f"modules import JAX internals: {bad}"
    for p, _ in _modules():
        assert "jax._src" not in p.read_text(), f"{p} mentions jax._src"


def test_imports_point_one_way():
    wrong = []
    for path, parts in _modules():
        if len(parts) < 2:
            continue  # the top-level __init__, __main__ and _typing
        layer = parts[0]
        for mod in _imports(path):
            if not mod.startswith("jax_lstm_ae."):
                continue
            target = mod.split(".")[1]
            if target in ALLOWED and target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{'/'.join(parts)} imports {mod}")
    assert not wrong, "\n".join(wrong)
    # the dispatch loads the GPU kernels only when their backend is chosen (inside stack_function)
    top_level = [n for n in ast.parse((PKG / "backends" / "dispatch.py").read_text()).body
                 if isinstance(n, (ast.Import, ast.ImportFrom))]
    gpu = ("jax_lstm_ae.kernels.pallas", "jax_lstm_ae.kernels.cudnn")
    named = [(getattr(n, "module", "") or "", [a.name for a in n.names]) for n in top_level]
    assert not [m for m, names in named
                if m.startswith(gpu) or any(f"{m}.{a}".startswith(gpu) or a.startswith(gpu) for a in names)]


def _package_module_name(parts: tuple[str, ...]) -> str:
    parts = parts[:-1] if parts[-1] == "__init__.py" else parts[:-1] + (parts[-1][:-3],)
    return ".".join(("jax_lstm_ae",) + parts)


def _package_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of its code
    (function-level imports included); ``from pkg import name`` counts as an
    import of ``pkg.name`` where that is a module, else of ``pkg``, and
    every import counts as one of the packages above the imported module."""
    names = {_package_module_name(parts): path for path, parts in _modules()}
    graph: dict[str, set[str]] = {}
    for mod, path in names.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against the importing package
                    head = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{head}.{base}" if base else head
                for a in node.names:
                    deps.add(f"{base}.{a.name}" if f"{base}.{a.name}" in names else base)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        # Importing a.b.c first runs the packages a.b and a: count them too,
        # except the importer's own packages (already being imported).
        own = {mod.rsplit(".", k)[0] for k in range(1, mod.count(".") + 1)}
        deps |= {d.rsplit(".", k)[0] for d in list(deps) for k in range(1, d.count(".") + 1)} - own
        graph[mod] = {d for d in deps if d in names and d != mod}
    return graph


def _cyclic_groups(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(mod: str) -> None:
        index[mod] = low[mod] = len(index)
        stack.append(mod)
        on_stack.add(mod)
        for dep in sorted(graph[mod]):
            if dep not in index:
                visit(dep)
                low[mod] = min(low[mod], low[dep])
            elif dep in on_stack:
                low[mod] = min(low[mod], index[dep])
        if low[mod] == index[mod]:
            group = []
            while True:
                m = stack.pop()
                on_stack.discard(m)
                group.append(m)
                if m == mod:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for mod in sorted(graph):
        if mod not in index:
            visit(mod)
    return groups


def test_no_import_cycles_in_the_package():
    """No module of the package lies on an import cycle. The graph is the whole
    package's, imports inside functions and the packages an import runs
    included, so a cycle that leaves a folder and comes back counts."""
    graph = _package_graph()
    assert {m.split(".")[1] for m in graph if m.count(".") >= 1} >= {"kernels", "backends", "nn", "data", "train",
                                                                      "apps", "cli"}
    assert "jax_lstm_ae.backends.dispatch" in graph["jax_lstm_ae.backends"]
    assert "jax_lstm_ae.kernels.fast" in graph["jax_lstm_ae.backends.dispatch"]  # a function-level import
    bad = _cyclic_groups(graph)
    assert not bad, "modules that import one another in a cycle: " + "; ".join(" <-> ".join(g) for g in bad)


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cyclic_groups(graph) == [["a", "b", "c"]]


def test_bottoms_of_data_and_cli():
    """data.core and cli.shell import nothing else of their folders."""
    graph = _package_graph()
    for bottom in ("jax_lstm_ae.data.core", "jax_lstm_ae.cli.shell"):
        folder = bottom.rpartition(".")[0] + "."
        assert not {m for m in graph[bottom] if m.startswith(folder)}, (bottom, graph[bottom])


def test_data_layer_imports_no_jax_at_module_level():
    """NumPy only: reading data must not pull in JAX (a JAX key is recognised without importing it)."""
    bad = []
    for path in sorted((PKG / "data").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.name}: {n}" for n in names if n == "jax" or n.startswith(("jax.", "flax", "optax"))]
    assert not bad, bad


def test_curated_top_level():
    names = la.__all__
    assert names == sorted(names) and len(set(names)) == len(names)
    assert 40 <= len(names) <= 64, len(names)
    for name in names:
        assert getattr(la, name) is not None, name
    for sub in (la.nn, la.data, la.train, la.apps):
        assert sub.__all__ == sorted(sub.__all__)
        for name in sub.__all__:
            assert getattr(sub, name) is not None, f"{sub.__name__}.{name}"


def test_bench_and_examples_use_public_names():
    bad = []
    for folder in ("bench", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for mod in _imports(path):
                if mod.startswith("jax_lstm_ae") and any(part.startswith("_") for part in mod.split(".")[1:]):
                    bad.append(f"{path.relative_to(ROOT)}: {mod}")
    assert not bad, "\n".join(bad)


def test_modules_are_small():
    lines = {str(p.relative_to(PKG)): len(p.read_text().splitlines()) for p in sorted(PKG.rglob("*.py"))}
    long = {name: n for name, n in lines.items() if n > 500}
    assert not long, f"modules over 500 lines: {long}"


_FRESH = r"""
import json, sys
import jax
import optax
import jax_lstm_ae as la
from jax_lstm_ae import nn

built = []
for backend in nn.BACKENDS:
    kw = dict(backend=backend)
    enc = la.lstm_encoder((8, 4), bidirectional=True, latent_dim=4, **kw)
    for dec in (la.repeat((4,), **kw), la.latent_as_sequence((4,), steps=2, **kw), la.teacher_forced((4,), **kw),
                la.conditional((4,), teacher_prob=0.5, **kw), la.unconditioned((4,), **kw)):
        for head in (la.linear(), la.linear("mae"), la.sigmoid()):
            built.append(la.make_autoencoder(enc, dec, head, features=3))
    built.append(la.make_autoencoder(la.lstm_encoder((4,), vocab_size=5, **kw), la.repeat((4,), **kw)))
    built.append(la.recurrent_autoencoder(3, 4, **kw))
model = la.recurrent_autoencoder(3, 4)  # "auto": "fast" once traced on the CPU
opt = la.make_optimizer(1e-3, warmup_steps=2, decay_steps=10)
step = la.make_train_step(model, opt)
evals = la.make_eval_step(model)
cfg = la.train.build_model({"model": la.train.model_config(3, decoder="teacher_forced", embedding_dim=4, hidden=(6,))})
asked = la.ask_for_cpu_devices(3)
devices = len(jax.devices())
# an actual step now runs on those devices
state = la.create_train_state(model, opt, jax.random.PRNGKey(0))
import numpy as np
state, m = step(state, la.Batch(np.zeros((2, 5, 3), np.float32), np.array([5, 2], np.int32)))
print(json.dumps({"asked": asked, "devices": devices, "models": len(built), "finite": bool(m["finite"]),
                  "gpu_modules": sorted(k for k in sys.modules if k in ("jax_lstm_ae.kernels.pallas",
                                                                        "jax_lstm_ae.kernels.cudnn"))}))
"""


def test_building_every_model_starts_no_jax_runtime(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    res = subprocess.run([sys.executable, "-c", _FRESH], capture_output=True, text=True, env=env, timeout=600,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["asked"] is True and out["devices"] == 3, out
    assert out["models"] == len(la.nn.BACKENDS) * 17 and out["finite"]  # 17 models per backend
    assert out["gpu_modules"] == [], "building models loaded a GPU backend module"

"""Benchmark configurations and the implementations compared on them.

Every implementation builds the same network for a :class:`Config` (the seed
answers' RecurrentAutoencoder: encoder LSTM F -> 2E -> E, RepeatVector,
decoder LSTM E -> E -> 2E, Linear 2E -> F; or one layer each side for
``braun``), the same MSE loss and plain Adam(1e-3), and returns a
:class:`Runner` whose ``step()`` runs one iteration of the mode and blocks
until its results are ready.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

MODES = ("train", "encode", "reconstruct")


@dataclass(frozen=True)
class Config:
    name: str
    batch: int  # B
    steps: int  # T
    features: int  # F
    latent: int  # E
    enc_sizes: tuple[int, ...]  # hidden sizes of the encoder stack
    dec_sizes: tuple[int, ...]  # hidden sizes of the repeat decoder stack

    def with_steps(self, steps: int) -> "Config":
        return replace(self, steps=int(steps))


def _two_layer(name: str, b: int, t: int, f: int, e: int) -> Config:
    return Config(name, b, t, f, e, (2 * e, e), (e, 2 * e))


CONFIGS = {
    "ecg": _two_layer("ecg", 64, 140, 1, 64),
    "wide": _two_layer("wide", 256, 64, 32, 128),
    "braun": Config("braun", 64, 100, 123, 320, (320,), (320,)),
    "long": _two_layer("long", 16, 2000, 4, 64),
}


def layers_of(cfg: Config) -> list[tuple[int, int, bool]]:
    """(in_features, hidden, projects_inputs) of each LSTM layer, encoder then
    decoder; the repeat decoder's first input is constant in time, so its
    input projection is done once per sequence, not per step."""
    out, f = [], cfg.features
    for h in cfg.enc_sizes:
        out.append((f, h, True))
        f = h
    for k, h in enumerate(cfg.dec_sizes):
        out.append((f, h, k > 0))
        f = h
    return out


def model_flops(cfg: Config, mode: str) -> float:
    """Matmul FLOPs of one step of ``mode`` (multiply-add = 2): the LSTM
    layers' input and recurrent products and the output layer; training adds
    the backward pass's input- and weight-gradient products (3x the forward)."""
    bt, layers = cfg.batch * cfg.steps, layers_of(cfg)

    def layer(f_in, h, projects):
        g = 4 * h
        return 2 * bt * h * g + (2 * bt * f_in * g if projects else 2 * cfg.batch * f_in * g)

    encoder = sum(layer(*spec) for spec in layers[: len(cfg.enc_sizes)])
    if mode == "encode":
        return float(encoder)
    forward = encoder + sum(layer(*spec) for spec in layers[len(cfg.enc_sizes):]) + 2 * bt * cfg.dec_sizes[-1] * cfg.features
    return float(3 * forward if mode == "train" else forward)


class Runner(NamedTuple):
    step: Callable[[], None]  # one iteration, blocking
    versions: dict[str, str]  # library -> version, for the record
    memory: Callable[[], int | None] = lambda: None  # bytes the framework reports, if any


# impl name -> (module, factory); the module is imported only when asked for,
# so a missing peer package is reported, not a crash.
IMPLS = {
    "jax_lstm_ae": ("peers.jax_lstm_ae_peer", "build"),
    "baseline": ("peers.baseline_peer", "build"),  # this library from another checkout (--baseline PATH)
    "torch": ("peers.torch_peer", "build"),
    "torch_compile": ("peers.torch_peer", "build_compiled"),
    "torch_bf16": ("peers.torch_peer", "build_bf16"),  # bfloat16 autocast around forward + loss
    "flax": ("peers.flax_peer", "build"),
    "keras": ("peers.keras_peer", "build"),
}


def build(impl: str, cfg: Config, mode: str, **options) -> Runner:
    """Raise ImportError when the peer's package is missing."""
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose from {sorted(IMPLS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    module, factory = IMPLS[impl]
    return getattr(importlib.import_module(module), factory)(cfg, mode, **options)

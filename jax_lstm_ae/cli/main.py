"""The ``jax-lstm-ae`` command: the parser and the entry point.

Subcommands come from the modules named in :data:`SUBCOMMAND_MODULES`; each
exposes ``register(subparsers)`` that adds its parser and calls
``set_defaults(func=...)`` with ``func(args) -> int | None``. The modules of
``cli`` and their jobs:

    shell      errors: one line on stderr, exit code 2 (CliError, fail, run_guarded)
    args       options and data loading several commands share
    outputs    where a command may write: planned before any work, written atomically
    rundir     a run directory's lock, partial folder and swap
    train      train (train_setup: a new run's or a resumed run's setup)
    series     train --train-rows and detect on a run of the series pipeline
    arrays     encode, reconstruct;  info: info
    detect     detect (scoring: labels, thresholds, table and plot)
    probe      probe
    checks, devices, plots: argparse types, --devices, the run's PNGs

Imports point one way: main -> commands -> args/outputs/rundir -> shell.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from jax_lstm_ae.cli.shell import EXIT_USER_ERROR, PROG, CliParser, run_guarded
from jax_lstm_ae.train.allocator import tune_cpu_allocator

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "jax_lstm_ae.cli.train", "jax_lstm_ae.cli.arrays", "jax_lstm_ae.cli.info", "jax_lstm_ae.cli.detect",
    "jax_lstm_ae.cli.probe", "jax_lstm_ae.cli.data",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog=PROG, description="LSTM sequence autoencoders on pure JAX functions: train, encode, reconstruct."
    )
    from jax_lstm_ae import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    parser.command_names = sorted(sub.choices)
    return parser


def entry_point() -> int:
    """The ``jax-lstm-ae`` executable: the CLI in a process of its own, so it
    keeps freed CPU heap memory mapped first (``tune_cpu_allocator``: no page
    faults on XLA's per-step buffers), before JAX starts."""
    tune_cpu_allocator()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad flag (one line already printed)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    if getattr(args, "func", None) is None:
        names = ", ".join(getattr(parser, "command_names", []))
        print(f"{PROG}: error: give a command ({names}); see `{PROG} --help`", file=sys.stderr)
        return EXIT_USER_ERROR
    return run_guarded(args.func, args)


if __name__ == "__main__":
    sys.exit(entry_point())

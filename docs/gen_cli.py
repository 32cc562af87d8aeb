"""Build-time page: the command-line reference, rendered from the parser that
`jax-lstm-ae` itself uses (`jax_lstm_ae.cli.main.build_parser`), every
subcommand's `--help` verbatim. Run by the mkdocs-gen-files plugin
(mkdocs.yml); importing the CLI starts no JAX backend."""

from __future__ import annotations

import argparse
import os
import sys

import mkdocs_gen_files

os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: fix it so the page is the same everywhere

from jax_lstm_ae.cli.main import build_parser  # noqa: E402


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise RuntimeError("the jax-lstm-ae parser has no subcommands")


def page() -> str:
    parser = build_parser()
    subs = subcommands(parser)
    lines = [
        "# Command-line reference",
        "",
        "Generated when the site is built from the parser of `jax-lstm-ae` (`jax_lstm_ae/cli/main.py`): each",
        "section is the subcommand's `--help`. `python -m jax_lstm_ae` is the same program. A guide to the",
        "commands, with examples, is [The command line](../guides/command-line.md).",
        "",
        "## jax-lstm-ae",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
    ]
    for name, sub in subs.items():
        lines += [f"## {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


with mkdocs_gen_files.open("reference/cli.md", "w") as f:
    f.write(page())


def top_level_page() -> str:
    """`import jax_lstm_ae as la`: each name of `la.__all__`, linked to its entry on its subpackage's page."""
    import jax_lstm_ae as la

    lines = [
        "# jax_lstm_ae",
        "",
        "`import jax_lstm_ae as la` gives the names most code needs (`la.__all__`, listed below with the",
        "subpackage that documents them); every other public name lives in its subpackage:",
        "[nn](nn.md) (models and their specs), [data](data.md) (loaders, batches), [train](train.md) (the step,",
        "the runner, checkpoints, devices), [apps](apps.md) (detectors, scores, metrics, probes, weight import).",
        "",
        "| name | documented in |",
        "| --- | --- |",
    ]
    for name in la.__all__:
        module = getattr(getattr(la, name), "__module__", None)
        if module is None:  # a subpackage
            lines.append(f"| `la.{name}` | [jax_lstm_ae.{name}]({name}.md) |" if name in ("nn", "data", "train", "apps")
                         else f"| `la.{name}` | `jax_lstm_ae.{name}` (internal layers) |")
            continue
        pkg = ".".join(module.split(".")[:2])
        # a function named like its own module (train.fit.fit, data.synthetic.synthetic) is documented under its module
        target = f"{module}.{name}" if f"{pkg}.{name}" in sys.modules else f"{pkg}.{name}"
        lines.append(f"| [`la.{name}`][{target}] | `{pkg}` |")
    return "\n".join(lines) + "\n"


with mkdocs_gen_files.open("reference/api/index.md", "w") as f:
    f.write(top_level_page())

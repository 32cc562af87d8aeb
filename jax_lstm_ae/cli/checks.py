"""argparse types that refuse a bad number where it is typed.

Python's ``int`` and ``float`` read ``1_000``, ``nan``, ``inf`` and digits of
any script (``int("١٢") == 12``); a flag here takes plain ASCII numbers only,
and each type states the range it accepts, so ``--lr nan`` or
``--batch-size 0`` stop at parse time with one line saying what to give.

    p.add_argument("--lr", type=number(">0"), ...)
    p.add_argument("--val-fraction", type=number("[0,1)"), ...)
    p.add_argument("--warmup-steps", type=integer(">=0"), ...)
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Callable

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
SEED_MAX = 2**32 - 1  # numpy's Generator and jax.random.PRNGKey both take a uint32 seed


def is_ascii_int(text: str) -> bool:
    """``-12`` yes; ``1_000``, ``١٢``, ``1.0`` no."""
    return bool(_INT.fullmatch(text.strip()))


def is_finite_number(text: str) -> bool:
    """``0.5``, ``-1e3`` yes; ``nan``, ``inf``, ``1_000`` no."""
    t = text.strip()
    return bool(_FLOAT.fullmatch(t)) and math.isfinite(float(t))


def _range_check(rule: str) -> tuple[Callable[[float], bool], str]:
    """``">0"``, ``">=0"``, ``"[0,1)"``, ``"[0,1]"``, ``"(0,1)"``, ``"any"`` -> (test, words)."""
    if rule == "any":
        return (lambda v: True), "a number"
    if rule.startswith(">="):
        lo = float(rule[2:])
        return (lambda v: v >= lo), f"a number >= {lo:g}"
    if rule.startswith(">"):
        lo = float(rule[1:])
        return (lambda v: v > lo), f"a number > {lo:g}"
    left, right = rule[0], rule[-1]
    lo, hi = (float(s) for s in rule[1:-1].split(","))
    lo_ok = (lambda v: v >= lo) if left == "[" else (lambda v: v > lo)
    hi_ok = (lambda v: v <= hi) if right == "]" else (lambda v: v < hi)
    return (lambda v: lo_ok(v) and hi_ok(v)), f"a number in {rule}"


def number(rule: str = "any", *, example: str | None = None) -> Callable[[str], float]:
    """An argparse type: a finite float obeying ``rule`` (see :func:`_range_check`)."""
    ok, words = _range_check(rule)
    hint = f" (e.g. {example})" if example else ""

    def parse(text: str) -> float:
        t = text.strip()
        if not _FLOAT.fullmatch(t):
            raise argparse.ArgumentTypeError(f"expected {words}{hint}, got {text!r}")
        v = float(t)
        if not math.isfinite(v) or not ok(v):
            raise argparse.ArgumentTypeError(f"expected {words}{hint}, got {text!r}")
        return v

    parse.__name__ = "number"
    return parse


def integer(rule: str = "any", *, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an ASCII integer obeying ``rule`` and at most ``maximum``."""
    ok, words = _range_check(rule)
    words = words.replace("a number", "an integer")
    if maximum is not None:
        words += f" and <= {maximum}"

    def parse(text: str) -> int:
        t = text.strip()
        if not _INT.fullmatch(t):
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
        v = int(t)
        if not ok(v) or (maximum is not None and v > maximum):
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
        return v

    parse.__name__ = "integer"
    return parse


positive = integer(">0")
seed = integer(">=0", maximum=SEED_MAX)

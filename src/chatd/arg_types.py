"""argparse types shared by chatd's commands: a refused value is a usage error naming
it, before anything starts."""

from __future__ import annotations

import argparse

__all__ = ["count", "days", "seconds"]


def count(text: str) -> int:
    """A whole number, 0 or more (an argparse type)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 or more)")
    return int(text)


def _amount(text: str, unit: str) -> float:
    """A finite number of ``unit``, 0 or more (``nan`` and ``inf`` are refused, not
    waited for)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit} (0 or more)")
    return value


def seconds(text: str) -> float:
    return _amount(text, "seconds")


def days(text: str) -> float:
    return _amount(text, "days")

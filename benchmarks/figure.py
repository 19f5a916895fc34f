"""One row of ``serving.py``'s table (``Figure``: a value per server, the chatd/peer ratio,
the target and whether it is met) and how values are shown (``fmt``).

Apart from ``report.py`` so that its row builders (``report_rows.py``) share it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# how a row builder adds a row: the figure, and how to read its value from a server's results
Add = Callable[["Figure", Callable[[dict[str, Any]], Any]], None]


@dataclass
class Figure:
    """One row of the table: a value per server, the chatd/peer ratio, a target if any."""

    key: str  # stable name, for comparing runs
    label: str
    unit: str  # "tok/s", "ms", "s", "%", "x", "tokens", "MiB", ""
    better: str  # "higher", "lower", or "" (not compared between runs)
    chatd: Any = None
    peer: Any = None
    target: str = ""  # e.g. ">=1.20x chatd/peer", "<=3% chatd" or "yes chatd"
    ratio_ok: bool = True  # whether chatd/peer is meaningful

    @property
    def ratio(self) -> float | None:
        if not self.ratio_ok:
            return None
        a, b = self.chatd, self.peer
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            return float(a) / float(b)
        return None

    def met(self) -> str:
        """Whether the target holds: on the ratio ("chatd/peer") or on chatd's value."""
        if not self.target:
            return ""
        if self.target == "yes chatd":  # a yes/no figure that must be yes
            return "?" if not isinstance(self.chatd, bool) else ("yes" if self.chatd else "NO")
        op, rest = self.target[:2], self.target[2:]
        number, _, on = rest.partition(" ")
        value = self.ratio if on == "chatd/peer" else self.chatd
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "?"
        percent = number.endswith("%")
        limit = float(number[:-1]) / 100 if percent else float(number.rstrip("x"))
        ok = value >= limit if op == ">=" else value <= limit
        return "yes" if ok else "NO"

    def as_dict(self) -> dict[str, Any]:
        """The row as written to the results file (read back by ``regressions``)."""
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "better": self.better,
            "chatd": self.chatd,
            "peer": self.peer,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met(),
        }


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "tok/s":
        return f"{value:.1f}"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.1f}"
    return str(value)


def median(values: list[Any]) -> float | None:
    xs = [v for v in values if isinstance(v, int | float)]
    return statistics.median(xs) if xs else None

"""``--max-connections`` and the process's open-file limit (api/connections.py): the soft
limit is raised to fit the cap, up to the hard limit, or chatd warns that the cap
cannot be reached (past the limit, accepting a connection fails for everyone)."""

from __future__ import annotations

import logging
import resource

import pytest

from chatd.api import connections
from chatd.api.connections import fit_file_limit


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[int, int]]:
    state = {"now": (1024, 4096)}
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _: state["now"])

    def set_limit(_: int, value: tuple[int, int]) -> None:
        hard = state["now"][1]
        if hard != resource.RLIM_INFINITY and value[0] > hard:
            raise ValueError("over the hard limit")
        state["now"] = value

    monkeypatch.setattr(connections.resource, "setrlimit", set_limit)
    return state


def test_the_soft_limit_is_raised_to_fit_the_cap(
    limits: dict[str, tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        fit_file_limit(1000)
    assert limits["now"][0] >= 1000 + 100 and limits["now"][1] == 4096
    assert not caplog.records


def test_a_hard_limit_too_low_is_a_warning(
    limits: dict[str, tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        fit_file_limit(10_000)
    assert limits["now"] == (4096, 4096)  # as far as it goes
    assert "--max-connections 10000" in caplog.text and "ulimit" in caplog.text


def test_no_cap_or_room_enough_changes_nothing(limits: dict[str, tuple[int, int]]) -> None:
    fit_file_limit(0)
    fit_file_limit(500)
    assert limits["now"] == (1024, 4096)


def test_an_unlimited_hard_limit(limits: dict[str, tuple[int, int]]) -> None:
    limits["now"] = (1024, resource.RLIM_INFINITY)
    fit_file_limit(5000)
    assert limits["now"][0] >= 5000

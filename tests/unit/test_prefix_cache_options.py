"""The prefix cache's serve options: its host memory, the old cells switch, the disk tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatd.cli import _parser, _prefix_cache_mib
from chatd.config import ConfigError, Settings


def args(*argv: str):  # type: ignore[no-untyped-def]
    return _parser().parse_args(["serve", *argv])


def test_the_default_is_half_a_gib_of_host_memory_and_no_disk() -> None:
    a = args()
    assert _prefix_cache_mib(a) == Settings.prefix_cache_mib == 512
    assert a.prefix_cache_dir is None and a.prefix_cache_disk_mib == 8192


def test_mib_and_the_disk_folder_are_read(tmp_path: Path) -> None:
    a = args("--prefix-cache-mib", "64", "--prefix-cache-dir", str(tmp_path))
    assert _prefix_cache_mib(a) == 64 and a.prefix_cache_dir == tmp_path


def test_the_old_cells_switch_still_turns_the_cache_off() -> None:
    assert _prefix_cache_mib(args("--prefix-cache-cells", "0")) == 0


@pytest.mark.parametrize("argv", [["--prefix-cache-cells", "4096"], ["--prefix-cache-mib", "-1"]])
def test_a_value_that_would_mean_something_else_is_refused(argv: list[str]) -> None:
    with pytest.raises(ConfigError, match=argv[0]):
        _prefix_cache_mib(args(*argv))

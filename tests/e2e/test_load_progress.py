"""llama.cpp tells the model runner how far a load has gone (RunnerConfig.progress, the
hook service/load_progress.py shows a slow load's progress with): the real model's load
reports growing fractions up to 1, and a progress hook that fails never fails the load."""

from __future__ import annotations

from chatd.config import embedded_model_path
from chatd.engine.model_runner import ModelRunner, RunnerConfig


def test_a_load_reports_its_progress_up_to_one() -> None:
    fractions: list[float] = []
    runner = ModelRunner(
        RunnerConfig(embedded_model_path(), n_ctx=256, n_seq_max=1, progress=fractions.append)
    )
    try:
        assert fractions and fractions[-1] == 1.0
        assert fractions == sorted(fractions) and all(0.0 <= f <= 1.0 for f in fractions)
    finally:
        runner.close()


def test_a_failing_progress_hook_does_not_fail_the_load() -> None:
    def broken(fraction: float) -> None:
        raise RuntimeError("a broken progress line")

    runner = ModelRunner(
        RunnerConfig(embedded_model_path(), n_ctx=256, n_seq_max=1, progress=broken)
    )
    try:
        assert runner.n_vocab > 0
    finally:
        runner.close()

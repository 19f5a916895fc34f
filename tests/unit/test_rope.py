"""RoPE/YaRN context stretching: the settings' checks (each refusal names its key or
flag), what they resolve to for llama.cpp, the merge of a [[models]] entry over the
flags, and the context window an engine then allows (engine.context_limit, with its log
line when a window is cut)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatd.cli import _parser
from chatd.config import ConfigError, Settings, load_config
from chatd.engine.engine import context_limit
from chatd.engine.rope import RopeError, RopeScaling
from chatd.serve_options import rope_from


def serve_args(*flags: str) -> object:
    return _parser().parse_args(["serve", *flags])


# --- resolving for llama.cpp ------------------------------------------------------------


def test_nothing_set_is_the_models_own() -> None:
    r = RopeScaling().resolve(8192, 32768)
    assert (r.scaling_type, r.freq_base, r.freq_scale, r.yarn_orig_ctx, r.yarn_ext_factor) == (
        -1,
        0.0,
        0.0,
        0,
        -1.0,
    )
    assert r.n_ctx_stretched == 8192 and not r.custom


def test_yarn_without_a_factor_stretches_to_the_context_window() -> None:
    r = RopeScaling(rope_scaling="yarn").resolve(8192, 32768)
    assert (r.scaling_type, r.freq_scale, r.factor, r.derived) == (2, 0.25, 4.0, True)
    assert r.n_ctx_stretched == 32768 and r.custom
    assert "factor 4 (chosen for the context window)" in r.describe()


def test_yarn_within_the_training_context_does_not_scale() -> None:
    r = RopeScaling(rope_scaling="yarn").resolve(8192, 4096)
    assert (r.freq_scale, r.n_ctx_stretched) == (0.0, 8192)


def test_rope_scale_is_the_expansion_factor() -> None:
    r = RopeScaling(rope_scaling="linear", rope_scale=2.0).resolve(8192, 32768)
    assert (r.scaling_type, r.freq_scale, r.n_ctx_stretched, r.derived) == (1, 0.5, 16384, False)


def test_rope_freq_scale_is_its_inverse() -> None:
    r = RopeScaling(rope_scaling="yarn", rope_freq_scale=0.25).resolve(8192, 0)
    assert (r.freq_scale, r.n_ctx_stretched) == (0.25, 32768)


def test_a_factor_without_a_type_is_the_models_type() -> None:
    """As llama.cpp: the scaling type stays the model's (linear for a header naming
    none), the factor applies."""
    r = RopeScaling(rope_scale=3.0).resolve(8192, 0)
    assert (r.scaling_type, r.n_ctx_stretched) == (-1, 24576)


def test_yarn_orig_ctx_is_what_the_factor_multiplies() -> None:
    r = RopeScaling(rope_scaling="yarn", yarn_orig_ctx=4096).resolve(8192, 16384)
    assert (r.yarn_orig_ctx, r.freq_scale, r.n_ctx_stretched) == (4096, 0.25, 16384)


def test_none_never_stretches() -> None:
    r = RopeScaling(rope_scaling="none").resolve(8192, 32768)
    assert (r.scaling_type, r.n_ctx_stretched) == (0, 8192)


def test_freq_base_and_ext_factor_are_passed_on() -> None:
    r = RopeScaling(rope_scaling="yarn", rope_freq_base=50000.0, yarn_ext_factor=0.5).resolve(
        8192, 8192
    )
    assert (r.freq_base, r.yarn_ext_factor) == (50000.0, 0.5)


# --- checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rope", "key"),
    [
        (RopeScaling(rope_scale=2.0, rope_freq_scale=0.5), "rope_scale"),
        (RopeScaling(rope_scaling="none", rope_scale=2.0), "rope_scale"),
        (RopeScaling(rope_scaling="linear", yarn_orig_ctx=4096), "yarn_orig_ctx"),
        (RopeScaling(rope_scaling="none", yarn_ext_factor=0.5), "yarn_ext_factor"),
        (RopeScaling(rope_scaling="ntk"), "rope_scaling"),
        (RopeScaling(rope_scale=0.0), "rope_scale"),
        (RopeScaling(rope_freq_base=-1.0), "rope_freq_base"),
        (RopeScaling(yarn_ext_factor=1.5), "yarn_ext_factor"),
        (RopeScaling(rope_scale=float("inf")), "rope_scale"),
    ],
)
def test_contradictions_are_refused_naming_the_key(rope: RopeScaling, key: str) -> None:
    with pytest.raises(RopeError, match=f"^{key}:"):
        rope.check()


# --- the config file --------------------------------------------------------------------


def config(tmp_path: Path, text: str) -> object:
    path = tmp_path / "chatd.toml"
    path.write_text(text)
    return load_config(path)


def test_model_entry_keys(tmp_path: Path) -> None:
    file = config(
        tmp_path,
        '[[models]]\nid = "a"\ncontext_window = 32768\nrope_scaling = "yarn"\n'
        "rope_scale = 4\nyarn_orig_ctx = 8192\nrope_freq_base = 100000\nyarn_ext_factor = 1\n",
    )
    [a] = file.models
    assert a.rope == RopeScaling("yarn", 4.0, 100000.0, None, 8192, 1.0)
    assert a.settings(Settings()).rope == a.rope


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('rope_scaling = "dynamic"', "rope_scaling"),
        ("rope_scaling = 2", "rope_scaling"),
        ('rope_scale = "4"', "rope_scale"),
        ("rope_scale = 0", "rope_scale"),
        ("rope_scale = true", "rope_scale"),
        ("rope_freq_base = -10", "rope_freq_base"),
        ("rope_freq_scale = 0", "rope_freq_scale"),
        ("yarn_orig_ctx = 0", "yarn_orig_ctx"),
        ("yarn_orig_ctx = 4096.5", "yarn_orig_ctx"),
        ("yarn_ext_factor = 2", "yarn_ext_factor"),
        ("rope_scale = 2\nrope_freq_scale = 0.5", "rope_scale"),
        ('rope_scaling = "linear"\nyarn_orig_ctx = 4096', "yarn_orig_ctx"),
    ],
)
def test_bad_model_entry_keys_are_refused_naming_them(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"models\[0\]\.{key}:"):
        config(tmp_path, f'[[models]]\nid = "a"\n{line}\n')


def test_an_entrys_keys_go_over_the_flags_one_by_one(tmp_path: Path) -> None:
    [a, b] = config(
        tmp_path,
        '[[models]]\nid = "a"\nrope_scale = 2\n[[models]]\nid = "b"\nrope_scaling = "none"\n',
    ).models
    flags = Settings(rope=RopeScaling(rope_scaling="yarn", rope_freq_scale=0.25))
    # a's own factor replaces the flags' (of the other kind); the type stays the flags'
    assert a.settings(flags).rope == RopeScaling(rope_scaling="yarn", rope_scale=2.0)
    with pytest.raises(ConfigError, match="model 'b' with the server's flags: rope_freq_scale:"):
        b.settings(flags)


# --- the flags --------------------------------------------------------------------------


def test_flags() -> None:
    args = serve_args(
        "--rope-scaling", "yarn", "--rope-scale", "4", "--yarn-orig-ctx", "8192",
        "--rope-freq-base", "10000", "--yarn-ext-factor", "0.5",
    )  # fmt: skip
    assert rope_from(args) == RopeScaling("yarn", 4.0, 10000.0, None, 8192, 0.5)
    assert rope_from(serve_args()) == RopeScaling()


@pytest.mark.parametrize(
    "flags",
    [
        ["--rope-scaling", "dynamic"],
        ["--rope-scale", "0"],
        ["--rope-scale", "nan"],
        ["--rope-scale", "big"],
        ["--rope-freq-base", "-1"],
        ["--rope-freq-scale", "inf"],
        ["--yarn-orig-ctx", "0"],
        ["--yarn-orig-ctx", "4096.5"],
        ["--yarn-ext-factor", "1.5"],
    ],
)
def test_bad_flag_values_are_usage_errors(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        serve_args(*flags)
    assert e.value.code == 2
    assert flags[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rope-scale", "2", "--rope-freq-scale", "0.5"], "--rope-scale: give --rope-scale"),
        (["--rope-scaling", "none", "--rope-scale", "2"], "--rope-scaling none never scales"),
        (["--rope-scaling", "linear", "--yarn-orig-ctx", "4096"], "--yarn-orig-ctx: applies"),
    ],
)
def test_contradicting_flags_name_the_flags(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        rope_from(serve_args(*flags))


# --- the context window an engine allows -------------------------------------------------


def runner(n_ctx: int, rope: RopeScaling, wanted: int) -> object:
    resolved = rope.resolve(8192, wanted)
    return SimpleNamespace(n_ctx=n_ctx, rope=resolved, config=SimpleNamespace(model_path=Path("m")))


def test_a_window_past_the_training_context_is_cut_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "chatd.engine"):
        assert context_limit(runner(32768, RopeScaling(), 16384), 16384) == 8192
    assert "context window 16384 cut to 8192 tokens" in caplog.text
    assert "--rope-scaling yarn" in caplog.text


def test_a_stretched_model_takes_the_window(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "chatd.engine"):
        rope = RopeScaling(rope_scaling="yarn")
        assert context_limit(runner(32768, rope, 24576), 24576) == 24576
    assert "training context 8192 -> 24576 tokens" in caplog.text
    assert "cut" not in caplog.text


def test_a_factor_too_small_for_the_window_is_named(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "chatd.engine"):
        rope = RopeScaling(rope_scaling="yarn", rope_scale=2.0)
        assert context_limit(runner(65536, rope, 32768), 32768) == 16384
    assert "stretched 2x by RoPE scaling goes no further" in caplog.text


def test_the_kv_cells_bound_the_window(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "chatd.engine"):
        rope = RopeScaling(rope_scaling="yarn")
        assert context_limit(runner(16384, rope, 32768), 32768) == 16384
    assert "the KV cache has 16384 cells" in caplog.text


def test_serve_stops_on_contradicting_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """Before any model loads: exit 1, the flags named."""
    from chatd.cli import serve

    args = serve_args("--rope-scaling", "none", "--rope-freq-scale", "0.5")
    assert serve(args) == 1  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "chatd: invalid configuration: --rope-freq-scale: --rope-scaling none never" in err

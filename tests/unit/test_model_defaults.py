"""A model's defaults: read from a GGUF header's ``general.sampling.*``, from a config
entry, and layered (service/model_defaults.py)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from chatd.config import ConfigError, load_config
from chatd.service.model_defaults import (
    EMBEDDED_DEFAULTS,
    ModelDefaults,
    file_facts,
    gguf_defaults,
)

# GGUF value types
U32, I32, F32, BOOL, STRING, F64 = 4, 5, 6, 7, 8, 12


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, kv: list[tuple[str, int, Any]]) -> Path:
    """A GGUF v3 header with these (key, type, value) pairs and no tensors."""
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for key, kind, value in kv:
        out += _string(key) + struct.pack("<I", kind)
        if kind == STRING:
            out += _string(value)
        else:
            out += struct.pack(
                "<" + {U32: "I", I32: "i", F32: "f", BOOL: "?", F64: "d"}[kind], value
            )
    path.write_bytes(out)
    return path


def test_a_gguf_files_recommended_sampling_and_training_context(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "m.gguf",
        [
            ("general.architecture", STRING, "llama"),
            ("llama.context_length", U32, 8192),
            ("general.sampling.temp", F32, 0.6),
            ("general.sampling.top_p", F32, 0.95),
            ("general.sampling.top_k", I32, 20),
            ("general.sampling.min_p", F32, 0.0),
            ("general.sampling.penalty_repeat", F32, 1.05),
        ],
    )
    defaults, n_ctx_train = file_facts(path)
    # f32 values read back as written (0.95 is 0.949999988 in the file)
    assert defaults == ModelDefaults(
        temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, repetition_penalty=1.05
    )
    assert n_ctx_train == 8192


def test_a_file_without_recommendations_or_no_gguf_gives_none(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", [("general.architecture", STRING, "llama")])
    assert file_facts(path) == (ModelDefaults(), None)
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf")
    assert file_facts(bad) == (ModelDefaults(), None)
    assert file_facts(tmp_path / "missing.gguf") == (ModelDefaults(), None)


@pytest.mark.parametrize(
    "meta",
    [
        {"general.sampling.temp": "0.7"},  # a string is no recommendation
        {"general.sampling.temp": True},
        {"general.sampling.temp": float("nan")},
        {"general.sampling.temp": 9.0},  # out of bounds
        {"general.sampling.top_p": 1.5},
        {"general.sampling.top_k": 2.5},
    ],
)
def test_a_bad_recommendation_is_left_out(meta: dict[str, Any]) -> None:
    assert gguf_defaults(meta) == ModelDefaults()


def test_an_integral_float_top_k_is_read_as_an_integer() -> None:
    assert gguf_defaults({"general.sampling.top_k": 40.0}).top_k == 40


def test_layers_first_set_wins_field_by_field() -> None:
    config = ModelDefaults(temperature=0.7)
    recommended = ModelDefaults(temperature=0.6, top_k=20)
    merged = config.over(recommended).over(EMBEDDED_DEFAULTS)
    assert merged == ModelDefaults(temperature=0.7, top_p=0.9, top_k=20, max_output_tokens=1024)
    assert merged.sampling() == {"temperature": 0.7, "top_p": 0.9, "top_k": 20}
    shown = ModelDefaults().shown()
    assert shown["temperature"] == 1.0 and shown["max_output_tokens"] is None


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "chatd.toml"
    path.write_text(f'[[models]]\nid = "m"\npath = "embedded"\n{extra}\n')
    return path


def test_a_config_entry_sets_defaults(tmp_path: Path) -> None:
    text = "temperature = 0\ntop_p = 0.5\ntop_k = 40\nmin_p = 0.1\nrepetition_penalty = 1.1\n"
    file = load_config(_config(tmp_path, text + "max_output_tokens = 64"))
    assert file.models[0].defaults == ModelDefaults(
        temperature=0.0,
        top_p=0.5,
        top_k=40,
        min_p=0.1,
        repetition_penalty=1.1,
        max_output_tokens=64,
    )


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("temperature = 3", "temperature"),
        ('temperature = "hot"', "temperature"),
        ("top_p = -0.1", "top_p"),
        ("top_k = 1.5", "top_k"),
        ("min_p = true", "min_p"),
        ("max_output_tokens = 0", "max_output_tokens"),
        ("max_output_tokens = 10.0", "max_output_tokens"),
    ],
)
def test_a_bad_config_default_names_its_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"models\[0\]\.{key}"):
        load_config(_config(tmp_path, line))

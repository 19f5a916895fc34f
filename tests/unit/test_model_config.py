"""Several local models: per-model engine settings and ``max_loaded`` in the config file
(each bad value refused with a message naming its key), and the repeatable
``--model [ID=]PATH`` of the command line (ids from file names, ``embedded``,
``--model-id`` for a single model, two models with one id refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatd.cli import _model_configs, _parser
from chatd.config import (
    EMBEDDED_MODEL_ID,
    ConfigError,
    FileConfig,
    LocalModelConfig,
    Settings,
    load_config,
    model_spec,
)


def config(tmp_path: Path, text: str) -> FileConfig:
    path = tmp_path / "chatd.toml"
    path.write_text(text)
    return load_config(path)


def test_per_model_settings_override_the_server_wide_ones(tmp_path: Path) -> None:
    file = config(
        tmp_path,
        'max_loaded = 1\n[[models]]\nid = "a"\nn_ctx = 4096\ncontext_window = 2048\n'
        'max_sequences = 8\nthreads = 2\n[[models]]\nid = "b"\npath = "/m/b.gguf"\n',
    )
    assert file.max_loaded == 1
    a, b = file.models
    defaults = Settings(n_ctx=32768, context_window=8192, max_sequences=128, threads=0)
    own = a.settings(defaults)
    assert (own.n_ctx, own.context_window, own.max_sequences, own.threads) == (4096, 2048, 8, 2)
    assert b.settings(defaults) == defaults and b.path == Path("/m/b.gguf")
    assert (own.max_waiting, own.prefix_cache_mib) == (
        defaults.max_waiting,
        defaults.prefix_cache_mib,
    )


def test_max_loaded_defaults_to_all(tmp_path: Path) -> None:
    assert config(tmp_path, '[[models]]\nid = "a"\n').max_loaded == 0


@pytest.mark.parametrize(
    ("line", "key", "least"),
    [
        ('n_ctx = "big"', "n_ctx", 1),
        ("n_ctx = 0", "n_ctx", 1),
        ("context_window = -5", "context_window", 1),
        ("context_window = 2.5", "context_window", 1),
        ("max_sequences = true", "max_sequences", 1),
        ("max_sequences = 0", "max_sequences", 1),
        ("threads = -1", "threads", 0),
        ('threads = "all"', "threads", 0),
    ],
)
def test_bad_model_settings_are_refused_naming_the_key(
    tmp_path: Path, line: str, key: str, least: int
) -> None:
    with pytest.raises(ConfigError, match=rf"models\[0\]\.{key}: an integer >= {least}"):
        config(tmp_path, f'[[models]]\nid = "a"\n{line}\n')


@pytest.mark.parametrize("value", ["-1", '"2"', "true", "1.5"])
def test_bad_max_loaded_is_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"max_loaded: an integer >= 1 is required"):
        config(tmp_path, f'max_loaded = {value}\n[[models]]\nid = "a"\n')


def test_two_models_with_one_id_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\[1\]\.id: 'a' is already a model's id"):
        config(tmp_path, '[[models]]\nid = "a"\n[[models]]\nid = "a"\npath = "/m/x.gguf"\n')


def test_a_path_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.path: a string is required"):
        config(tmp_path, '[[models]]\nid = "a"\npath = 3\n')


@pytest.mark.parametrize(
    ("text", "model_id", "path"),
    [
        ("/models/Qwen2.5-7B.Q4.gguf", "qwen2.5-7b.q4", Path("/models/Qwen2.5-7B.Q4.gguf")),
        ("qwen=/models/q.gguf", "qwen", Path("/models/q.gguf")),
        ("embedded", EMBEDDED_MODEL_ID, None),
        ("small=embedded", "small", None),
        ("./dir=x/m.gguf", "m", Path("./dir=x/m.gguf")),  # "=" inside a path: a path
    ],
)
def test_model_spec(text: str, model_id: str, path: Path | None) -> None:
    spec = model_spec(text)
    assert (spec.id, spec.path) == (model_id, path)


def test_model_spec_without_a_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="a path is required"):
        model_spec("a=")


def configs(*argv: str, file: FileConfig | None = None) -> list[LocalModelConfig]:
    args = _parser().parse_args(["serve", *argv])
    return _model_configs(args, file or FileConfig([], []), Settings(model_id=args.model_id))


def test_repeatable_model_option() -> None:
    got = configs("--model", "a=embedded", "--model", "b=/m/b.gguf", "--model", "/m/C.gguf")
    assert [(m.id, m.path) for m in got] == [
        ("a", None),
        ("b", Path("/m/b.gguf")),
        ("c", Path("/m/C.gguf")),
    ]


def test_model_id_names_a_single_model_and_defaults_stay() -> None:
    assert [(m.id, m.path) for m in configs("--model", "/m/x.gguf", "--model-id", "mine")] == [
        ("mine", Path("/m/x.gguf"))
    ]
    assert [(m.id, m.path) for m in configs()] != []  # the embedded model
    assert [m.id for m in configs("--model-id", "mine")] == ["mine"]
    with pytest.raises(ConfigError, match="--model-id names a single --model"):
        configs("--model", "/m/x.gguf", "--model", "/m/y.gguf", "--model-id", "mine")


def test_two_models_with_one_id_on_the_command_line_are_refused() -> None:
    with pytest.raises(ConfigError, match="two local models have the id 'x'"):
        configs("--model", "/a/x.gguf", "--model", "/b/x.gguf")
    file = FileConfig([LocalModelConfig("a", None)], [])
    with pytest.raises(ConfigError, match="two local models have the id 'a'"):
        configs("--model", "a=/m/a.gguf", file=file)
    assert [m.id for m in configs("--model", "b=/m/b.gguf", file=file)] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[models]]\nid = "a"\n[[models]]\nid = "b"\naliases = ["a"]\n',
            r"models\[1\]\.aliases: 'a' is a model's id",
        ),
        (
            '[[models]]\nid = "a"\naliases = ["x"]\n[[models]]\nid = "b"\naliases = ["x"]\n',
            r"models\[1\]\.aliases: 'x' is already an alias of 'a'",
        ),
    ],
    ids=["another-models-id", "another-models-alias"],
)
def test_an_alias_names_one_model(tmp_path: Path, text: str, message: str) -> None:
    """Otherwise an id would reach a model other than its own (and a key given that id,
    with it): aliases resolve before ids."""
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, text)
    same = config(tmp_path, '[[models]]\nid = "a"\naliases = ["a", "b"]\n')  # its own: fine
    assert same.models[0].aliases == ["a", "b"]

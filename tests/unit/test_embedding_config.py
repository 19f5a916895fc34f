"""A channel model's ``api``: ``"embeddings"`` marks an embedding model of that channel
(one upstream often serves both kinds); anything else but the channel's own API is a
ConfigError naming the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatd.config import ConfigError, load_config


def _load(tmp_path: Path, models: str, api: str = "") -> list:  # type: ignore[type-arg]
    path = tmp_path / "chatd.toml"
    path.write_text(
        f'[[channels]]\nname = "up"\nbase_url = "http://127.0.0.1:9/v1"\n{api}\nmodels = {models}\n'
    )
    return load_config(path).channels


def test_embedding_models_are_marked(tmp_path: Path) -> None:
    (c,) = _load(
        tmp_path,
        '["gpt-4o-mini", {id = "emb", upstream = "text-embedding-3-small", api = "embeddings"},'
        ' {id = "chat2", api = "chat"}]',
    )
    assert c.embeddings == frozenset({"emb"})
    assert c.models == {
        "gpt-4o-mini": "gpt-4o-mini",
        "emb": "text-embedding-3-small",
        "chat2": "chat2",
    }


def test_no_entry_marked_keeps_every_model_a_chat_model(tmp_path: Path) -> None:
    (c,) = _load(tmp_path, '["a", {id = "b", upstream = "c"}]')
    assert c.embeddings == frozenset()


@pytest.mark.parametrize("api", ['"responses"', '"completions"', "3"])
def test_other_apis_are_refused(tmp_path: Path, api: str) -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.api"):
        _load(tmp_path, f'[{{id = "x", api = {api}}}]')


def test_the_channels_own_api_is_accepted(tmp_path: Path) -> None:
    (c,) = _load(tmp_path, '[{id = "x", api = "responses"}]', 'api = "responses"')
    assert c.embeddings == frozenset()

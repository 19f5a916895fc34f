"""A channel's relay policy (upstream/relay_policy.py): its allow-lists, the operator's
store/metadata/user values in the client's place, and the chatd.toml keys that set them
(refused at start-up when wrong). Over HTTP: tests/service/test_relay_hygiene.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatd.config import ConfigError, load_config
from chatd.protocol.relay_fields import (
    CHAT_DEFAULT,
    CHAT_FIELDS,
    MAPPED,
    MESSAGES_DEFAULT,
    MESSAGES_FIELDS,
    NEVER_RELAYED,
    RESPONSES_DEFAULT,
    RESPONSES_FIELDS,
)
from chatd.upstream.relay_policy import RelayPolicy, owner_tag, relay_policy

CLIENT = {
    "model": "pub",
    "messages": [{"role": "user", "content": "Hi"}],
    "stream": True,
    "stream_options": {"include_usage": False},
    "temperature": 0.5,
    "n": 2,
    "store": True,
    "metadata": {"k": "v"},
    "user": "alice@example.com",
    "safety_identifier": "alice",
    "service_tier": "priority",
    "models": ["other"],
    "route": "fallback",
    "provider": {"order": ["x"]},
    "client_metadata": {"x": 1},
    "top_k": 5,
    "junk": "x" * 1000,
}


def test_the_defaults_are_openais_fields_without_the_mapped_and_costly_ones() -> None:
    assert CHAT_DEFAULT < CHAT_FIELDS and RESPONSES_DEFAULT < RESPONSES_FIELDS
    for defaults in (CHAT_DEFAULT, RESPONSES_DEFAULT):
        assert not defaults & (MAPPED | NEVER_RELAYED | {"service_tier"})
    assert "top_k" not in CHAT_DEFAULT  # chatd's sampling extensions are not OpenAI's
    assert {"temperature", "tools", "n", "response_format"} <= CHAT_DEFAULT
    assert not RESPONSES_DEFAULT & {"previous_response_id", "conversation", "prompt", "background"}


def test_by_default_only_allowed_fields_go_and_mapped_ones_are_stripped() -> None:
    out = RelayPolicy().chat_body(CLIENT, "key_1", "c@u")
    assert out == {k: CLIENT[k] for k in ("model", "messages", "stream", "stream_options",
                                          "temperature", "n")}  # fmt: skip
    responses = {"model": "pub", "input": "Hi", "user": "u", "store": True, "prompt": {"id": "p"}}
    assert RelayPolicy().responses_body(responses, "key_1", "c@u") == {
        "model": "pub",
        "input": "Hi",
        "store": False,  # the API's default would store it
    }


def test_the_operators_values_replace_the_clients() -> None:
    policy = RelayPolicy(
        chat_fields=CHAT_DEFAULT | {"top_k"},
        store=True,
        metadata={"team": "gw"},
        user="gw-{owner}",
        safety_identifier="{owner}",
    )
    out = policy.chat_body(CLIENT, "key_1", "c@u")
    tag = owner_tag("key_1", "c@u")
    assert out["store"] is True and out["metadata"] == {"team": "gw"} and out["top_k"] == 5
    assert out["user"] == "gw-" + tag and out["safety_identifier"] == tag and len(tag) == 32
    assert "models" not in out and "junk" not in out
    assert owner_tag("key_2", "c@u") != tag != owner_tag("key_1", "other@u")  # per owner, channel
    assert policy.responses_body({"model": "m", "input": "x"}, "key_1", "c@u")["store"] is True


def test_keys_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "chatd.toml"
    path.write_text(
        "[[channels]]\nname = 'a'\nbase_url = 'http://x/v1'\nmodels = ['m']\n"
        "chat_fields = ['default', 'top_k']\nresponses_fields = ['input', 'instructions']\n"
        "store = false\nmetadata = { team = 'gw' }\nuser = 'gw'\nsafety_identifier = '{owner}'\n"
    )
    [channel] = load_config(path).channels
    relay = channel.relay
    assert relay.chat_fields == CHAT_DEFAULT | {"top_k"}
    assert relay.responses_fields == {"input", "instructions"}
    assert relay.store is False and relay.metadata == {"team": "gw"}
    assert relay.user == "gw" and relay.safety_identifier == "{owner}"


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("chat_fields = ['models']", "chat_fields: 'models' is never relayed"),
        ("responses_fields = ['route']", "responses_fields: 'route' is never relayed"),
        ("chat_fields = ['user']", "chat_fields: 'user' is the channel's own setting"),
        ("chat_fields = 'default'", "chat_fields: a list of field names"),
        ("chat_fields = ['a b']", "chat_fields: 'a b' is not a field name"),
        ("store = 'yes'", "store: true or false"),
        ("metadata = ['x']", "metadata: a table"),
        ("metadata = { k = 1 }", "metadata: a table"),
        ("user = ''", "user: a string"),
        ("user = '{owner.__class__}'", "user: only {owner} may be in braces"),
        ("safety_identifier = '{owner}{owner}x'", "safety_identifier: at most 64"),
        ("messages_fields = ['metadata']", "messages_fields: 'metadata' is the channel's own"),
        ("max_tokens = 0", "max_tokens: a positive integer"),
        ("max_tokens = 'many'", "max_tokens: a positive integer"),
        ("anthropic_betas = 'x'", "anthropic_betas: a list of beta names"),
        ("anthropic_betas = ['a b']", "anthropic_betas: a list of beta names"),
    ],
)
def test_a_wrong_setting_stops_start_up(tmp_path: Path, setting: str, words: str) -> None:
    path = tmp_path / "chatd.toml"
    api = "api = 'anthropic'\n" if setting.startswith(("messages_", "max_", "anthropic_")) else ""
    path.write_text(
        f"[[channels]]\nname = 'a'\nbase_url = 'http://x/v1'\nmodels = ['m']\n{api}{setting}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"channels[0].{words}" in str(e.value)


def test_the_policy_reads_only_its_keys() -> None:
    assert relay_policy({"name": "a", "priority": 3}) == RelayPolicy()


MESSAGES_CLIENT = {
    "model": "pub",
    "messages": [{"role": "user", "content": "Hi"}],
    "max_tokens": 32000,
    "stream": True,
    "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
    "metadata": {"user_id": "alice@example.com"},
    "thinking": {"type": "adaptive"},
    "output_config": {"effort": "high"},
    "context_management": {"edits": []},
    "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    "service_tier": "auto",
    "container": "cntr_1",
    "mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "m"}],
    "junk": 1,
}


def test_messages_defaults_leave_the_account_and_the_mapped_out() -> None:
    assert MESSAGES_DEFAULT < MESSAGES_FIELDS
    assert not MESSAGES_DEFAULT & {"metadata", "service_tier", "container", "mcp_servers"}
    out = RelayPolicy().messages_body(MESSAGES_CLIENT, "key_1", "c@u")
    kept = ("model", "messages", "max_tokens", "stream", "system", "thinking", "output_config",
            "context_management", "tools")  # fmt: skip
    assert out == {k: MESSAGES_CLIENT[k] for k in kept}  # the client's metadata not sent


def test_an_anthropic_channel_gets_the_pseudonym_as_metadata_user_id() -> None:
    tag = owner_tag("key_1", "c@u")
    policy = RelayPolicy(user="gw-{owner}", safety_identifier="s", metadata={"team": "gw"})
    assert policy.anthropic_metadata("key_1", "c@u") == {"user_id": "gw-" + tag}
    out = policy.messages_body(MESSAGES_CLIENT, "key_1", "c@u")
    assert out["metadata"] == {"user_id": "gw-" + tag}  # the operator's table is not sent
    assert RelayPolicy(safety_identifier="{owner}").anthropic_metadata("key_1", "c@u") == {
        "user_id": tag
    }
    assert RelayPolicy().anthropic_metadata("key_1", "c@u") is None


def test_anthropic_keys_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "chatd.toml"
    path.write_text(
        "[[channels]]\nname = 'a'\nbase_url = 'http://x/v1'\nmodels = ['m']\napi = 'anthropic'\n"
        "messages_fields = ['default', 'container']\nmax_tokens = 1024\n"
        "anthropic_betas = ['context-management-2025-06-27']\n"
    )
    [channel] = load_config(path).channels
    relay = channel.relay
    assert relay.messages_fields == MESSAGES_DEFAULT | {"container"}
    assert relay.max_tokens == 1024
    asked = ["context-management-2025-06-27", "context-1m-2025-08-07"]
    assert relay.betas(asked) == ["context-management-2025-06-27"]
    assert RelayPolicy().betas(asked) == asked  # absent: all passed on
    assert RelayPolicy().max_tokens == 4096


@pytest.mark.parametrize(
    "setting", ["max_tokens = 100", "messages_fields = ['default']", "anthropic_betas = []"]
)
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_anthropic_settings_only_on_anthropic_channels(
    tmp_path: Path, setting: str, api: str
) -> None:
    path = tmp_path / "chatd.toml"
    path.write_text(
        f"[[channels]]\nname = 'a'\nbase_url = 'http://x/v1'\nmodels = ['m']\napi = '{api}'\n"
        f"{setting}\n"
    )
    with pytest.raises(ConfigError, match=r"channels\[0\]\.\w+: only an api = \"anthropic\""):
        load_config(path)


def test_completions_fields_default_and_in_the_file(tmp_path: Path) -> None:
    """The legacy Completions API's allow-list: its fields without the mapped ones and
    chatd's extensions; ``completions_fields`` sets it."""
    body = {"model": "pub", "prompt": "x", "echo": True, "best_of": 2, "suffix": "y",
            "user": "alice", "top_k": 5, "junk": 1}  # fmt: skip
    out = RelayPolicy().completions_body(body, "key_1", "c@u")
    assert out == {"model": "pub", "prompt": "x", "echo": True, "best_of": 2, "suffix": "y"}
    path = tmp_path / "chatd.toml"
    path.write_text(
        "[[channels]]\nname = 'a'\nbase_url = 'http://x/v1'\nmodels = ['m']\n"
        "completions_fields = ['echo', 'top_k']\nuser = '{owner}'\n"
    )
    [channel] = load_config(path).channels
    out = channel.relay.completions_body(body, "key_1", "c@u")
    assert out == {"model": "pub", "prompt": "x", "echo": True, "top_k": 5,
                   "user": owner_tag("key_1", "c@u")}  # fmt: skip

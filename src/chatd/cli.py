"""The command line: ``chatd serve``; the database commands (``db``, ``keys``,
``usage``, in admin.py); and commands that ask a running server (``channels`` and
``models`` in status.py, ``chat`` in chat_cli.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatd import __version__
from chatd.admin import add_commands, add_database_options
from chatd.admin import run as run_admin
from chatd.arg_types import seconds
from chatd.chat_cli import add_command as add_chat_command
from chatd.chat_cli import run as run_chat
from chatd.config import (
    ConfigError,
    FileConfig,
    LocalModelConfig,
    Settings,
    embedded_model_path,
    env_api_keys,
    load_config,
    model_spec,
)
from chatd.serve_options import (
    add_browser_options,
    add_limit_options,
    add_quota_options,
    add_rope_options,
    gpu_layers_arg,
    limits_from,
    quotas_from,
    rope_from,
)
from chatd.status import add_command as add_status_command
from chatd.status import add_models_command, run_models
from chatd.status import run as run_status

log = logging.getLogger("chatd")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatd", description=__doc__)
    p.add_argument("--version", action="version", version=f"chatd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the OpenAI Chat Completions API")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[ID=]PATH",
        help="a GGUF file, or `embedded` (default: the embedded SmolLM2); repeatable, each"
        " its own engine; ID= gives its public id (default: from the file name)",
    )
    s.add_argument(
        "--model-id", help="public id of the model of a single --model (default: its file name)"
    )
    s.add_argument(
        "--max-loaded",
        type=int,
        default=None,
        help="local models loaded at once: a request for another loads it, unloading the"
        " least recently used idle one (default: the config file's max_loaded; 0: all)",
    )
    s.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="require this Bearer key (repeatable; also env CHATD_API_KEYS, comma-separated)",
    )
    s.add_argument(
        "--n-ctx",
        type=int,
        default=Settings.n_ctx,
        help="KV cache cells shared by all running sequences",
    )
    s.add_argument(
        "--context-window",
        type=int,
        default=Settings.context_window,
        help="max prompt + completion tokens of one request",
    )
    s.add_argument(
        "--max-sequences",
        type=int,
        default=Settings.max_sequences,
        help="concurrent sequences in the engine (each of n choices counts)",
    )
    s.add_argument(
        "--max-waiting",
        type=int,
        default=Settings.max_waiting,
        help="queued requests beyond which new ones get 503 + Retry-After",
    )
    s.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    s.add_argument(
        "--gpu-layers",
        type=gpu_layers_arg,
        default=Settings.gpu_layers,
        metavar="N|all",
        help="layers of each model llama.cpp puts on the GPU (llama.cpp's -ngl): all (or -1)"
        " for every one; needs llama-cpp-python built with CUDA, Metal or Vulkan, else the"
        " start fails (docs/gpu.md; default: %(default)s, the CPU runs the model)",
    )
    s.add_argument(
        "--prefix-cache-mib",
        type=int,
        default=Settings.prefix_cache_mib,
        help="host memory (MiB) for the KV of finished requests, reused by prompts that"
        " share their prefix (0: no prefix cache)",
    )
    s.add_argument(
        "--prefix-cache-cells",
        type=int,
        default=None,
        help="obsolete (the cache no longer lives in KV cells): 0 turns the prefix cache"
        " off, as --prefix-cache-mib 0; other values are refused",
    )
    s.add_argument(
        "--prefix-cache-entries",
        type=int,
        default=Settings.prefix_cache_entries,
        help="finished sequences the prefix cache keeps",
    )
    s.add_argument(
        "--prefix-cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the prefix cache on disk too, so a restarted server (or a replica given"
        " the same folder) answers cached prompts at hit speed",
    )
    s.add_argument(
        "--prefix-cache-disk-mib",
        type=int,
        default=Settings.prefix_cache_disk_mib,
        help="disk space (MiB) the disk tier may use per model",
    )
    s.add_argument(
        "--shared-prompt",
        action="append",
        default=[],
        metavar="TEXT",
        help="a system prompt whose cached prompt cells every API key may reuse (a public"
        " prompt all clients send); repeatable, added to the config file's shared_prompts."
        " Other prompts are cached per key only",
    )
    s.add_argument(
        "--prompt-lookup",
        action="store_true",
        help="speculative decoding from the prompt's own n-grams when a request has no"
        " prediction: faster when answers repeat the prompt (edits, quotes), slower when"
        " they do not (off by default)",
    )
    s.add_argument(
        "--no-wide-prefill",
        dest="wide_prefill",
        action="store_false",
        help="compute prompts in the main context only, 63 tokens a pass (saves the"
        " second context's memory, ~0.3 GB for the default model; prompts ~25%% slower)",
    )
    s.add_argument(
        "--config",
        type=Path,
        help="a TOML file: local models, aliases, upstream channels (see chatd.example.toml)",
    )
    s.add_argument(
        "--redis-url",
        help="share rate-limit counters and channel cooldowns between replicas,"
        " e.g. redis://127.0.0.1:6379/0 (default: kept in this process)",
    )
    add_limit_options(s)
    add_quota_options(s)
    add_rope_options(s)
    s.add_argument(
        "--drain-seconds",
        type=seconds,
        default=Settings.drain_seconds,
        help="on SIGTERM, how long requests already running may finish (new ones get 503"
        " and /health turns 503 at once); those still running then are cut with an error",
    )
    add_browser_options(s)
    s.add_argument("--log-level", default="info")
    s.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object a line, each request's fields at its top level",
    )
    s.add_argument(
        "--log-content",
        action="store_true",
        help="put request and response bodies (prompts, outputs) in the request log;"
        " off by default (API keys are never logged)",
    )
    add_database_options(s)
    add_commands(sub)
    add_status_command(sub)
    add_models_command(sub)
    add_chat_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(getattr(args, "log_level", "warning"), getattr(args, "log_format", "text"))
    if args.command == "serve":
        return serve(args)
    if args.command == "channels":
        return run_status(args)
    if args.command == "models":
        return run_models(args)
    if args.command == "chat":
        return run_chat(args)
    return run_admin(args)


def _configure_logging(level: str, form: str) -> None:
    """The root handler: text lines, or (``--log-format json``) JSON objects; either
    way every line printable, whoever logs it (chatd/log_lines.py). uvicorn's loggers
    go to this handler too (``serve`` passes it no logging config of its own)."""
    from chatd.log_lines import JsonFormatter, TextFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if form == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])  # unless already set up


def serve(args: argparse.Namespace) -> int:
    from chatd.api.app import create_app
    from chatd.api.drain import Drain
    from chatd.api.shutdown import serve as serve_until_drained
    from chatd.protocol.errors import APIError
    from chatd.service.model_pool import ModelPool
    from chatd.service.models import ModelRegistry

    settings = Settings(
        host=args.host,
        port=args.port,
        model_id=args.model_id,
        api_keys=[*args.api_key, *env_api_keys()],
        n_ctx=args.n_ctx,
        context_window=args.context_window,
        max_sequences=args.max_sequences,
        max_waiting=args.max_waiting,
        threads=args.threads,
        gpu_layers=args.gpu_layers,
        prefix_cache_entries=args.prefix_cache_entries,
        prefix_cache_dir=args.prefix_cache_dir,
        prefix_cache_disk_mib=args.prefix_cache_disk_mib,
        prompt_lookup=args.prompt_lookup,
        wide_prefill=args.wide_prefill,
        drain_seconds=args.drain_seconds,
        allowed_hosts=args.allowed_host,
        cors_origins=args.cors_origin,
        header_timeout=args.header_timeout,
        max_connections=args.max_connections,
        database_url=args.database_url,
        limits=limits_from(args),
        quotas=quotas_from(args),
    )
    if args.data_dir is not None:
        settings.data_dir = args.data_dir
    try:
        settings.rope = rope_from(args)
        settings.prefix_cache_mib = _prefix_cache_mib(args)
        file = load_config(args.config) if args.config else FileConfig([], [])
        configs = _model_configs(args, file, settings)
        max_loaded = file.max_loaded if args.max_loaded is None else args.max_loaded
        settings.shared_prompts = [*file.shared_prompts, *args.shared_prompt]
        if max_loaded < 0:
            raise ConfigError(f"--max-loaded {max_loaded}: 0 (all stay loaded) or more")
        local = [_local_model(m, m.settings(settings)) for m in configs]
        aliases = {a: m.id for m in file.models for a in m.aliases}
        registry = ModelRegistry(local, aliases, file.channels, ModelPool([], max_loaded))
        registry.pool.preload()  # up to max_loaded, in order: a model that cannot load is exit 1
    except ConfigError as e:
        print(f"chatd: invalid configuration: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, RuntimeError, APIError) as e:
        print(f"chatd: {e}", file=sys.stderr)
        return 1
    for c in file.channels:
        log.info("channel %s -> %s serving %s", c.name, c.base_url, ", ".join(c.models))
    if not settings.api_keys:
        log.warning(
            "no --api-key configured: the server is open to anyone who can reach it"
            " unless keys exist in the database (chatd keys create)"
        )
    else:
        log.info("API keys required (%d configured)", len(settings.api_keys))
    from chatd.store.db import Database

    db = Database(settings.resolved_database_url())
    log.info("database: %s", db.url.split("@")[-1] if "@" in db.url else db.url)
    drain = Drain(settings.drain_seconds)
    browsers = _browser_policy(settings)
    app = create_app(
        registry,
        settings.api_keys,
        db,
        args.redis_url,
        settings.limits,
        drain,
        log_content=args.log_content,
        browsers=browsers,
        shared_prompts=settings.shared_prompts,
        quotas=settings.quotas,
    )
    return serve_until_drained(
        app,
        drain,
        header_timeout=settings.header_timeout,
        max_connections=settings.max_connections,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        access_log=False,
        # uvicorn's own lines go through the root's handler too: one format, escaped
        log_config=None,
    )


def _prefix_cache_mib(args: argparse.Namespace) -> int:
    """The prefix cache's host memory; ``--prefix-cache-cells`` (from when the cache lived
    in KV cells) still turns it off with 0, and refuses any other value rather than
    quietly meaning something else."""
    if args.prefix_cache_mib < 0:
        raise ConfigError(f"--prefix-cache-mib {args.prefix_cache_mib}: 0 (off) or more")
    if args.prefix_cache_cells is None:
        return int(args.prefix_cache_mib)
    if args.prefix_cache_cells == 0:
        return 0
    raise ConfigError(
        f"--prefix-cache-cells {args.prefix_cache_cells}: the prefix cache no longer lives in"
        " KV cells; bound it with --prefix-cache-mib (host memory), or turn it off with 0"
    )


def _browser_policy(settings: Settings) -> Any:
    """The Host names and web origins served (api/origins.py). Without --allowed-host: on
    a loopback address, loopback names only; on another address the server's names are
    unknown (a proxy, a LAN name), so any name is served, with a warning."""
    from chatd.api.origins import BrowserPolicy, is_loopback

    hosts = settings.allowed_hosts
    if hosts is None and is_loopback(settings.host):
        hosts = []
    elif hosts is None:
        log.warning(
            "--host %s without --allowed-host: requests naming any host are served, so a"
            " web page could reach this server through DNS rebinding; name the server's"
            " hosts with --allowed-host NAME (or --allowed-host '*' to allow any)",
            settings.host,
        )
    policy = BrowserPolicy.build(hosts, settings.cors_origins)
    if policy.cors_origins:
        log.info("web pages allowed (CORS): %s", ", ".join(sorted(policy.cors_origins)))
    return policy


def _model_configs(
    args: argparse.Namespace, file: FileConfig, settings: Settings
) -> list[LocalModelConfig]:
    """The local models: the file's [[models]], then each --model; the embedded model
    (or --model-id's) when there is none. Two with one id are an error."""
    given = [model_spec(text) for text in args.model]
    if args.model_id is not None:
        if len(given) > 1:
            raise ConfigError("--model-id names a single --model: give several as --model ID=PATH")
        if given:
            given[0].id = args.model_id
    configs = [*file.models, *given]
    if not configs:
        path, model_id = settings.resolved_model()
        configs = [LocalModelConfig(model_id, path)]
    seen: set[str] = set()
    for m in configs:
        if m.id in seen:
            raise ConfigError(
                f"two local models have the id {m.id!r}: give each its own (--model ID=PATH)"
            )
        seen.add(m.id)
    return configs


def _local_model(m: LocalModelConfig, settings: Settings) -> Any:
    """A local model that loads with its own settings when the pool says so; its memory
    need and vocabulary size are read from the file's header now (a missing file, or GPU
    layers this llama.cpp cannot offload, fails the start)."""
    from chatd.engine.memory import estimate, header_facts, tensor_bytes
    from chatd.engine.model_runner import GPUOffloadUnsupported, check_gpu_offload
    from chatd.service.model_defaults import EMBEDDED_DEFAULTS, file_facts
    from chatd.service.models import LocalModel

    path = Path(m.path or embedded_model_path())
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        check_gpu_offload(settings.gpu_layers)
    except GPUOffloadUnsupported as e:
        raise GPUOffloadUnsupported(f"model {m.id!r}: {e}") from None
    prefill = settings.context_window if settings.wide_prefill else 0
    shape, n_vocab = header_facts(path)
    # the config's defaults, then the file's recommended sampling, then (the embedded
    # model) its authors' (service/model_defaults.py)
    recommended, n_ctx_train = file_facts(path)
    defaults = m.defaults.over(recommended)
    if m.path is None or path == embedded_model_path():
        defaults = defaults.over(EMBEDDED_DEFAULTS)
    cells = settings.n_ctx + prefill
    gpu = settings.gpu_layers
    need = estimate(path.stat().st_size, shape, cells, gpu, tensor_bytes(path) if gpu else None)

    def load(progress: Callable[[float], None]) -> Any:
        engine = _engine(settings, path, progress)
        log.info(
            "model %s from %s (%s), context window %d tokens%s",
            m.id,
            path,
            engine.fingerprint,
            engine.context_window,
            _on_gpu(settings.gpu_layers, shape.layers),
        )
        return engine

    return LocalModel(
        m.id,
        None,
        m.priority,
        m.weight,
        loader=load,
        need=need,
        n_vocab=n_vocab,
        defaults=defaults,
        window=settings.context_window,
        n_ctx_train=n_ctx_train,
    )


def _on_gpu(gpu_layers: int, layers: int) -> str:
    """The load line's note of the layers on the GPU, counted as llama.cpp does (the
    output layer is one more: ``layers + 1`` is all of them)."""
    from chatd.engine.memory import offloaded_layers

    if gpu_layers == 0:
        return ""
    repeating, output = offloaded_layers(layers, gpu_layers)
    return f", {repeating + output} of {layers + 1} layers on the GPU"


def _engine(settings: Settings, path: Path, progress: Callable[[float], None] | None = None) -> Any:
    from chatd.engine.engine import Engine, EngineConfig
    from chatd.engine.kv_cache import KVAllocator
    from chatd.engine.model_runner import RunnerConfig
    from chatd.engine.scheduler import SchedulerConfig

    return Engine(
        EngineConfig(
            RunnerConfig(
                path,
                n_ctx=settings.n_ctx,
                n_seq_max=KVAllocator.seq_ids_needed(settings.max_sequences),
                n_threads=settings.threads,
                n_gpu_layers=settings.gpu_layers,
                prefill_ctx=settings.context_window if settings.wide_prefill else 0,
                progress=progress,
                rope=settings.rope,
                context_window=settings.context_window,
            ),
            SchedulerConfig(
                max_waiting=settings.max_waiting,
                n_ctx_seq=settings.context_window,
                prefix_cache_bytes=settings.prefix_cache_mib << 20,
                prefix_cache_entries=settings.prefix_cache_entries,
                prompt_lookup=settings.prompt_lookup,
            ),
            prefix_cache_dir=settings.prefix_cache_dir,
            prefix_cache_disk_bytes=settings.prefix_cache_disk_mib << 20,
        )
    )


if __name__ == "__main__":
    sys.exit(main())

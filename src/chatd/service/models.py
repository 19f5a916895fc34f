"""The models this server can serve, by public id: local models (our engine, with
aliases) and upstream models (served by channels)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from chatd.engine.engine import Engine
from chatd.protocol.errors import ModelNotFound
from chatd.upstream.channels import Channel


@dataclass
class LocalModel:
    """A GGUF model served by our own engine."""

    id: str
    engine: Engine
    created: int = field(default_factory=lambda: int(time.time()))
    owned_by: str = "chatd"

    def card(self, public_id: str | None = None) -> dict[str, Any]:
        return {
            "id": public_id or self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
        }


@dataclass
class UpstreamModel:
    """A public model id served by one or more upstream channels."""

    id: str
    channels: list[Channel]
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def available(self) -> bool:
        return any(c.healthy() for c in self.channels)

    def card(self, public_id: str | None = None) -> dict[str, Any]:
        owner = ",".join(c.name for c in self.channels)
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": owner}


Model = LocalModel | UpstreamModel


class ModelRegistry:
    def __init__(
        self,
        models: list[LocalModel],
        aliases: dict[str, str] | None = None,
        channels: list[Channel] | None = None,
    ) -> None:
        self._models = {m.id: m for m in models}
        self._aliases = dict(aliases or {})
        self.channels = list(channels or [])
        self._upstream: dict[str, UpstreamModel] = {}
        for c in self.channels:
            for public in c.models:
                if public not in self._models and public not in self._aliases:
                    self._upstream.setdefault(public, UpstreamModel(public, [])).channels.append(c)

    def get(self, model_id: str) -> Model:
        local = self._models.get(self._aliases.get(model_id, model_id))
        if local is not None:
            return local
        upstream = self._upstream.get(model_id)
        if upstream is not None:
            return upstream
        raise ModelNotFound(model_id)

    def cards(self) -> list[dict[str, Any]]:
        """The models that can be served now."""
        cards = [m.card() for m in self._models.values()]
        cards += [self._models[t].card(a) for a, t in self._aliases.items() if t in self._models]
        cards += [m.card() for m in self._upstream.values() if m.available]
        return cards

    def local(self) -> list[LocalModel]:
        return list(self._models.values())

    def stats(self) -> dict[str, dict[str, int]]:
        return {m.id: m.engine.stats() for m in self._models.values()}

    def start(self) -> None:
        for m in self._models.values():
            m.engine.start()

    def stop(self) -> None:
        for m in self._models.values():
            m.engine.stop()

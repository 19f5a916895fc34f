"""The models this server can serve, by public id: local models (our engine, with
aliases) and routed models: public ids served by upstream channels, and possibly by a
local model too (then the local engine is one more route, with its own priority)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatd.engine.memory import MemoryNeed
from chatd.protocol.errors import ModelNotFound
from chatd.service.engine_api import EngineLike
from chatd.service.model_defaults import ModelDefaults
from chatd.service.model_pool import Lease, Loader, LoadState, ModelPool, ModelSlot
from chatd.upstream.channels import Channel


class LocalModel:
    """A GGUF model served by our own engine, loaded now or on demand (its ``slot`` in
    the registry's ``ModelPool``). Given an ``engine`` it starts loaded; given a
    ``loader`` (settings -> engine, cli.py) it loads when the pool says so."""

    def __init__(
        self,
        model_id: str,
        engine: EngineLike | None = None,
        priority: int = 0,  # where its ids are also served by channels: its place in routing
        weight: float = 1.0,
        *,
        loader: Loader | None = None,
        need: MemoryNeed | None = None,
        n_vocab: int | None = None,
        defaults: ModelDefaults | None = None,
        window: int | None = None,
        n_ctx_train: int | None = None,
    ) -> None:
        self.id = model_id
        self._n_vocab = n_vocab  # from the file's header, known before loading
        # what a request leaves out gets (service/model_defaults.py)
        self.defaults = defaults or ModelDefaults()
        self._window = window  # the context window it will have once loaded, if known
        self.n_ctx_train = n_ctx_train  # the file's training context (its header's)
        self.priority = priority
        self.weight = weight
        self.slot = ModelSlot(model_id, engine, loader, need)
        self.pool = ModelPool([self.slot])  # replaced by the registry's, shared by all
        self.created = int(time.time())
        self.owned_by = "chatd"

    @property
    def name(self) -> str:
        return f"local:{self.id}"

    @property
    def engine(self) -> EngineLike | None:
        """The engine while loaded (None otherwise); a request takes ``acquire``'s."""
        return self.slot.engine

    @property
    def n_vocab(self) -> int | None:
        """The vocabulary's size: the engine's while loaded, else the file header's (None
        when neither is known), so a request is checked before it may load the model."""
        engine = self.slot.engine
        return engine.n_vocab if engine is not None else self._n_vocab

    @property
    def context_window(self) -> int | None:
        """Tokens one request may hold (prompt and answer): the engine's while loaded,
        else what it was configured with (None when neither is known)."""
        engine = self.slot.engine
        return engine.context_window if engine is not None else self._window

    @property
    def state(self) -> LoadState:
        return self.slot.state

    async def acquire(self, timeout: float = 0.0) -> Lease:
        """This model's engine, loaded first if needed; released when the generation ends."""
        return await self.pool.acquire(self.slot, timeout)

    def healthy(self, now: float | None = None) -> bool:
        """Always routable: a full queue is found out (and skipped) when submitting, and
        an unloaded model loads on demand."""
        return True

    def route_state(self) -> dict[str, Any]:
        """This route as the model states show it (``GET /chatd/models``), with what a
        request that leaves fields out gets (``chatd models`` shows it)."""
        return {
            "name": self.name,
            "kind": "local",
            "state": self.state.value,
            "context_window": self.context_window,
            "defaults": self.defaults.shown(),
        }

    def card(self, public_id: str | None = None) -> dict[str, Any]:
        """The /v1/models card, with llama.cpp router mode's ``status`` extension and
        the fields agent clients read (service/model_card.py; OpenAI's fields unchanged)."""
        from chatd.service.model_card import card_facts

        return {
            "id": public_id or self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "status": {"value": self.state.value},
            **card_facts(self),
        }


Route = Channel | LocalModel


@dataclass
class RoutedModel:
    """A public model id served by one or more channels, and maybe the local engine."""

    id: str
    routes: list[Route]
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def available(self) -> bool:
        return any(r.healthy() for r in self.routes)

    def card(self, public_id: str | None = None) -> dict[str, Any]:
        owner = ",".join(r.name for r in self.routes)
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": owner}

    def status(self) -> dict[str, Any]:
        available, reason = self.available, None
        if not available:  # then every route is a channel cooling down
            reason = "no channel is available: " + ", ".join(
                _cooling(r) for r in self.routes if isinstance(r, Channel)
            )
        return {
            "id": self.id,
            "available": available,
            "reason": reason,
            "routes": [r.name for r in self.routes],
        }


Model = LocalModel | RoutedModel


def route_state(route: Route) -> dict[str, Any]:
    """One route of a public id: a local engine (loaded or not) or a channel (available
    or cooling down), for the playground's and ``chatd models``' picker."""
    if isinstance(route, LocalModel):
        return route.route_state()
    state = route.state()
    row: dict[str, Any] = {"name": route.name, "kind": "channel"}
    if state["healthy"]:
        return {**row, "state": "available"}
    return {**row, "state": "cooling_down", "cooling_seconds_left": state["cooling_seconds_left"]}


def _cooling(channel: Channel) -> str:
    if channel.state()["cooled_elsewhere"]:
        return f"{channel.name} cooling down after failures another replica saw"
    return f"{channel.name} cooling down after {channel.failures} failures"


class ModelRegistry:
    def __init__(
        self,
        models: list[LocalModel],
        aliases: dict[str, str] | None = None,
        channels: list[Channel] | None = None,
        pool: ModelPool | None = None,
    ) -> None:
        self._models = {m.id: m for m in models}
        self._aliases = dict(aliases or {})
        self.channels = list(channels or [])
        # One pool for every local model: ``max_loaded`` counts them all.
        self.pool = pool or ModelPool([])
        self.pool.slots = [m.slot for m in models]
        for m in models:
            m.pool = self.pool
        self._routed: dict[str, RoutedModel] = {}
        for c in self.channels:
            for public in c.models:
                self._routed.setdefault(public, RoutedModel(public, [])).routes.append(c)
        for public, routed in self._routed.items():
            local = self._models.get(self._aliases.get(public, public))
            if local is not None:
                routed.routes.append(local)

    def get(self, model_id: str) -> Model:
        routed = self._routed.get(model_id)
        if routed is not None:
            return routed
        local = self._models.get(self._aliases.get(model_id, model_id))
        if local is not None:
            return local
        raise ModelNotFound(model_id)

    def canonical(self, model_id: str) -> str:
        """The model a public id stands for: the local model's id for the model's own id,
        its aliases and a routed id it also serves; any other id (an id only channels
        serve, or none at all) stands for itself. Rate limits count per canonical id, so
        that no alias is a way around a model's limit."""
        local = self._aliases.get(model_id, model_id)
        return local if local in self._models else model_id

    def _local_only(self) -> list[tuple[str, LocalModel]]:
        """(public id, model) for the ids only a local model serves: ids and aliases."""
        ids = [(m.id, m) for m in self._models.values()]
        ids += [(a, self._models[t]) for a, t in self._aliases.items() if t in self._models]
        return [(public, m) for public, m in ids if public not in self._routed]

    def cards(self) -> list[dict[str, Any]]:
        """The models that can be served now (an unloaded local model can: it loads on
        demand; its card says it is unloaded)."""
        cards = [m.card(public) for public, m in self._local_only()]
        return cards + [m.card() for m in self._routed.values() if m.available]

    def codex_models(self, cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Codex's model metadata for the local-only ids among ``cards`` (an id channels
        serve keeps the metadata Codex has of it: it may be one of OpenAI's)."""
        from chatd.service.model_card import codex_model_info

        listed = {c["id"] for c in cards}
        return [codex_model_info(m, public) for public, m in self._local_only() if public in listed]

    def status(self) -> list[dict[str, Any]]:
        """Every public id, with whether it can be served now and why not."""
        rows = [
            {"id": public, "available": True, "reason": None, "routes": [m.name]}
            for public, m in self._local_only()
        ]
        return rows + [m.status() for m in self._routed.values()]

    def states(self) -> list[dict[str, Any]]:
        """Every public id with its routes' states: what ``GET /chatd/models`` lists."""
        rows = [
            {"id": public, "available": True, "reason": None, "routes": [route_state(m)]}
            for public, m in self._local_only()
        ]
        for routed in self._routed.values():
            row = routed.status()
            rows.append({**row, "routes": [route_state(r) for r in routed.routes]})
        return [{"object": "chatd.model_state", **row} for row in rows]

    def local(self) -> list[LocalModel]:
        return list(self._models.values())

    def token_counter(self) -> Callable[[str], int] | None:
        """How a relayed answer that reports no usage is counted: a loaded local model's
        tokenizer, looked up when counting (never an engine unloaded since), or ~4 bytes
        a token while none is loaded. None without local models (usage is then 0)."""
        if not self._models:
            return None

        def count(text: str) -> int:
            for m in self._models.values():
                if m.engine is not None:
                    return m.engine.count_tokens(text)
            return (len(text.encode("utf-8")) + 3) // 4

        return count

    def stats(self) -> dict[str, dict[str, int]]:
        """The loaded engines' stats, by model id (unloaded models have none)."""
        return {m.id: m.engine.stats() for m in self._models.values() if m.engine is not None}

    def health(
        self, visible: Callable[[str], bool] | None = None, stats: bool = True
    ) -> dict[str, dict[str, Any]]:
        """The local models for ``/health`` (those whose id is ``visible``, or all): loaded
        or not, and, with ``stats``, its engine's statistics if it is."""
        rows: dict[str, dict[str, Any]] = {}
        for m in self._models.values():
            if visible is not None and not visible(m.id):
                continue
            engine = m.engine
            rows[m.id] = {"loaded": engine is not None, "state": m.state.value}
            if engine is not None and stats:
                rows[m.id].update(engine.stats())
        return rows

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()

"""The service skeleton every protocol shares: one request's start, whatever its API.

A protocol's service (``ChatService``, ``ResponsesService``, a Messages service next)
subclasses :class:`ProtocolService` and supplies only what is its own:

* ``local_job``: its request as the core's ``Job`` (its checks, its tools, its schema);
* ``local_answer``: the core's run (``LocalRun``: events per choice, usage) as its answer
  objects and stream events;
* ``relay_answer``: its relay: the wire(s) a channel is spoken to in (``relay_call``
  gives each channel the wire of its API), and the upstream's answer read back as its
  objects;
* ``saver``: what its stored view keeps, when the request asks for storage;
* ``prepare`` (optional): what must be looked up before either route starts (Responses:
  the stored conversation a ``previous_response_id`` continues).

The skeleton does the rest, the same for every protocol: the router (model lookup, local
and channel order, fallback: ``routing.py``), the lease on a local model (refuse before
loading what can be refused, load it, give it back if refused before the generation
starts, else the run gives it back when it ends), the submission (``start_local``), the
usage accountant (``accounting.py``), and the shared pieces one server builds once: the
model registry, the request limits, the shared system prompts and the upstream connection
pool.

Why a base class rather than an adapter object: the hooks need the same shared pieces
(``self.store``, ``self.models``, ``self.upstream``) and the order of the calls is the one
thing that must not differ between protocols (what is refused before a model loads, what
is refused under its lease), so it is written once, here, in ``start``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from chatd.protocol.request_limits import Limits
from chatd.service.accounting import Accountant
from chatd.service.cache_scope import SharedPrompts
from chatd.service.engine_api import EngineLike
from chatd.service.generation import Job, LocalRun, start_local
from chatd.service.limits import Admission
from chatd.service.models import LocalModel, ModelRegistry
from chatd.service.routing import Router
from chatd.store.usage import UsageBuffer
from chatd.upstream.channels import Channel
from chatd.upstream.relay import ConnectionPool, UpstreamCall
from chatd.upstream.wires import Wire

__all__ = ["Fallback", "Incoming", "JobBuilder", "ModelRequest", "ProtocolService"]


class ModelRequest(Protocol):
    """What the skeleton reads of any protocol's request: the public model id it asks for
    (an alias stays the alias), for the router and the usage table."""

    model: str


R = TypeVar("R", bound=ModelRequest)  # the protocol's request (its contract's model)
A = TypeVar("A")  # the protocol's answer, as its routes consume it
S = TypeVar("S")  # its saver: what it hands its answers to store them

# Builds the job once the model is loaded, from its engine: what needs the loaded engine
# (chat: the vocabulary size, when the file's header did not tell it) is refused there.
JobBuilder = Callable[[EngineLike], Job]
# What the router gives a relay to take over when no channel answers before its first byte.
Fallback = Callable[[], Awaitable[A]]


@dataclass(frozen=True)
class Incoming(Generic[R]):
    """One request as the skeleton hands it to its protocol's hooks: the parsed request,
    the caller's owner id (it owns what is stored, its prompt cache partition), and what
    ``prepare`` found for it (``None`` unless the protocol looks something up)."""

    req: R
    owner: str
    prepared: Any = None


class ProtocolService(ABC, Generic[R, A, S]):
    """One protocol's service over the shared core; see the module's docstring.

    ``store`` is the protocol's own store (completions, responses); ``upstream`` is the
    connection pool, shared by all protocols of one server (made here when not given)."""

    def __init__(
        self,
        models: ModelRegistry,
        store: Any = None,
        usage: UsageBuffer | None = None,
        upstream: ConnectionPool | None = None,
        limits: Limits | None = None,
        shared: SharedPrompts | None = None,
    ) -> None:
        self.models = models
        self.store = store
        self.usage = usage
        self.upstream = upstream or ConnectionPool()
        self.limits = limits or Limits()
        self.shared = shared or SharedPrompts()  # system prompts every key may reuse
        self.router = Router(models)

    def relays_untouched(self, model_id: Any) -> bool:
        """Whether only channels serve this id: its requests are then parsed only as far
        as a relay needs, and the upstream decides the rest."""
        return self.router.relays_untouched(model_id)

    async def start(self, req: R, owner: str, admission: Admission | None = None) -> A:
        """Start the request on its model's first available route (the router falls back
        to the next ones); raises APIError for any refusal, before anything is sent.
        ``owner`` (the caller's key) owns what is stored; ``admission`` (its rate-limit
        windows) gets the tokens used."""
        incoming = Incoming(req, owner, await self.prepare(req, owner))
        local = partial(self._start_local, incoming, admission)
        relay = partial(self._start_relay, incoming, admission)
        return await self.router.start(req.model, local, relay)

    async def _start_local(
        self, incoming: Incoming[R], admission: Admission | None, model: LocalModel
    ) -> A:
        build = self.local_job(incoming, model)  # refuses what it can before loading
        lease = await model.acquire(self.limits.request_timeout)  # loads it if need be
        with lease.until_handed_over():  # released if refused below
            engine = lease.engine
            job = build(engine)
            job.defaults = model.defaults.sampling()  # what the request left out
            job.max_output_default = model.defaults.max_output_tokens
            save = self.saver(incoming)
            # nothing may refuse the request after this; the run releases the lease
            run = await start_local(engine, job, self.limits, lease.release, self.shared)
        account = self.accountant(incoming, admission)
        return self.local_answer(incoming, job, run, engine, save, account)

    def _start_relay(
        self,
        incoming: Incoming[R],
        admission: Admission | None,
        channels: list[Channel],
        fallback: Fallback[A] | None,
    ) -> A:
        save = self.saver(incoming)
        account = self.accountant(incoming, admission)
        return self.relay_answer(incoming, channels, fallback, save, account)

    def accountant(self, incoming: Incoming[R], admission: Admission | None) -> Accountant | None:
        """The request's usage counter (usage table, rate-limit tokens), under the public
        model id it asked for; None when this server keeps no usage."""
        if self.usage is None:
            return None
        return Accountant(self.usage, incoming.owner, incoming.req.model, admission)

    def relay_call(
        self,
        model_id: str,
        channels: list[Channel],
        wires: Mapping[str, Callable[[], Wire]],
        default: str = "chat",
    ) -> UpstreamCall:
        """One upstream call over ``channels`` (in order), each channel spoken to in the
        wire of its API (``channel.api``, a key of ``wires``; any API without one in
        ``default``'s). A wire is built only when some channel speaks it, and in the
        order of ``wires``: building one may refuse (a request its translation cannot
        carry), which must happen only when a channel needs it."""

        def api_of(channel: Channel) -> str:
            return channel.api if channel.api in wires else default

        built = {
            api: make() for api, make in wires.items() if any(api_of(c) == api for c in channels)
        }
        return UpstreamCall(
            model_id, channels, {}, self.upstream.session(), wire_for=lambda c: built[api_of(c)]
        )

    async def close(self) -> None:
        await self.upstream.close()

    # ---- what each protocol supplies -------------------------------------------------

    async def prepare(self, req: R, owner: str) -> Any:
        """What must be found before any route starts (refusing with APIError if it is
        missing); handed to every hook as ``incoming.prepared``. Nothing by default."""
        return None

    @abstractmethod
    def local_job(self, incoming: Incoming[R], model: LocalModel) -> JobBuilder:
        """Refuse what this local model cannot honour and can be told before it loads
        (such a refusal loads nothing), and return the builder of the request's ``Job``,
        called with the loaded engine under the model's lease (a refusal there gives the
        lease back)."""

    @abstractmethod
    def saver(self, incoming: Incoming[R]) -> S | None:
        """What stores the answer when the request asks for storage, else None; may
        refuse (a request to store on a server with no database)."""

    @abstractmethod
    def local_answer(
        self,
        incoming: Incoming[R],
        job: Job,
        run: LocalRun,
        engine: EngineLike,
        save: S | None,
        account: Accountant | None,
    ) -> A:
        """The local engine's run of ``job`` as the protocol's answer (whole or streamed), which
        stores itself with ``save`` and counts its usage with ``account``. Must not
        refuse: the generation has started."""

    @abstractmethod
    def relay_answer(
        self,
        incoming: Incoming[R],
        channels: list[Channel],
        fallback: Fallback[A] | None,
        save: S | None,
        account: Accountant | None,
    ) -> A:
        """The request relayed to ``channels`` in order (in the wire each speaks), read
        back as the protocol's answer; ``fallback`` (the routes after them) takes over
        when none answers before its first byte. May refuse what no wire can carry."""

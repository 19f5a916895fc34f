"""The skeleton every protocol's service shares (service/protocol_service.py), with a toy
protocol: the order of its hooks, what a refusal before loading spares (the load), what a
refusal under the lease gives back (the lease), and what each route is handed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from fakes.engine import FakeEngine

from chatd.protocol.errors import InvalidRequest
from chatd.service.accounting import Accountant
from chatd.service.engine_api import EngineLike
from chatd.service.generation import Job, LocalRun
from chatd.service.models import LocalModel, ModelRegistry
from chatd.service.protocol_service import Fallback, Incoming, JobBuilder, ProtocolService
from chatd.store.usage import UsageBuffer, UsageStore
from chatd.upstream.channels import Channel


@dataclass
class ToyRequest:
    model: str
    refuse_before_loading: bool = False
    refuse_when_loaded: bool = False
    calls: list[str] = field(default_factory=list)


@dataclass
class ToyAnswer:
    route: str
    incoming: Incoming[ToyRequest]
    save: str | None
    account: Accountant | None
    run: LocalRun | None = None
    channels: list[Channel] | None = None


class ToyService(ProtocolService[ToyRequest, ToyAnswer, str]):
    async def prepare(self, req: ToyRequest, owner: str) -> Any:
        req.calls.append("prepare")
        return f"prepared for {owner}"

    def local_job(self, incoming: Incoming[ToyRequest], model: LocalModel) -> JobBuilder:
        req = incoming.req
        req.calls.append("local_job")
        if req.refuse_before_loading:
            raise InvalidRequest("refused before loading", param="x")

        def build(engine: EngineLike) -> Job:
            req.calls.append("build")
            if req.refuse_when_loaded:
                raise InvalidRequest("refused under the lease", param="y")
            return Job(render=lambda native: [{"role": "user", "content": "hi"}], owner="o")

        return build

    def saver(self, incoming: Incoming[ToyRequest]) -> str | None:
        incoming.req.calls.append("saver")
        return "save"

    def local_answer(
        self,
        incoming: Incoming[ToyRequest],
        job: Job,
        run: LocalRun,
        engine: EngineLike,
        save: str | None,
        account: Accountant | None,
    ) -> ToyAnswer:
        incoming.req.calls.append("local_answer")
        return ToyAnswer("local", incoming, save, account, run=run)

    def relay_answer(
        self,
        incoming: Incoming[ToyRequest],
        channels: list[Channel],
        fallback: Fallback[ToyAnswer] | None,
        save: str | None,
        account: Accountant | None,
    ) -> ToyAnswer:
        incoming.req.calls.append("relay_answer")
        return ToyAnswer("relay", incoming, save, account, channels=channels)


class CountingLoader:
    def __init__(self) -> None:
        self.loads = 0

    def __call__(self, progress: Any) -> FakeEngine:
        self.loads += 1
        return FakeEngine()


def toy_service(loader: CountingLoader) -> tuple[ToyService, LocalModel]:
    model = LocalModel("toy", loader=loader)
    gpu = Channel("gpu", "http://x/v1", {"relayed": "relayed"})
    usage = UsageBuffer(cast(UsageStore, None))  # never flushed here
    return ToyService(ModelRegistry([model], {}, [gpu]), usage=usage), model


async def test_a_local_start_calls_the_hooks_in_order_and_the_run_holds_the_lease() -> None:
    service, model = toy_service(loader := CountingLoader())
    req = ToyRequest("toy")
    answer = await service.start(req, "owner-1")
    assert req.calls == ["prepare", "local_job", "build", "saver", "local_answer"]
    assert answer.route == "local" and answer.save == "save"
    assert answer.incoming.prepared == "prepared for owner-1"
    assert answer.account is not None and answer.account.model == "toy"
    assert loader.loads == 1 and model.slot.leases == 1
    assert answer.run is not None
    answer.run.cancel()
    assert model.slot.leases == 0  # the run gave the lease back


async def test_a_refusal_before_loading_loads_nothing() -> None:
    service, model = toy_service(loader := CountingLoader())
    with pytest.raises(InvalidRequest, match="before loading"):
        await service.start(ToyRequest("toy", refuse_before_loading=True), "o")
    assert loader.loads == 0 and model.slot.leases == 0


async def test_a_refusal_under_the_lease_gives_it_back() -> None:
    service, model = toy_service(loader := CountingLoader())
    req = ToyRequest("toy", refuse_when_loaded=True)
    with pytest.raises(InvalidRequest, match="under the lease"):
        await service.start(req, "o")
    assert req.calls == ["prepare", "local_job", "build"]
    assert loader.loads == 1 and model.slot.leases == 0


async def test_a_relayed_start_gets_the_channels_saver_and_accountant() -> None:
    service, _ = toy_service(CountingLoader())
    req = ToyRequest("relayed")
    answer = await service.start(req, "o")
    assert req.calls == ["prepare", "saver", "relay_answer"]
    assert answer.route == "relay" and answer.save == "save"
    assert [c.name for c in answer.channels or []] == ["gpu"]
    assert service.relays_untouched("relayed") and not service.relays_untouched("toy")


async def test_relay_call_builds_only_the_wires_its_channels_speak_and_gives_each_its_own() -> None:
    service, _ = toy_service(CountingLoader())
    chat = Channel("c", "http://c/v1", {"m": "m"})
    responses = Channel("r", "http://r/v1", {"m": "m"}, api="responses")
    other = Channel("o", "http://o/v1", {"m": "m"}, api="anthropic")
    built: list[str] = []

    def maker(api: str) -> Any:
        def make() -> Any:
            built.append(api)
            return f"{api} wire"

        return make

    wires = {"responses": maker("responses"), "chat": maker("chat")}
    call = service.relay_call("m", [chat, other], wires)
    assert built == ["chat"]  # no channel speaks the Responses API: its wire is not built
    assert call.wire_for(chat) == call.wire_for(other) == "chat wire"  # no wire: the default
    built.clear()
    call = service.relay_call("m", [chat, responses], wires)
    assert built == ["responses", "chat"]  # in the order of `wires`
    assert call.wire_for(responses) == "responses wire" and call.order == [chat, responses]
    await service.close()

"""Model cards and per-model defaults over HTTP (docs/models.md): the fields agent
clients read on ``/v1/models``, Codex's catalogue, and the sampling and output cap a
request gets when it leaves them out, whatever its protocol."""

from __future__ import annotations

from pathlib import Path

import httpx
from fakes.engine import FakeEngine

from chatd.service.model_defaults import EMBEDDED_DEFAULTS, ModelDefaults
from chatd.service.models import LocalModel

from .harness import MODEL, build_app, run_cli, running_chatd, serve_in_thread

HI = [{"role": "user", "content": "Hi"}]
# the FakeEngine's answer is 8 tokens ("Hello! How can I help you today?")
CAPPED = ModelDefaults(temperature=0.3, top_p=0.8, top_k=20, max_output_tokens=3)
CODEX_REQUIRED = {
    "slug",
    "display_name",
    "supported_reasoning_levels",
    "shell_type",
    "visibility",
    "supported_in_api",
    "priority",
    "model_messages",
    "experimental_supported_tools",
    "support_verbosity",
    "truncation_policy",
}


def model(engine: FakeEngine, defaults: ModelDefaults | None = None) -> LocalModel:
    return LocalModel(MODEL, engine, defaults=defaults, n_ctx_train=8192)


async def test_a_card_tells_what_agent_clients_read(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with running_chatd(tmp_path, engine, local=[model(engine, EMBEDDED_DEFAULTS)]) as c:
        http = c.http()
        listed = (await http.get("/v1/models")).json()
        card = (await http.get(f"/v1/models/{MODEL}")).json()
        assert listed["data"] == [card] and "models" not in listed
        assert {k: card[k] for k in ("id", "object", "owned_by")} == {
            "id": MODEL,
            "object": "model",
            "owned_by": "chatd",
        }
        for name in ("context_window", "max_model_len", "context_length", "max_input_tokens"):
            assert card[name] == 8192, name
        assert card["max_output_tokens"] == 1024
        assert card["capabilities"] == {"tools": True, "vision": False, "reasoning": False}
        assert card["input_modalities"] == ["text"]
        assert card["meta"] == {"n_ctx_train": 8192, "n_vocab": 49152}
        assert card["sampling_defaults"] == {
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 0,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "max_output_tokens": 1024,
        }
        # Anthropic's list is as it was: its own four fields
        anthropic = await http.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
        [row] = anthropic.json()["data"]
        assert set(row) == {"type", "id", "display_name", "created_at"}


async def test_a_model_without_defaults_shows_openais(http: httpx.AsyncClient) -> None:
    card = (await http.get(f"/v1/models/{MODEL}")).json()
    assert card["sampling_defaults"]["temperature"] == 1.0
    assert card["sampling_defaults"]["top_p"] == 1.0
    assert card["sampling_defaults"]["max_output_tokens"] is None
    assert card["max_output_tokens"] == card["context_window"] == 8192


async def test_codex_reads_its_model_info_from_models(tmp_path: Path) -> None:
    config = '[[channels]]\nname = "up"\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["gpt-up"]\n'
    async with running_chatd(tmp_path, config=config) as c:
        r = await c.http().get("/v1/models", params={"client_version": "0.171.0"})
        body = r.json()
        assert body["object"] == "list" and len(body["data"]) == 2
        [info] = body["models"]  # the local model only: a channel's keeps Codex's own
        assert set(info) >= CODEX_REQUIRED
        assert info["slug"] == MODEL and info["context_window"] == 8192
        assert info["model_messages"]["instructions_template"]
        assert info["input_modalities"] == ["text"]


async def test_defaults_fill_what_a_chat_request_leaves_out(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with running_chatd(tmp_path, engine, local=[model(engine, CAPPED)]) as c:
        http = c.http()
        r = await http.post("/v1/chat/completions", json={"model": MODEL, "messages": HI})
        assert r.json()["choices"][0]["finish_reason"] == "length"
        assert r.json()["usage"]["completion_tokens"] == 3
        p = engine.last_params
        assert (p.temperature, p.top_p, p.top_k, p.max_new_tokens) == (0.3, 0.8, 20, 3)
        explicit = {
            "model": MODEL,
            "messages": HI,
            "temperature": 1.5,
            "top_p": None,  # null: the default, as the live API reads it
            "top_k": 5,
            "max_tokens": 50,
        }
        r = await http.post("/v1/chat/completions", json=explicit)
        assert r.json()["choices"][0]["finish_reason"] == "stop"
        p = engine.last_params
        assert (p.temperature, p.top_p, p.top_k, p.max_new_tokens) == (1.5, 0.8, 5, 50)
        big = await http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": HI, "max_tokens": 6000}
        )
        assert big.status_code == 200 and engine.last_params.max_new_tokens == 6000


async def test_the_cap_never_makes_a_long_prompt_fail(tmp_path: Path) -> None:
    """Near the end of the window the cap is the rest of it, not a refusal."""
    engine = FakeEngine(context_window=40)
    defaults = ModelDefaults(max_output_tokens=1000)
    async with running_chatd(tmp_path, engine, local=[model(engine, defaults)]) as c:
        r = await c.http().post("/v1/chat/completions", json={"model": MODEL, "messages": HI})
        assert r.status_code == 200, r.text
        assert engine.last_params.max_new_tokens < 40


async def test_defaults_apply_to_responses_and_messages(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with running_chatd(tmp_path, engine, local=[model(engine, CAPPED)]) as c:
        http = c.http()
        r = await http.post("/v1/responses", json={"model": MODEL, "input": "Hi"})
        assert r.json()["status"] == "incomplete", r.text
        assert r.json()["incomplete_details"] == {"reason": "max_output_tokens"}
        # the response echoes what the model ran with, not OpenAI's 1.0s
        echoed = {k: r.json()[k] for k in ("temperature", "top_p", "max_output_tokens")}
        assert echoed == {"temperature": 0.3, "top_p": 0.8, "max_output_tokens": 3}
        assert (engine.last_params.temperature, engine.last_params.max_new_tokens) == (0.3, 3)
        r = await http.post(
            "/v1/responses",
            json={"model": MODEL, "input": "Hi", "temperature": 0.9, "max_output_tokens": 40},
        )
        assert r.json()["status"] == "completed"
        assert (engine.last_params.temperature, engine.last_params.max_new_tokens) == (0.9, 40)
        assert (r.json()["temperature"], r.json()["top_p"]) == (0.9, 0.8)
        r = await http.post(
            "/v1/messages",
            json={"model": MODEL, "max_tokens": 30, "messages": HI},
            headers={"anthropic-version": "2023-06-01"},
        )
        assert r.status_code == 200, r.text
        p = engine.last_params
        assert (p.temperature, p.top_p, p.top_k, p.max_new_tokens) == (0.3, 0.8, 20, 30)


async def test_legacy_completions_get_the_sampling_defaults_not_the_cap(tmp_path: Path) -> None:
    """The legacy Completions API's ``max_tokens`` defaults to 16, as the live API; the
    model's sampling defaults fill what the request leaves out, as in every API."""
    engine = FakeEngine()
    defaults = ModelDefaults(temperature=0.3, top_p=0.8, top_k=20, max_output_tokens=40)
    async with running_chatd(tmp_path, engine, local=[model(engine, defaults)]) as c:
        r = await c.http().post("/v1/completions", json={"model": MODEL, "prompt": "Hi"})
        assert r.status_code == 200, r.text
        p = engine.last_params
        assert (p.temperature, p.top_p, p.top_k, p.max_new_tokens) == (0.3, 0.8, 20, 16)
        body = {"model": MODEL, "prompt": "Hi", "temperature": 1.2, "max_tokens": 5}
        assert (await c.http().post("/v1/completions", json=body)).status_code == 200
        p = engine.last_params
        assert (p.temperature, p.top_p, p.max_new_tokens) == (1.2, 0.8, 5)


async def test_config_defaults_are_on_the_card(tmp_path: Path) -> None:
    config = (
        f'[[models]]\nid = "{MODEL}"\npath = "embedded"\n'
        "temperature = 0.7\nmin_p = 0.05\nmax_output_tokens = 256\n"
    )
    async with running_chatd(tmp_path, config=config) as c:
        card = (await c.http().get(f"/v1/models/{MODEL}")).json()
        shown = card["sampling_defaults"]
        assert (shown["temperature"], shown["min_p"], shown["max_output_tokens"]) == (
            0.7,
            0.05,
            256,
        )
        assert shown["top_p"] == 1.0 and card["max_output_tokens"] == 256


def test_chatd_models_shows_the_defaults(tmp_path: Path) -> None:
    engine = FakeEngine()
    app = build_app(tmp_path, engine, local=[model(engine, EMBEDDED_DEFAULTS)])
    with serve_in_thread(app) as url:
        code, out, err = run_cli("models", "--url", url, "--api-key", "sk-test-chatd-0123456789")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split()[0] == MODEL
    assert lines[2].split() == [
        "defaults:",
        "temperature",
        "0.2,",
        "top_p",
        "0.9,",
        "max",
        "output",
        "1024",
        "tokens,",
        "window",
        "8192",
        "tokens",
    ]

"""GPU layers (docs/gpu.md): ``--gpu-layers N|all`` and a model's ``gpu_layers``, parsed
and refused as the other engine settings; passed to llama.cpp as ``n_gpu_layers``
(0 unless asked: llama.cpp's own default is every layer); a non-zero value on a
llama.cpp that cannot offload stops the start with a message saying so, before any
model loads; and the memory check then counts only the host's part. This machine's
llama-cpp-python is the CPU build: the refusal is tested with the real
``llama_supports_gpu_offload``, the offload itself only on paper (the estimate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from chatd import cli
from chatd.cli import _parser
from chatd.config import ALL_LAYERS, ConfigError, Settings, embedded_model_path, load_config
from chatd.engine import model_runner
from chatd.engine.memory import (
    COMPUTE_ALLOWANCE,
    KVShape,
    MemoryNeed,
    estimate,
    header_facts,
    offloaded_layers,
    tensor_bytes,
)
from chatd.engine.model_runner import (
    GPUOffloadUnsupported,
    ModelRunner,
    RunnerConfig,
    check_gpu_offload,
)

CPU_BUILD = not llama_cpp.llama_supports_gpu_offload()
cpu_build_only = pytest.mark.skipif(not CPU_BUILD, reason="llama.cpp here can offload")


def model_settings(tmp_path: Path, line: str) -> Settings:
    path = tmp_path / "chatd.toml"
    path.write_text(f'[[models]]\nid = "a"\n{line}\n')
    return load_config(path).models[0].settings(Settings(gpu_layers=4))


@pytest.mark.parametrize(
    ("line", "layers"),
    [("gpu_layers = 20", 20), ("gpu_layers = 0", 0), ("gpu_layers = -1", -1),
     ('gpu_layers = "all"', -1), ("", 4)],
)  # fmt: skip
def test_a_models_gpu_layers_override_the_flag(tmp_path: Path, line: str, layers: int) -> None:
    assert model_settings(tmp_path, line).gpu_layers == layers


@pytest.mark.parametrize("value", ["-2", '"some"', '"20"', "1.5", "true"])
def test_bad_gpu_layers_are_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r'models\[0\]\.gpu_layers: a number of layers .*"all"'):
        model_settings(tmp_path, f"gpu_layers = {value}")


@pytest.mark.parametrize(
    ("text", "layers"), [("all", ALL_LAYERS), ("-1", -1), ("0", 0), ("33", 33)]
)
def test_gpu_layers_flag(text: str, layers: int) -> None:
    assert _parser().parse_args(["serve", "--gpu-layers", text]).gpu_layers == layers
    assert _parser().parse_args(["serve"]).gpu_layers == 0


@pytest.mark.parametrize("text", ["-2", "x", "1.5", "ALL", ""])
def test_bad_gpu_layers_flag_is_a_usage_error(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--gpu-layers", text])
    assert "--gpu-layers" in capsys.readouterr().err


def test_no_gpu_layers_is_no_check() -> None:
    check_gpu_offload(0)  # whatever the build


@cpu_build_only
@pytest.mark.parametrize(("layers", "said"), [(8, "8 layers"), (ALL_LAYERS, "every layer")])
def test_gpu_layers_on_a_cpu_build_are_refused(layers: int, said: str) -> None:
    with pytest.raises(GPUOffloadUnsupported) as e:
        check_gpu_offload(layers)
    assert f"{said} on the GPU" in str(e.value)
    assert "llama_supports_gpu_offload() is false" in str(e.value)
    assert "docs/gpu.md" in str(e.value)


class NoLoad:
    """Stands in for llama.cpp's model load: keeps the parameters, loads nothing."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def __call__(self, path: bytes, params: Any) -> None:
        self.params.append(params)
        return None  # "could not load": the runner stops there


@pytest.mark.parametrize(("layers", "passed"), [(0, 0), (ALL_LAYERS, 0x7FFFFFFF)])
def test_the_runner_passes_the_gpu_layers_to_llama_cpp(
    monkeypatch: pytest.MonkeyPatch, layers: int, passed: int
) -> None:
    monkeypatch.setattr(model_runner, "check_gpu_offload", lambda n: None)
    load = NoLoad()
    monkeypatch.setattr(llama_cpp, "llama_model_load_from_file", load)
    with pytest.raises(RuntimeError, match="could not load"):
        ModelRunner(RunnerConfig(embedded_model_path(), n_gpu_layers=layers))
    (params,) = load.params
    assert params.n_gpu_layers == passed  # 0 stays 0: llama.cpp's own default is -1, all
    assert params.use_extra_bufts is False


@cpu_build_only
def test_the_runner_refuses_gpu_layers_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    load = NoLoad()
    monkeypatch.setattr(llama_cpp, "llama_model_load_from_file", load)
    with pytest.raises(GPUOffloadUnsupported):
        ModelRunner(RunnerConfig(embedded_model_path(), n_gpu_layers=2))
    assert load.params == []


def test_serve_passes_the_gpu_layers_to_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    from chatd.engine import engine

    made: list[Any] = []
    monkeypatch.setattr(engine, "Engine", lambda config: made.append(config))
    cli._engine(Settings(gpu_layers=12), embedded_model_path())
    assert made[0].runner.n_gpu_layers == 12


@cpu_build_only
@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--gpu-layers", "all"], "model 'smollm2-135m-instruct': every layer on the GPU"),
        (["--model", "small=embedded", "--gpu-layers", "3"], "model 'small': 3 layers"),
    ],
)
def test_serve_with_gpu_layers_on_a_cpu_build_stops_before_loading(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    said: str,
) -> None:
    loads: list[Any] = []
    monkeypatch.setattr(llama_cpp, "llama_model_load_from_file", lambda *a: loads.append(a))
    monkeypatch.setattr(cli, "_engine", lambda *a: loads.append(a))
    assert cli.main(["serve", "--data-dir", str(tmp_path), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"chatd: {said}")
    assert "cannot offload to a GPU" in err and "reinstall it" in err
    assert loads == []


@cpu_build_only
def test_a_models_own_gpu_layers_stop_the_start_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "chatd.toml"
    config.write_text('[[models]]\nid = "a"\n[[models]]\nid = "b"\ngpu_layers = 10\n')
    argv = ["serve", "--data-dir", str(tmp_path), "--config", str(config), "--max-loaded", "1"]
    assert cli.main(argv) == 1  # "b" would load on demand: refused at the start all the same
    assert capsys.readouterr().err.startswith("chatd: model 'b': 10 layers on the GPU")


# --- the memory check with layers on a GPU ---------------------------------------------


@pytest.mark.parametrize(
    ("gpu_layers", "repeating", "output"),
    [(0, 0, False), (1, 0, True), (5, 4, True), (30, 29, True), (31, 30, True), (999, 30, True),
     (ALL_LAYERS, 30, True)],
)  # fmt: skip
def test_which_layers_llama_cpp_offloads(gpu_layers: int, repeating: int, output: bool) -> None:
    # llama.cpp 0.3.36 counts the output layer as layer n_layer and offloads from the end
    assert offloaded_layers(30, gpu_layers) == (repeating, output)


def test_tensor_bytes_of_the_embedded_model() -> None:
    path = embedded_model_path()
    sizes = tensor_bytes(path)
    assert sizes is not None and len(sizes) == 272
    # Q4_1: 20 bytes a block of 32 values; 576 x 1536 values
    assert sizes["blk.0.ffn_down.weight"] == 576 * 1536 // 32 * 20
    # tied embeddings: token_embd is also the output (no output.weight)
    assert "output.weight" not in sizes and sizes["token_embd.weight"] > 0
    header = path.stat().st_size - sum(sizes.values())
    assert 0 < header < 4 << 20  # the key/values (the vocabulary) and the tensor infos


def test_tensor_bytes_of_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"not a gguf file at all")
    assert tensor_bytes(path) is None


def test_with_gpu_layers_only_the_hosts_part_is_counted() -> None:
    path = embedded_model_path()
    size, sizes = path.stat().st_size, tensor_bytes(path)
    assert sizes is not None
    shape, _ = header_facts(path)
    cells = 40960
    cpu = estimate(size, shape, cells)
    assert cpu == estimate(size, shape, cells, 0, sizes) and cpu.on_device == 0

    ten = estimate(size, shape, cells, 10, sizes)  # the output layer and blk.21..blk.29
    blocks = sum(n for t, n in sizes.items() if t.startswith("blk.") and int(t.split(".")[1]) >= 21)
    assert ten.weights == size - blocks - sizes["output_norm.weight"]
    assert ten.kv_cache == cells * KVShape(21, 192, 192).cell_bytes()
    kv_gpu = cpu.kv_cache - ten.kv_cache
    copy = sizes["token_embd.weight"]  # the tied output's copy on the GPU
    assert ten.on_device == blocks + sizes["output_norm.weight"] + copy + kv_gpu
    assert ten.compute == COMPUTE_ALLOWANCE

    every = estimate(size, shape, cells, ALL_LAYERS, sizes)
    assert every.kv_cache == 0
    assert every.weights == sizes["token_embd.weight"] + (size - sum(sizes.values()))
    assert every.total < cpu.total


def test_without_the_tensor_sizes_the_whole_file_is_counted() -> None:
    shape = KVShape(layers=30, k_width=192, v_width=192)
    need = estimate(1000, shape, 100, ALL_LAYERS)
    assert (need.weights, need.kv_cache) == (1000, 0)  # weights: an upper bound


def test_the_gpus_share_is_shown_not_counted() -> None:
    need = MemoryNeed(weights=1 << 30, kv_cache=0, compute=0, on_device=3 << 30)
    assert need.total == 1 << 30
    assert need.describe() == (
        "1.00 GiB (weights 1.00 GiB, KV cache 0.00 GiB, compute 0.00 GiB; 3.00 GiB more on the GPU)"
    )


@pytest.mark.parametrize(
    ("gpu_layers", "note"),
    [(0, ""), (5, ", 5 of 31 layers on the GPU"), (ALL_LAYERS, ", 31 of 31 layers on the GPU"),
     (999, ", 31 of 31 layers on the GPU")],
)  # fmt: skip
def test_the_load_line_says_how_many_layers_went(gpu_layers: int, note: str) -> None:
    assert cli._on_gpu(gpu_layers, 30) == note


def test_the_fingerprint_changes_with_the_gpu_layers_only() -> None:
    path = embedded_model_path()
    cpu = model_runner._fingerprint(path)
    assert model_runner._fingerprint(path, 0) == cpu  # a CPU run's is what it was
    assert model_runner._fingerprint(path, 8) not in (cpu, model_runner._fingerprint(path, -1))

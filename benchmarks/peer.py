"""The peer of ``serving.py``: llama.cpp's own ``llama-server``, built here and started.

The llama-cpp-python wheel ships no server binary, so the server is built once from the
llama.cpp sources vendored in the llama-cpp-python sdist, the same llama.cpp chatd runs on,
and cached in ``~/.cache/chatd-bench/`` (a build takes minutes on two cores).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import harness
from harness import log
from prompts import MODEL_ID

LLAMA_CPP_PYTHON = "0.3.36"
CACHE = Path.home() / ".cache" / "chatd-bench"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    # this machine's Intel CPU has AMX, and llama.cpp's AMX mat-mul crashes on it
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
]


def source_dir() -> Path:
    return CACHE / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"


def build_dir() -> Path:
    return CACHE / f"build-{LLAMA_CPP_PYTHON}"


def peer_binary() -> Path:
    return build_dir() / "bin" / "llama-server"


def run_logged(cmd: list[str], log_path: Path, what: str) -> None:
    """Run a long command in its own session with its output in ``log_path``; say every 30 s
    how far it got (the last "[ NN%]" line of a build), and stop the whole group when we are
    interrupted, so no compiler is left running."""
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            told = time.monotonic()
            while proc.poll() is None:
                time.sleep(1.0)
                if time.monotonic() - told >= 30:
                    told = time.monotonic()
                    lines = log_path.read_text(errors="replace").splitlines()
                    done = [ln for ln in lines if ln.startswith("[")]
                    log(f"  {what}: {done[-1][:90] if done else '...'}")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            proc.wait()
            raise
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}), log {log_path}:\n{tail}")


def ensure_llama_server() -> Path:
    """The cached llama-server, built first if missing: the sdist is downloaded with pip (not
    the wheel: the wheel has no server), extracted, configured and built (``-j2``, ~6 min)."""
    binary = peer_binary()
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    build_log = CACHE / f"build-{LLAMA_CPP_PYTHON}.log"
    if not (source_dir() / "CMakeLists.txt").exists():
        sdist = CACHE / "sdist"
        log(f"[build] downloading the llama-cpp-python {LLAMA_CPP_PYTHON} sdist to {sdist}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}"]
            + ["--no-binary", ":all:", "--no-deps", "-d", str(sdist)],
            check=True,
            stdout=sys.stderr,
        )
        archive = next(sdist.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(CACHE, filter="data")
    t0 = time.monotonic()
    log(f"[build] configuring llama.cpp in {build_dir()} (log {build_log})")
    run_logged(
        ["cmake", "-S", str(source_dir()), "-B", str(build_dir()), *CMAKE_FLAGS],
        build_log,
        "cmake configure",
    )
    log("[build] building llama-server (-j2, about 6 minutes)")
    run_logged(
        ["cmake", "--build", str(build_dir()), "--target", "llama-server", "-j2"],
        build_log,
        "build",
    )
    log(f"[build] done in {time.monotonic() - t0:.0f}s: {binary}")
    return binary


def start_peer(binary: Path, parallel: int, ctx: int) -> harness.Managed:
    """llama-server with its shipped defaults but for slots, context and threads (all cores,
    as chatd uses; 2 here)."""
    port = harness.free_port()
    cmd = [str(binary), "-m", str(harness.gguf_path()), "--alias", MODEL_ID]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "-np", str(parallel), "-c", str(ctx)]
    # --no-repack: no extra buffer types, as chatd loads the model. The build is -march=native
    # (GGML_NATIVE), which compiles the AMX kernels in despite GGML_AMX_*=OFF; with them the
    # server dies at warm-up (SIGSEGV / SIGILL) on this VM's AMX CPU.
    cmd += ["-t", str(os.cpu_count() or 2), "--jinja", "--no-repack"]
    return harness.Managed(f"peer-np{parallel}", cmd, port, "/health", env=harness.chatd_env())


def peer_version(binary: Path) -> str:
    """The first line of ``llama-server --version`` (it prints to stderr), for the results."""
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False
    )
    first = (version.stderr.strip() or version.stdout.strip()).splitlines()
    return first[0] if first else "?"

"""The runtime install: a fresh venv with only ``pip install xclip-cli`` (no torch, transformers,
onnx or onnxscript) runs a model prepared by the full install (``xclip models prepare --output``)
and copied elsewhere, its checkpoint gone, and every command gives the full install's records.

The venv is made as the Dockerfile's final stage makes it: the wheel built from this checkout,
installed with its dependencies from the package index. ``make test-runtime`` (in ``.ci/run``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import interruptible, save_tiny_checkpoint, write_video

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parent.parent
LABELS = "a red screen, white stripes, a cat"
FULL = [sys.executable, "-m", "xclip_cli"]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``xclip`` of a fresh venv holding the runtime install only."""
    folder = tmp_path_factory.mktemp("runtime")
    wheels = folder / "wheels"
    _quietly([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT])
    (wheel,) = wheels.glob("xclip_cli-*.whl")
    venv = folder / "venv"
    _quietly([sys.executable, "-m", "venv", venv])
    _quietly([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel])
    absent = subprocess.run(
        [venv / "bin" / "python", "-c", "import importlib.util as u; "
         "print([m for m in ('torch', 'transformers', 'onnx', 'onnxscript') if u.find_spec(m)])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert absent.stdout.strip() == "[]", absent.stdout
    return [str(venv / "bin" / "xclip")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model prepared by the full install and moved to another folder, its checkpoint deleted;
    footage to classify (two clips, a labelled folder for eval)."""
    folder = tmp_path_factory.mktemp("world")
    checkpoint = save_tiny_checkpoint(folder / "checkpoint")
    env = _env(folder / "full-cache")
    made = subprocess.run(
        [*FULL, "models", "prepare", "--model", str(checkpoint), "--output", str(folder / "prepared")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    shutil.move(folder / "prepared", folder / "elsewhere")
    shutil.rmtree(checkpoint)
    footage = folder / "footage"
    for label in ("red", "white"):
        (footage / label).mkdir(parents=True)
    write_video(footage / "red" / "a.mp4", num_frames=36, size=(64, 48))
    write_video(footage / "white" / "b.mp4", num_frames=20, size=(48, 64), pattern="flat")
    return {"model": folder / "elsewhere", "footage": footage, "root": folder}


def _quietly(command: list[object]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _env(cache: Path) -> dict[str, str]:
    """A user's environment: the suite's XCLIP_* settings (--backend torch...) left out."""
    mine = {name: value for name, value in os.environ.items() if not name.startswith("XCLIP_")}
    return mine | {"XCLIP_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}


def _run(xclip: list[str], args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*xclip, *args], capture_output=True, text=True, cwd=cwd, env=_env(cache), timeout=300)
    assert done.returncode == 0, (xclip, args, done.stderr)
    return done


def _commands(model: Path, footage: Path) -> list[tuple[list[str], str | None]]:
    """Each command of a prepared model, and the CSV file of its records (None: JSON on stdout)."""
    clip = str(footage / "red" / "a.mp4")
    m = ["--model", str(model)]
    return [
        (["classify", clip, str(footage / "white" / "b.mp4"), *m, "--labels", LABELS, "-f", "json"], None),
        (["classify", clip, *m, "--labels", LABELS, "--multi-label", "-f", "json"], None),
        (["scan", str(footage), *m, "--labels", LABELS, "-o", "scan.csv", "--report", "scan.html"], "scan.csv"),
        (["timeline", clip, *m, "--labels", LABELS, "--window", "0.5", "-f", "json"], None),
        (["embed", str(footage), *m, "-o", "whole.index"], "whole.index/videos.csv"),
        (["search", "whole.index", "a red screen", *m, "-f", "json"], None),
        (["classify", "--index", "whole.index", *m, "--labels", LABELS, "-f", "json"], None),
        (["embed", str(footage), *m, "-o", "hits.index", "--windows", "--window", "0.5"], "hits.index/videos.csv"),
        (["search", "hits.index", "a red screen", "white stripes", *m, "-f", "json", "--report", "hits.html"], None),
        (["eval", str(footage), *m, "--labels", "red, white", "-o", "eval.csv"], "eval.csv"),
    ]


def test_the_runtime_install_gives_the_full_installs_records(runtime: list[str], world: dict[str, Path]) -> None:
    records = {}
    for name, xclip in (("full", FULL), ("runtime", runtime)):
        work = world["root"] / name
        work.mkdir()
        cache = work / "cache"
        outputs = []
        for args, written in _commands(world["model"], world["footage"]):
            done = _run(xclip, args, work, cache)
            outputs.append(_rows(work / written) if written else _json(done.stdout))
        assert (work / "scan.html").stat().st_size > 0 and (work / "hits.html").stat().st_size > 0
        records[name] = outputs
    for args_written, full, runtime_records in zip(
        _commands(world["model"], world["footage"]), records["full"], records["runtime"], strict=True
    ):
        # The same graphs on the same ONNX Runtime, machine and thread count: the same numbers.
        assert runtime_records == full, args_written[0][:2]


def test_the_runtime_serves_a_prepared_model(runtime: list[str], world: dict[str, Path]) -> None:
    work = world["root"] / "serve"
    work.mkdir()
    port = _free_port()
    server = subprocess.Popen(
        [*runtime, "serve", "--model", str(world["model"]), "--root", str(world["footage"]), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(work / "cache"), preexec_fn=interruptible,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(url, server)
        clip = str(world["footage"] / "red" / "a.mp4")
        asked = ["classify", clip, "--labels", LABELS, "-f", "json"]
        served = _run(runtime, [*asked, "--server", url], work, work / "cache")
        local = _run(FULL, [*asked, "--model", str(world["model"])], work, work / "cache")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert _json(served.stdout) == _json(local.stdout)


def test_what_needs_torch_says_what_to_install(runtime: list[str], world: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "checkpoint")
    clip = str(world["footage"] / "red" / "a.mp4")
    cases = [
        (["classify", clip, "--model", str(checkpoint), "--labels", LABELS], 9, "pip install 'xclip-cli[torch]'"),
        (["models", "prepare", "--model", str(checkpoint)], 9, "pip install 'xclip-cli[torch]'"),
        (["classify", clip, "--model", str(world["model"]), "--labels", LABELS, "--backend", "torch"], 2,
         "a prepared folder runs on ONNX Runtime"),
    ]  # fmt: skip
    for args, code, says in cases:
        done = subprocess.run([*runtime, *args], capture_output=True, text=True, env=_env(tmp_path / "cache"))
        assert done.returncode == code and says in done.stderr, (args, done.returncode, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


def _json(text: str) -> object:
    return _without_volatile(json.loads(text))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [_without_volatile(row) for row in csv.DictReader(handle)]


def _without_volatile(value: object) -> object:
    """Records without what differs between two runs of one command: wall-clock times."""
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in ("elapsed", "seconds", "created")}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(url: str, server: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")

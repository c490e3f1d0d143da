"""`xclip serve` on a free loopback port, driven with real HTTP requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import invoke

from xclip_cli.errors import ExitCode
from xclip_cli.runner import XClipRunner
from xclip_cli.server import ClassifyService, make_server

LABELS = "cooking, dancing, surfing"


@pytest.fixture(scope="module")
def root(clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's allowed root: copies of the shared clips (the tests add a symlink here)."""
    folder = tmp_path_factory.mktemp("served")
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes((clip_dir / name).read_bytes())
    return folder


LOG: list[str] = []  # the server's one line per request


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, root: Path) -> Iterator[str]:
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    http = make_server(ClassifyService(runner, [root], max_upload=200_000, log=LOG.append), "127.0.0.1", 0)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()
    http.server_close()


def call(url: str, body: bytes | None = None, content_type: str = "application/json") -> tuple[int, object]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def local(tiny_model_dir: Path, *args: str) -> str:
    result = invoke(["classify", *args, "--model", str(tiny_model_dir), "--labels", LABELS, "-f", "json"])
    assert result.exit_code == ExitCode.OK, result.stderr
    return result.stdout


def test_health_and_model(server: str, tiny_model_dir: Path) -> None:
    assert call(server + "/health") == (200, {"status": "ok"})
    status, info = call(server + "/model")
    assert status == 200 and info["model"] == str(tiny_model_dir) and info["num_frames"] == 8  # type: ignore[index]
    assert call(server + "/nothing")[0] == 404


def test_a_path_gives_what_classify_json_prints(server: str, tiny_model_dir: Path, root: Path) -> None:
    path = str(root / "a.mp4")
    status, records = call(server + "/classify", json.dumps({"path": path, "labels": LABELS}).encode())
    assert status == 200
    assert records == json.loads(local(tiny_model_dir, path))


def test_an_upload_gives_the_same_numbers(server: str, tiny_model_dir: Path, clip_dir: Path) -> None:
    data = (clip_dir / "b.mp4").read_bytes()
    status, records = call(server + "/classify?labels=cooking,dancing,surfing&name=b.mp4", data, "video/mp4")
    assert status == 200
    (expected,) = json.loads(local(tiny_model_dir, str(clip_dir / "b.mp4")))
    (got,) = records  # type: ignore[misc]
    assert got["path"] == "b.mp4" and got["predictions"] == expected["predictions"]


def test_bad_requests(server: str, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.mp4"
    outside.write_bytes((root / "a.mp4").read_bytes())
    sneaky = root / "link-out.mp4"
    if not sneaky.exists():
        os.symlink(outside, sneaky)
    cases = [
        ({"path": str(outside)}, 403, "outside the server's allowed roots"),
        ({"path": str(root / ".." / outside.parent.name / "outside.mp4")}, 403, "outside"),
        ({"path": str(sneaky)}, 403, "outside"),  # a symlink inside a root pointing out of it
        ({"path": str(root / "a.mp4"), "labels": "/etc/passwd"}, 400, "reads no label files"),
        ({"path": str(root / "a.mp4"), "top_k": 0}, 400, "--top-k 0"),
        ({"nothing": 1}, 400, "expected"),
    ]
    for body, code, message in cases:
        status, answer = call(server + "/classify", json.dumps(body).encode())
        assert status == code and message in answer["error"], (body, answer)  # type: ignore[index]
    assert call(server + "/classify", b"{not json")[0] == 400
    too_big = call(server + "/classify?labels=a,b", b"\0" * 200_001, "video/mp4")
    assert too_big[0] == 413 and "exceeds" in too_big[1]["error"]  # type: ignore[index]
    status, records = call(server + "/classify", json.dumps({"path": str(root / "missing.mp4")}).encode())
    assert status == 200 and records[0]["status"] == "error"  # type: ignore[index]


def test_cli_through_the_server_prints_what_a_local_run_prints(
    server: str, tiny_model_dir: Path, root: Path, tmp_path: Path
) -> None:
    paths = [str(root / "a.mp4"), str(root / "b.mp4")]
    remote = invoke(["classify", *paths, "--labels", LABELS, "-f", "json", "--server", server])
    assert remote.exit_code == ExitCode.OK, remote.stderr
    assert remote.stdout == local(tiny_model_dir, *paths)
    (tmp_path / "my.yaml").write_text("labels: [cooking, dancing]\n", encoding="utf-8")
    refused = invoke(["classify", *paths, "--labels", str(tmp_path / "my.yaml"), "--server", server])
    assert refused.exit_code == ExitCode.USAGE and "reads no label files" in refused.stderr
    down = invoke(["classify", paths[0], "--server", "http://127.0.0.1:9"])
    assert down.exit_code == ExitCode.USAGE and "cannot reach the xclip server" in down.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--model", "OTHER"], {}, "serves TINY, not OTHER: drop --model (and XCLIP_MODEL) to use it"),
        (
            [],
            {"XCLIP_MODEL": "microsoft/xclip-base-patch16"},
            "serves TINY, not microsoft/xclip-base-patch16: drop --model (and XCLIP_MODEL) to use it",
        ),
        (["--precision", "bf16"], {}, "runs at --precision fp32, not bf16"),
        (["--device", "cuda"], {}, "runs on cpu, not cuda"),
    ],
    ids=["model", "model-from-env", "precision", "device"],
)
def test_what_the_server_fixes_is_refused_when_asked_otherwise(
    server: str,
    tiny_model_dir: Path,
    other_model_dir: Path,
    root: Path,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    args = [str(other_model_dir) if arg == "OTHER" else arg for arg in args]
    result = invoke(["classify", str(root / "a.mp4"), "--server", server, "-l", LABELS, *args], env=env)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    expected = message.replace("TINY", str(tiny_model_dir)).replace("OTHER", str(other_model_dir))
    assert result.stderr == f"xclip: error: {server} {expected}\n" and result.stdout == ""


def test_the_servers_own_model_named_explicitly_is_fine(server: str, tiny_model_dir: Path, root: Path) -> None:
    result = invoke(["classify", str(root / "a.mp4"), "--server", server, "-l", LABELS, "-m", str(tiny_model_dir)])
    assert result.exit_code == ExitCode.OK, result.stderr


def test_sampling_options_reach_the_server(server: str, tiny_model_dir: Path, root: Path) -> None:
    path = str(root / "a.mp4")
    options = ["--clips", "2", "--crops", "3", "--start", "0.2", "--end", "1.0", "-k", "2"]
    remote = invoke(["classify", path, "-l", LABELS, "-f", "json", "--server", server, *options])
    assert remote.exit_code == ExitCode.OK, remote.stderr
    (record,) = json.loads(remote.stdout)
    assert record["views"] == 6 and len(record["predictions"]) == 2
    assert remote.stdout == local(tiny_model_dir, path, *options)
    keyed = invoke(["classify", path, "-l", LABELS, "-f", "json", "--server", server, "--sampling", "keyframes"])
    assert keyed.exit_code == ExitCode.OK, keyed.stderr
    assert json.loads(keyed.stdout)[0]["sampling"] == "keyframes"
    assert keyed.stdout == local(tiny_model_dir, path, "--sampling", "keyframes")


def test_a_file_outside_the_roots_is_uploaded(server: str, tiny_model_dir: Path, clip_dir: Path) -> None:
    path = str(clip_dir / "b.mp4")  # not under the server's root
    remote = invoke(["classify", path, "-l", LABELS, "-f", "json", "--server", server])
    assert remote.exit_code == ExitCode.OK, remote.stderr
    assert remote.stdout == local(tiny_model_dir, path)


def test_the_server_logs_one_line_per_request(server: str, root: Path) -> None:
    LOG.clear()
    call(server + "/health")
    call(server + "/classify", json.dumps({"path": str(root / "a.mp4"), "labels": LABELS}).encode())
    call(server + "/classify", json.dumps({"path": "/etc/passwd"}).encode())
    assert len(LOG) == 3
    assert LOG[0].startswith("127.0.0.1 GET /health 200 ") and LOG[1].startswith("127.0.0.1 POST /classify 200 ")
    assert LOG[2].startswith("127.0.0.1 POST /classify 403 ") and LOG[2].endswith(" s")


def test_a_refused_label_file_leaves_the_output_untouched(server: str, root: Path, tmp_path: Path) -> None:
    (tmp_path / "my.yaml").write_text("labels: [cooking, dancing]\n", encoding="utf-8")
    out = tmp_path / "keep.csv"
    out.write_text("earlier results\n", encoding="utf-8")
    args = ["classify", str(root / "a.mp4"), "--server", server, "-l", str(tmp_path / "my.yaml"), "-o", str(out)]
    refused = invoke(args)
    assert refused.exit_code == ExitCode.USAGE and "reads no label files" in refused.stderr
    assert out.read_text(encoding="utf-8") == "earlier results\n" and refused.stdout == ""


def test_serve_says_when_it_stops_on_sigterm(tiny_model_dir: Path, root: Path) -> None:
    command = [sys.executable, "-m", "xclip_cli", "serve", "--model", str(tiny_model_dir), "--port", "0"]
    process = subprocess.Popen([*command, "--root", str(root)], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    first = process.stderr.readline()
    assert first.startswith(f"xclip: serving {tiny_model_dir} on http://127.0.0.1:"), first
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == ExitCode.INTERRUPTED
    assert process.stderr.read().startswith("xclip: stopped serving on http://127.0.0.1:")

"""`xclip serve` on a free loopback port, driven with real HTTP requests."""

from __future__ import annotations

import contextlib
import http.client
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
from typing import Any

import pytest
from helpers import LABELS_SHORT_TEXT, invoke

from xclip_cli.errors import EngineError, ExitCode, UsageError
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.run.client import MAX_TRIES, Server, classify_remote, server_info
from xclip_cli.run.protocol import is_loopback
from xclip_cli.run.server import ClassifyService, make_server


@pytest.fixture(scope="module")
def root(clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's allowed root: copies of the shared clips (the tests add a symlink here)."""
    folder = tmp_path_factory.mktemp("served")
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes((clip_dir / name).read_bytes())
    return folder


LOG: list[str] = []  # the server's one line per request


@pytest.fixture(scope="module")
def runner(tiny_model_dir: Path) -> XClipRunner:
    return XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")


@contextlib.contextmanager
def serving(service: ClassifyService) -> Iterator[str]:
    """``service`` on a free loopback port, in a thread; its URL."""
    http = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}"
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture(scope="module")
def server(runner: XClipRunner, root: Path) -> Iterator[str]:
    with serving(ClassifyService(runner, [root], max_upload=200_000, log=LOG.append)) as url:
        yield url


def call(
    url: str, body: bytes | None = None, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type} | (headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def local(tiny_model_dir: Path, *args: str) -> str:
    result = invoke(["classify", *args, "--model", str(tiny_model_dir), "--labels", LABELS_SHORT_TEXT, "-f", "json"])
    assert result.exit_code == ExitCode.OK, result.stderr
    return result.stdout


def test_health_and_model(server: str, tiny_model_dir: Path, root: Path) -> None:
    assert call(server + "/health") == (200, {"status": "ok"})
    status, info = call(server + "/model")
    assert status == 200 and info["model"] == str(tiny_model_dir) and info["num_frames"] == 8
    assert info["roots"] == [os.path.realpath(root)] and info["max_upload"] == 200_000  # what a client decides by
    assert call(server + "/nothing")[0] == 404


def test_a_path_gives_what_classify_json_prints(server: str, tiny_model_dir: Path, root: Path) -> None:
    path = str(root / "a.mp4")
    status, records = call(server + "/classify", json.dumps({"path": path, "labels": LABELS_SHORT_TEXT}).encode())
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
        ({"path": str(root / "a.mp4"), "labels": "cooking,"}, 400, "labels 'cooking,': only one label"),
        ({"nothing": 1}, 400, "expected"),
        ({"path": str(root / "a.mp4\0.txt")}, 400, "a path cannot contain a NUL byte"),
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
    remote = invoke(["classify", *paths, "--labels", LABELS_SHORT_TEXT, "-f", "json", "--server", server])
    assert remote.exit_code == ExitCode.OK, remote.stderr
    assert remote.stdout == local(tiny_model_dir, *paths)
    (tmp_path / "my.yaml").write_text("labels: [cooking, dancing]\n", encoding="utf-8")
    refused = invoke(["classify", *paths, "--labels", str(tmp_path / "my.yaml"), "--server", server])
    assert refused.exit_code == ExitCode.USAGE and "reads no label files" in refused.stderr
    down = invoke(["classify", paths[0], "--server", "http://127.0.0.1:9"])
    assert down.exit_code == ExitCode.ENGINE and down.stdout == ""
    assert down.stderr.startswith("xclip: error: cannot reach the xclip server at http://127.0.0.1:9 (")
    assert down.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--model", "OTHER"], {}, "serves TINY, not OTHER: drop --model (and XCLIP_MODEL) to use it"),
        (
            [],
            {"XCLIP_MODEL": "microsoft/xclip-base-patch16"},
            "serves TINY, not microsoft/xclip-base-patch16: drop --model (and XCLIP_MODEL) to use it",
        ),
        (["--precision", "bf16"], {}, "runs at --precision fp32, not bf16: drop --precision to use it"),
        (["--device", "cuda"], {}, "runs on cpu, not cuda: drop --device (and XCLIP_DEVICE) to use it"),
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
    result = invoke(["classify", str(root / "a.mp4"), "--server", server, "-l", LABELS_SHORT_TEXT, *args], env=env)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    expected = message.replace("TINY", str(tiny_model_dir)).replace("OTHER", str(other_model_dir))
    assert result.stderr == f"xclip: error: {server} {expected}\n" and result.stdout == ""


def test_the_servers_own_model_named_explicitly_is_fine(server: str, tiny_model_dir: Path, root: Path) -> None:
    result = invoke(
        ["classify", str(root / "a.mp4"), "--server", server, "-l", LABELS_SHORT_TEXT, "-m", str(tiny_model_dir)]
    )
    assert result.exit_code == ExitCode.OK, result.stderr


def test_sampling_options_reach_the_server(server: str, tiny_model_dir: Path, root: Path) -> None:
    path = str(root / "a.mp4")
    options = ["--clips", "2", "--crops", "3", "--start", "0.2", "--end", "1.0", "-k", "2"]
    remote = invoke(["classify", path, "-l", LABELS_SHORT_TEXT, "-f", "json", "--server", server, *options])
    assert remote.exit_code == ExitCode.OK, remote.stderr
    (record,) = json.loads(remote.stdout)
    assert record["views"] == 6 and len(record["predictions"]) == 2
    assert remote.stdout == local(tiny_model_dir, path, *options)
    keyed = invoke(
        ["classify", path, "-l", LABELS_SHORT_TEXT, "-f", "json", "--server", server, "--sampling", "keyframes"]
    )
    assert keyed.exit_code == ExitCode.OK, keyed.stderr
    assert json.loads(keyed.stdout)[0]["sampling"] == "keyframes"
    assert keyed.stdout == local(tiny_model_dir, path, "--sampling", "keyframes")


def test_a_file_outside_the_roots_is_uploaded(server: str, tiny_model_dir: Path, clip_dir: Path, root: Path) -> None:
    path = str(clip_dir / "b.mp4")  # not under the server's root
    LOG.clear()
    remote = invoke(["classify", path, str(root / "a.mp4"), "-l", LABELS_SHORT_TEXT, "-f", "json", "--server", server])
    assert remote.exit_code == ExitCode.OK, remote.stderr
    assert remote.stdout == local(tiny_model_dir, path, str(root / "a.mp4"))
    # GET /model says what the server reads itself: one request per video, never a 403 first
    requests = [(method, target.split("&")[0:2], status) for _, method, target, status, *_ in map(str.split, LOG)]
    assert requests == [
        ("GET", ["/model"], "200"),
        ("POST", ["/classify?labels=cooking%2C+dancing%2C+surfing", "name=b.mp4"], "200"),  # uploaded
        ("POST", ["/classify"], "200"),  # named by its path
    ]


def test_a_file_the_server_can_neither_read_nor_take_is_refused_before_anything_is_sent(
    server: str, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "big.mp4").write_bytes(bytes(200_001))  # over the server's upload limit
    out = tmp_path / "keep.json"
    out.write_text("[]\n", encoding="utf-8")  # earlier output of the tool: -o may replace it
    real = os.path.realpath(root)
    for name, problem in [
        ("big.mp4", "its 200001 bytes exceed its upload limit of 200000 (--max-upload-mb)"),
        ("missing.mp4", "not a file here to upload"),
    ]:
        LOG.clear()
        args = [str(root / "a.mp4"), str(tmp_path / name), "-l", LABELS_SHORT_TEXT, "--server", server, "-o", str(out)]
        refused = invoke(["classify", *args])
        assert refused.exit_code == ExitCode.USAGE
        assert refused.stderr == (
            f"xclip: error: {tmp_path / name}: outside the server's --root folders ({real}), and {problem}\n"
        )
        assert [line.split()[1:3] for line in LOG] == [["GET", "/model"]]  # no video was sent
        assert out.read_text(encoding="utf-8") == "[]\n"


def test_the_server_logs_one_line_per_request(server: str, root: Path) -> None:
    LOG.clear()
    call(server + "/health")
    call(server + "/classify", json.dumps({"path": str(root / "a.mp4"), "labels": LABELS_SHORT_TEXT}).encode())
    call(server + "/classify", json.dumps({"path": "/etc/passwd"}).encode())
    assert len(LOG) == 3
    assert LOG[0].startswith("127.0.0.1 GET /health 200 ") and LOG[1].startswith("127.0.0.1 POST /classify 200 ")
    assert LOG[2].startswith("127.0.0.1 POST /classify 403 ") and LOG[2].endswith(" s")


def test_a_refused_label_file_leaves_the_output_untouched(server: str, root: Path, tmp_path: Path) -> None:
    (tmp_path / "my.yaml").write_text("labels: [cooking, dancing]\n", encoding="utf-8")
    out = tmp_path / "keep.csv"
    out.write_text("path,status\n", encoding="utf-8")  # earlier output of the tool: -o may replace it
    args = ["classify", str(root / "a.mp4"), "--server", server, "-l", str(tmp_path / "my.yaml"), "-o", str(out)]
    refused = invoke(args)
    assert refused.exit_code == ExitCode.USAGE and "reads no label files" in refused.stderr
    assert out.read_text(encoding="utf-8") == "path,status\n" and refused.stdout == ""


@pytest.mark.parametrize(
    ("host", "env"), [("127.0.0.1", {}), ("0.0.0.0", {"XCLIP_TOKEN": "from-the-environment"})], ids=["loopback", "all"]
)
@pytest.mark.heavy
def test_serve_says_when_it_stops_on_sigterm(tiny_model_dir: Path, root: Path, host: str, env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "xclip_cli", "serve", "--model", str(tiny_model_dir), "--port", "0"]
    command += ["--root", str(root), "--host", host]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=os.environ | env)
    assert process.stderr is not None
    first = process.stderr.readline()
    assert first.startswith(f"xclip: serving {tiny_model_dir} on http://{host}:"), first
    if env:  # the token from XCLIP_TOKEN is required, and never shown
        assert first.endswith("; token required)\n") and env["XCLIP_TOKEN"] not in first
        port = first.split(f"http://{host}:")[1].split()[0]
        assert call(f"http://127.0.0.1:{port}/health")[0] == 401
        right = {"Authorization": f"Bearer {env['XCLIP_TOKEN']}"}
        assert call(f"http://127.0.0.1:{port}/health", headers=right) == (200, {"status": "ok"})
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == ExitCode.INTERRUPTED
    rest = process.stderr.read().splitlines()
    assert rest[-1].startswith(f"xclip: stopped serving on http://{host}:")
    assert [line.split()[3:5] for line in rest[:-1]] == ([["/health", "401"], ["/health", "200"]] if env else [])
    assert not any("from-the-environment" in line for line in rest)


# --- a token, and a bound on what may wait --------------------------------------------------

TOKEN = "s3cret-Token_42"
TOKEN_LOG: list[str] = []


@pytest.fixture(scope="module")
def guarded(runner: XClipRunner, root: Path) -> Iterator[str]:
    """A server that requires TOKEN (optional on loopback, and enforced once given)."""
    with serving(ClassifyService(runner, [root], max_upload=200_000, log=TOKEN_LOG.append, token=TOKEN)) as url:
        yield url


def test_a_token_is_required_once_given(guarded: str, root: Path) -> None:
    TOKEN_LOG.clear()
    body = json.dumps({"path": str(root / "a.mp4"), "labels": LABELS_SHORT_TEXT}).encode()
    for headers, message in [
        ({}, "this server requires a token (Authorization: Bearer TOKEN)"),
        ({"Authorization": "Bearer wrong"}, "wrong token"),
        ({"Authorization": f"Basic {TOKEN}"}, "wrong token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "wrong token"),
    ]:
        assert call(guarded + "/model", headers=headers) == (401, {"error": message})
        assert call(guarded + "/classify", body, headers=headers) == (401, {"error": message})
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert call(guarded + "/health", headers=right) == (200, {"status": "ok"})
    status, records = call(guarded + "/classify", body, headers=right)
    assert status == 200 and records[0]["status"] == "ok"
    request = urllib.request.Request(guarded + "/health")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 401 and refused.value.headers["WWW-Authenticate"] == "Bearer"
    assert len(TOKEN_LOG) == 11 and not any(TOKEN in line for line in TOKEN_LOG)  # one line each, no token


def test_classify_sends_the_token_from_the_option_or_the_environment(guarded: str, root: Path) -> None:
    args = ["classify", str(root / "a.mp4"), "-l", LABELS_SHORT_TEXT, "-f", "json", "--server", guarded]
    missing = invoke(args)
    assert missing.exit_code == ExitCode.USAGE and missing.stdout == ""
    assert missing.stderr == (
        f"xclip: error: {guarded} requires a token: give the one it was started with (--token or XCLIP_TOKEN)\n"
    )
    wrong = invoke([*args, "--token", "wrong"])
    assert wrong.exit_code == ExitCode.USAGE and wrong.stderr == (
        f"xclip: error: {guarded} refused the token (wrong token): "
        "give the one it was started with (--token or XCLIP_TOKEN)\n"
    )
    assert invoke(args, env={"XCLIP_TOKEN": TOKEN}).exit_code == ExitCode.OK
    assert invoke([*args, "--token", TOKEN], env={"XCLIP_TOKEN": "stale"}).exit_code == ExitCode.OK  # flag > env
    assert invoke([*args, "--token", "stale"], env={"XCLIP_TOKEN": TOKEN}).exit_code == ExitCode.USAGE
    spaced = invoke([*args, "--token", "two words"])
    assert spaced.exit_code == ExitCode.USAGE and "use printable ASCII without spaces" in spaced.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("192.168.1.20", False),
        ("myhost.example", False),
    ],
)
def test_which_hosts_are_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "myhost.example", "::"])
def test_serve_beyond_loopback_refuses_to_start_without_a_token(host: str, tmp_path: Path) -> None:
    # a model that does not exist: the refusal comes first, before anything loads
    result = invoke(["serve", "--host", host, "--model", str(tmp_path / "no-model"), "--port", "0"])
    assert result.exit_code == ExitCode.USAGE and result.stdout == ""
    assert result.stderr == (
        f"xclip: error: --host {host} is reachable from other machines: give a shared token with --token or "
        "XCLIP_TOKEN (e.g. from python -c 'import secrets; print(secrets.token_urlsafe())'); clients send the same\n"
    )
    empty = invoke(["serve", "--host", host, "--model", str(tmp_path / "no-model")], env={"XCLIP_TOKEN": ""})
    assert empty.exit_code == ExitCode.USAGE and "reachable from other machines" in empty.stderr


def test_make_server_refuses_a_host_beyond_loopback_without_a_token(runner: XClipRunner, root: Path) -> None:
    with pytest.raises(UsageError, match="reachable from other machines"):
        make_server(ClassifyService(runner, [root], max_upload=1), "0.0.0.0", 0)
    try:  # IPv6 loopback: no token needed, and it listens (it used to fail: an IPv4 socket for ::1)
        http = make_server(ClassifyService(runner, [root], max_upload=1), "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    http.server_close()


class Gated(ClassifyService):
    """A service whose classify calls wait at a gate: requests hold their slots until the test opens it."""

    def hold(self, requests: int) -> None:
        self.arrived = threading.Barrier(requests + 1)  # the held requests and the test
        self.gate = threading.Event()

    def classify(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if not self.gate.is_set():
            self.arrived.wait(timeout=60)
            assert self.gate.wait(timeout=60)
        return super().classify(*args, **kwargs)


class Held:
    """``service.max_queue`` requests inside the server, each holding a slot until ``release``."""

    def __init__(self, service: Gated, url: str, body: bytes) -> None:
        self.service = service
        self.answers: list[tuple[int, Any]] = []
        service.hold(service.max_queue)
        self.threads = [
            threading.Thread(target=lambda: self.answers.append(call(url + "/classify", body)))
            for _ in range(service.max_queue)
        ]
        for thread in self.threads:
            thread.start()
        service.arrived.wait(timeout=60)  # every slot is taken

    def release(self) -> list[int]:
        """Let the held requests finish; their statuses (each one answered: its slot is free again)."""
        self.service.gate.set()
        for thread in self.threads:
            thread.join(timeout=60)
        return [status for status, _ in self.answers]


def test_beyond_max_queue_a_request_gets_503_with_retry_after_and_its_body_unread(
    runner: XClipRunner, root: Path
) -> None:
    service = Gated(runner, [root], max_upload=10**10, max_queue=3)
    body = json.dumps({"path": str(root / "a.mp4"), "labels": LABELS_SHORT_TEXT}).encode()
    with serving(service) as url:
        held = Held(service, url, body)
        # a gigabyte announced and never sent: were it read, this would wait for it
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=60)
        connection.putrequest("POST", "/classify?labels=a,b&name=big.mp4")
        connection.putheader("Content-Type", "video/mp4")
        connection.putheader("Content-Length", str(10**9))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 503 and response.getheader("Retry-After") == "1"
        busy = "busy: the queue is full (at most 3 requests running or waiting); retry later"
        assert json.loads(response.read()) == {"error": busy}
        connection.close()
        assert call(url + "/health") == (200, {"status": "ok"})  # only classify requests are bounded
        assert held.release() == [200, 200, 200]  # those waiting were all answered
        assert call(url + "/classify", body)[0] == 200  # and their slots are free again


def test_the_client_tries_again_after_retry_after(runner: XClipRunner, root: Path, tmp_path: Path) -> None:
    service = Gated(runner, [root], max_upload=10**9, max_queue=1)
    body = json.dumps({"path": str(root / "a.mp4"), "labels": LABELS_SHORT_TEXT}).encode()
    big = tmp_path / "big.mp4"  # outside the root: uploaded, and more than the sockets buffer
    big.write_bytes(bytes(16 * 1024 * 1024))
    waits: list[float] = []
    with serving(service) as url:
        held = Held(service, url, body)
        remote = Server(url, sleep=waits.append)
        with pytest.raises(EngineError) as busy:
            list(classify_remote(remote, server_info(remote), [str(big)], LABELS_SHORT_TEXT))
        assert str(busy.value) == (
            f"{url} is still busy after {MAX_TRIES} tries (busy: the queue is full (at most 1 requests running "
            "or waiting); retry later): try later, or start it with a larger --max-queue"
        )  # the 503 itself, although the upload was cut short: never "cannot reach"
        assert waits == [1.0] * (MAX_TRIES - 1)
        assert held.release() == [200]

        waits.clear()
        held = Held(service, url, body)

        def wait_then_free(seconds: float) -> None:  # the held request ends while the client waits
            waits.append(seconds)
            held.release()

        remote = Server(url, sleep=wait_then_free)
        (result,) = classify_remote(remote, server_info(remote), [str(root / "a.mp4")], LABELS_SHORT_TEXT)
        assert result.ok and waits == [1.0]


def test_server_urls_other_than_http_are_refused() -> None:
    for url in ("127.0.0.1:8765", "ftp://host/", "localhost"):
        with pytest.raises(UsageError, match="not an http:// or https:// URL"):
            Server(url)

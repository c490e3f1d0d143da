"""`xclip scan --engine ray`: on a local Ray instance (2 CPUs), the same rows as the local engine.

Ray starts twice in this module (about 5 s each): once inside a real `xclip` process, once in a
module fixture that the library and CliRunner tests share.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray  # a dev extra: these tests never skip, so CI proves the engine
from helpers import LABELS_JUGGLING_TEXT, invoke, write_video

import xclip_cli
from xclip_cli.errors import ExitCode
from xclip_cli.jobs.classify import classify_videos
from xclip_cli.labels import inline_labelset
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import CSV_COLUMNS, VideoResult
from xclip_cli.run.ray import RayOptions, classify_videos_on_ray

PROBABILITY_TOLERANCE = 1e-5  # a model actor runs torch on one thread, the local engine on two
LOGIT_TOLERANCE = 1e-4

# Clusters, fresh processes and ONNX exports: seconds each (make test-heavy, run by .ci/run).
pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path) -> Path:
    """Good clips of different sizes and lengths, and broken files the local engine reports as errors."""
    folder = tmp_path_factory.mktemp("ray-footage")
    (folder / "day 2").mkdir()
    good = (clip_dir / "a.mp4").read_bytes()
    (folder / "a.mp4").write_bytes(good)
    (folder / "day 2" / "b.mp4").write_bytes((clip_dir / "b.mp4").read_bytes())
    write_video(folder / "long.mkv", num_frames=90, size=(80, 60), rate=30)
    write_video(folder / "c\N{LATIN SMALL LETTER E WITH ACUTE}.mov", num_frames=40, size=(50, 70), pattern="flat")
    (folder / "page.mp4").write_text("<html>Bad Gateway</html>")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "cut.mp4").write_bytes(good[: len(good) // 3])
    return folder


def csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == list(CSV_COLUMNS)
        rows = list(reader)
    by_path = {row["path"]: row for row in rows}
    assert len(by_path) == len(rows), "a path was written twice"
    return by_path


def assert_same_rows(ray_rows: dict[str, dict[str, str]], local_rows: dict[str, dict[str, str]]) -> None:
    assert ray_rows.keys() == local_rows.keys()
    for path, expected in local_rows.items():
        got = ray_rows[path]
        close = [column for column in CSV_COLUMNS if column.endswith("_probability") or column == "top_k"]
        exact = [column for column in CSV_COLUMNS if column not in close]
        assert {c: got[c] for c in exact} == {c: expected[c] for c in exact}, path
        if expected["status"] == "ok":
            filled = [column for column in close[:-1] if expected[column]]
            assert [float(got[c]) for c in filled] == pytest.approx(
                [float(expected[c]) for c in filled], abs=PROBABILITY_TOLERANCE
            )
            got_top, expected_top = json.loads(got["top_k"]), json.loads(expected["top_k"])
            assert [label for label, _ in got_top] == [label for label, _ in expected_top], path
            assert [p for _, p in got_top] == pytest.approx([p for _, p in expected_top], abs=PROBABILITY_TOLERANCE)


def assert_same_results(
    ray_results: list[VideoResult], local_results: list[VideoResult], tolerance: float = PROBABILITY_TOLERANCE
) -> None:
    assert sorted(r.path for r in ray_results) == sorted(r.path for r in local_results)
    by_path = {result.path: result for result in ray_results}
    for expected in local_results:
        got = by_path[expected.path]
        assert (got.error, got.timestamps, got.duration, got.width, got.height, got.views, got.warnings) == (
            expected.error,
            expected.timestamps,
            expected.duration,
            expected.width,
            expected.height,
            expected.views,
            expected.warnings,
        )
        assert [p.label for p in got.predictions] == [p.label for p in expected.predictions]
        for mine, theirs in zip(got.predictions, expected.predictions, strict=True):
            assert mine.probability == pytest.approx(theirs.probability, abs=tolerance)
            assert mine.logit == pytest.approx(theirs.logit, abs=max(tolerance * 10, LOGIT_TOLERANCE))


def local_scan(model: Path, footage: Path, out: Path, *extra: str) -> None:
    result = invoke(["scan", str(footage), "--model", str(model), "-l", LABELS_JUGGLING_TEXT, "-o", str(out), *extra])
    assert result.exit_code == ExitCode.PARTIAL, result.stderr


def test_the_cli_on_ray_writes_the_local_engines_rows(tiny_model_dir: Path, footage: Path, tmp_path: Path) -> None:
    """A real `xclip scan --engine ray` process, starting its own Ray: same rows, exit code, clean stdout."""
    local_out, ray_out = tmp_path / "local.csv", tmp_path / "ray.csv"
    local_scan(tiny_model_dir, footage, local_out)
    command = [
        sys.executable,
        "-m",
        "xclip_cli",
        "scan",
        str(footage),
        "--engine",
        "ray",
        "--model",
        str(tiny_model_dir),
    ]
    command += ["-l", LABELS_JUGGLING_TEXT, "-o", str(ray_out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == ExitCode.PARTIAL, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert "xclip: 4 ok, 3 failed" in done.stderr
    assert_same_rows(csv_rows(ray_out), csv_rows(local_out))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance with 2 CPUs for the rest of this module; the engine joins it."""
    # "local": a new instance even while a cluster of test_ray_cluster.py runs (in another test
    # process): without an address, ray.init joins the newest cluster it finds on the machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_library_results_equal_local_ones_with_views_and_batches(
    local_ray: None, tiny_model_dir: Path, footage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = sorted(str(path) for path in footage.rglob("*.*"))
    labelset = inline_labelset(LABELS_JUGGLING_TEXT)
    options = ClassifyOptions(top_k=3, clips=2, crops=3, batch_size=2)
    model = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    local = list(classify_videos(model, paths, labelset, options))
    ray_options = RayOptions(verbose=True, backend="torch")
    on_ray = list(classify_videos_on_ray(str(tiny_model_dir), paths, labelset, options, ray_options))
    assert_same_results(on_ray, local)
    assert sum(result.ok for result in on_ray) == 4 and {result.views for result in on_ray if result.ok} == {6}
    assert ray.is_initialized()  # the engine joined the running instance and left it running
    # Ray Data fuses compatible stages; fused, each actor would decode and leave its model idle.
    optimized = capsys.readouterr().err.split("Physical Plan (Optimized)")[1]  # --verbose shows the plan
    assert "ActorPoolMapOperator[MapBatches(_ScoreVideos)]" in optimized
    assert "TaskPoolMapOperator[Map(_DecodeVideo)]" in optimized


def test_onnx_actors_give_the_local_results(
    local_ray: None, tiny_model_dir: Path, footage: Path, onnx_ready: Path
) -> None:
    """auto on CPU actors: ONNX Runtime, from the driver's prepared graphs (this node's cache)."""
    paths = sorted(str(path) for path in footage.rglob("*.*"))
    labelset, options = inline_labelset(LABELS_JUGGLING_TEXT), ClassifyOptions(top_k=3, clips=2)
    local = list(
        classify_videos(XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu"), paths, labelset, options)
    )
    on_ray = list(classify_videos_on_ray(str(tiny_model_dir), paths, labelset, options, RayOptions()))
    assert_same_results(on_ray, local, tolerance=1e-4)  # ONNX Runtime's kernels against torch's
    assert {result.precision for result in on_ray} == {"fp32"}


def test_a_rerun_on_ray_resumes(local_ray: None, tiny_model_dir: Path, footage: Path, tmp_path: Path) -> None:
    local_out, ray_out = tmp_path / "local.csv", tmp_path / "ray.csv"
    local_scan(tiny_model_dir, footage, local_out)
    lines = local_out.read_text(encoding="utf-8").splitlines(keepends=True)
    ray_out.write_text("".join(lines[:3]) + lines[3][:10], encoding="utf-8")  # 2 rows, then killed mid-row
    args = [
        "scan",
        str(footage),
        "--engine",
        "ray",
        "--model",
        str(tiny_model_dir),
        "-l",
        LABELS_JUGGLING_TEXT,
        "-o",
        str(ray_out),
    ]
    result = invoke(args)
    assert result.exit_code == ExitCode.PARTIAL, result.stderr
    assert "2 already done" in result.stderr
    assert ray_out.read_text(encoding="utf-8").startswith("".join(lines[:3]))  # kept, not redone
    assert_same_rows(csv_rows(ray_out), csv_rows(local_out))
    again = invoke(args)
    assert again.exit_code == ExitCode.PARTIAL and "nothing to do" in again.stderr  # the error rows remain


def test_a_worker_side_error_is_one_line_and_stdout_stays_data(tiny_model_dir: Path, footage: Path) -> None:
    """The model actors fail to start (no CUDA here): that one-line error, and Ray's own report of
    the dead actor (which it prints to stdout) kept off the results on stdout."""
    command = [sys.executable, "-m", "xclip_cli", "scan", str(footage), "--engine", "ray", "--device", "cuda"]
    done = subprocess.run(
        [*command, "--model", str(tiny_model_dir), "-l", LABELS_JUGGLING_TEXT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert done.stdout in ("", ",".join(CSV_COLUMNS) + "\n")  # at most the header of an empty CSV
    assert [line for line in done.stderr.splitlines() if line.startswith("xclip:")] == [
        "xclip: error: --device cuda: CUDA is not available on this machine (try --device cpu)"
    ]


def test_paths_relative_to_the_drivers_folder_reach_the_workers(
    local_ray: None, tiny_model_dir: Path, footage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's workers started in another folder (as on any other node): relative paths still work,
    and results keep the paths and model as given."""
    monkeypatch.chdir(footage)
    model = os.path.relpath(tiny_model_dir, footage)
    paths, labelset = ["a.mp4", "day 2/b.mp4", "nope.mp4"], inline_labelset(LABELS_JUGGLING_TEXT)
    results = list(classify_videos_on_ray(model, paths, labelset, ray_options=RayOptions(backend="torch")))
    by_path = {result.path: result for result in results}
    assert by_path.keys() == {"a.mp4", "day 2/b.mp4", "nope.mp4"}
    assert by_path["a.mp4"].ok and by_path["day 2/b.mp4"].ok and by_path["nope.mp4"].error == "no such file"
    assert {result.model for result in results} == {model}


def test_an_address_that_does_not_answer_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray itself retries for minutes; the scan says so in one line, before loading any model
    and without ever asking Ray to connect (no clock in the test: ``ray.init`` must not run)."""

    def no_init(*args: object, **kwargs: object) -> None:
        pytest.fail("ray.init was called: Ray would retry the dead address for minutes")

    monkeypatch.setattr(ray, "init", no_init)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    args = ["scan", str(tmp_path), "--engine", "ray", "--ray-address", f"127.0.0.1:{port}", "--model", "/no/such"]
    (tmp_path / "a.mp4").write_bytes(b"")
    result = invoke([*args, "-l", LABELS_JUGGLING_TEXT, "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == ExitCode.ENGINE
    assert result.stderr.startswith(f"xclip: error: cannot reach the Ray cluster at 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_ray_options_need_the_ray_engine(tiny_model_dir: Path, footage: Path) -> None:
    for option in (["--ray-address", "auto"], ["--concurrency", "4"], ["--num-gpus", "1"], ["--decode-cpus", "0.5"]):
        result = invoke(["scan", str(footage), *option, "--model", str(tiny_model_dir), "-l", LABELS_JUGGLING_TEXT])
        assert result.exit_code == ExitCode.USAGE and f"{option[0]} needs --engine ray" in result.stderr


def test_without_ray_installed_the_engine_asks_for_the_extra(
    tiny_model_dir: Path, footage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    args = ["scan", str(footage), "--engine", "ray", "--model", str(tiny_model_dir), "-l", LABELS_JUGGLING_TEXT]
    result = invoke([*args, "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == ExitCode.MISSING
    assert "pip install 'xclip-cli[ray]'" in result.stderr
    assert not (tmp_path / "r.csv").exists()


def test_actors_that_leave_no_cpu_for_decoding_are_refused_on_a_local_instance() -> None:
    """Ray would otherwise wait forever for a CPU to decode on."""
    from xclip_cli.errors import UsageError
    from xclip_cli.run.ray_cluster import check_fits

    machine = {"CPU": 2.0, "memory": 8 * 2**30}
    check_fits(machine, RayOptions(concurrency=1))
    with pytest.raises(UsageError, match="leave none for decoding"):
        check_fits(machine, RayOptions(concurrency=2))
    with pytest.raises(UsageError, match="leave none for decoding"):
        check_fits(machine, RayOptions(cpus_per_actor=2))
    with pytest.raises(UsageError, match="0 GPUs"):
        check_fits(machine, RayOptions(num_gpus=1))
    with pytest.raises(UsageError, match="MiB of memory"):
        check_fits({"CPU": 2.0, "memory": 300 * 2**20}, RayOptions())
    check_fits({"CPU": 8.0, "GPU": 2.0, "memory": 8 * 2**30}, RayOptions(concurrency=2, num_gpus=1))


def test_the_benchmark_compares_the_engines(
    local_ray: None, tiny_model_dir: Path, clip_dir: Path, tmp_path: Path
) -> None:
    """benchmarks/bench_ray.py end to end on a tiny checkpoint (its numbers mean nothing here)."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import bench_ray

    paths = bench_ray.video_folder(clip_dir / "a.mp4", 3, tmp_path / "videos")
    labelset = inline_labelset(LABELS_JUGGLING_TEXT)
    local_run = bench_ray.run_local(tiny_model_dir, paths, labelset)
    ray_run = bench_ray.run_ray(tiny_model_dir, paths, labelset, RayOptions(backend="torch"))
    lines = bench_ray.report(local_run, [ray_run], ray_start=0.0)
    assert len(ray_run.results) == len(local_run.results) == 3
    assert "per video in the steady state; same top-1 for 3/3 videos" in lines[-1]
    rates = bench_ray.throughput(local_run, [ray_run])
    assert rates[1].startswith("local engine") and rates[2].rstrip().endswith(" s")  # what Ray adds per video


def test_an_actor_refuses_a_checkpoint_that_differs_from_the_drivers(
    local_ray: None, tiny_model_dir: Path, other_model_dir: Path
) -> None:
    """Another copy of the model on a worker node would give other numbers than the text features assume."""
    from xclip_cli.errors import ModelLoadError
    from xclip_cli.run.ray import _ModelSettings, _ScoreVideos

    driver = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    labelset = inline_labelset(LABELS_JUGGLING_TEXT)
    features = driver.label_text_features(labelset)
    settings = _ModelSettings(
        model_id=str(other_model_dir),
        source=str(other_model_dir),  # what the worker finds at that path
        num_frames=driver.num_frames,
        preprocess=driver.preprocess,
        fingerprints=(driver.fingerprint(), driver.vision_fingerprint()),
        device="cpu",
        precision="fp32",
        version=xclip_cli.__version__,
    )
    shared = [ray.put((labelset, features))]
    with pytest.raises(ModelLoadError, match="differs from the driver's copy"):
        _ScoreVideos(settings, ClassifyOptions(), shared, [])
    _ScoreVideos(dataclasses.replace(settings, source=str(tiny_model_dir)), ClassifyOptions(), shared, [])


def _decode_and_die(decoder: object, row: dict[str, bytes]) -> None:
    """In a forked child: decode as a decoding task would, dying hard inside the decoder."""
    from xclip_cli.run import ray as ray_engine

    ray_engine.sample_frames = lambda *args, **kwargs: os.kill(os.getpid(), 9)  # type: ignore[assignment]
    decoder(row)  # type: ignore[operator]


def test_a_video_that_kills_its_decoder_becomes_an_error_row(
    tiny_model_dir: Path, clip_dir: Path, tmp_path: Path
) -> None:
    """Ray retries a task whose process died without end; after DECODE_ATTEMPTS deaths the video is an error."""
    import multiprocessing
    import pickle

    from xclip_cli.run.ray import DECODE_ATTEMPTS, _DecodeVideo

    model = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    decoder = _DecodeVideo(model.num_frames, model.preprocess, ClassifyOptions(), tmp_path / "attempts")
    video = str(clip_dir / "a.mp4")
    row = {"path": os.fsencode("a.mp4"), "file": os.fsencode(video)}
    for _ in range(DECODE_ATTEMPTS):  # each death leaves its mark
        child = multiprocessing.get_context("fork").Process(target=_decode_and_die, args=(decoder, row))
        child.start()
        child.join(60)
        assert child.exitcode == -9
    outcome = pickle.loads(decoder(row)["video"])  # the next attempt does not decode again
    assert outcome.path == "a.mp4" and f"died {DECODE_ATTEMPTS} times" in outcome.reason
    fresh = _DecodeVideo(model.num_frames, model.preprocess, ClassifyOptions(), tmp_path / "other-scan")
    assert len(pickle.loads(fresh(row)["video"]).frames) == model.num_frames  # a finished attempt
    assert list((tmp_path / "other-scan").iterdir()) == []  # leaves no mark

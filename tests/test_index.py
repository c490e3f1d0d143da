"""`xclip embed`, `xclip search`, `xclip classify --index`: score stored features, decode nothing again."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import LABELS_SURFING_TEXT, invoke, write_video

from xclip_cli.errors import ExitCode
from xclip_cli.jobs.classify import classify_videos
from xclip_cli.jobs.embed import embed_videos
from xclip_cli.jobs.index import SHARD_VIDEOS, TABLE, Index, IndexWriter, score_index, search_index
from xclip_cli.labels import inline_labelset
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("footage")
    for index, (size, pattern) in enumerate([((64, 48), "moving"), ((48, 64), "flat"), ((80, 40), "moving")]):
        write_video(folder / f"clip{index}.mp4", num_frames=20 + 8 * index, size=size, pattern=pattern)
    (folder / "broken.mp4").write_text("not a video\n")
    return folder


def embed(model_dir: Path, footage: Path, out: Path, *extra: str) -> object:
    return invoke(["embed", str(footage), "-o", str(out), "--model", str(model_dir), "--quiet", *extra])


def test_classify_from_the_index_equals_classify_from_the_videos(
    tiny_model_dir: Path, footage: Path, tmp_path: Path
) -> None:
    result = embed(tiny_model_dir, footage, tmp_path / "index")
    assert result.exit_code == ExitCode.PARTIAL, result.stderr  # broken.mp4 is an error row
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    labelset = inline_labelset(LABELS_SURFING_TEXT)
    paths = sorted(str(path) for path in footage.iterdir())
    direct = {r.path: r for r in classify_videos(runner, paths, labelset, ClassifyOptions(top_k=4))}
    stored = {r.path: r for r in score_index(runner, Index(tmp_path / "index"), labelset, top_k=4)}
    assert set(stored) == set(direct)
    for path, expected in direct.items():
        got = stored[path]
        assert got.status == expected.status and got.error == expected.error
        assert [p.label for p in got.predictions] == [p.label for p in expected.predictions]
        for a, b in zip(got.predictions, expected.predictions, strict=True):
            assert a.probability == pytest.approx(b.probability, abs=1e-6)
            assert a.logit == pytest.approx(b.logit, abs=1e-5)
        assert got.duration == pytest.approx(expected.duration, abs=1e-3) if expected.ok else True
    # And through the CLI, with the index's own checkpoint picked up without --model.
    out = invoke(["classify", "--index", str(tmp_path / "index"), "--labels", LABELS_SURFING_TEXT, "-f", "jsonl"])
    assert out.exit_code == ExitCode.PARTIAL, out.stderr
    records = {r["path"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert records[paths[1]]["predictions"][0]["label"] == direct[paths[1]].predictions[0].label


def test_search_scores_are_what_classify_reports_for_that_text(
    tiny_model_dir: Path, footage: Path, tmp_path: Path
) -> None:
    embed(tiny_model_dir, footage, tmp_path / "index")
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    query = "a person skateboarding down a ramp"
    hits = search_index(runner, Index(tmp_path / "index"), query, top_k=10)
    videos = sorted(str(path) for path in footage.glob("clip*.mp4"))
    assert sorted(hit.path for hit in hits) == videos  # broken.mp4 has no features
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    single = inline_labelset(query + ",")  # the text as a one-label set: its logit is the score
    direct = {r.path: r.predictions[0].logit for r in classify_videos(runner, videos, single)}
    for path, score in ((hit.path, hit.score) for hit in hits):
        assert score == pytest.approx(direct[path], abs=1e-5)
    result = invoke(["search", str(tmp_path / "index"), query, "--top-k", "2", "-f", "json"])
    assert result.exit_code == ExitCode.OK, result.stderr
    document = json.loads(result.stdout)
    assert [hit["path"] for hit in document["hits"]] == [hit.path for hit in hits[:2]]
    table = invoke(["search", str(tmp_path / "index"), query])
    assert table.exit_code == ExitCode.OK and "rank" in table.stdout


def test_embedding_resumes_and_never_duplicates(tiny_model_dir: Path, footage: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    embed(tiny_model_dir, footage, out)
    again = embed(tiny_model_dir, footage, out)
    assert again.exit_code == ExitCode.OK  # every path is already in the index: nothing redone
    write_video(tmp_path / "more.mp4", num_frames=12)
    extra = invoke(["embed", str(tmp_path / "more.mp4"), "-o", str(out), "--model", str(tiny_model_dir)])
    assert extra.exit_code == ExitCode.OK, extra.stderr
    with open(out / TABLE, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and len({row["path"] for row in rows}) == 5
    assert sorted({row["shard"] for row in rows if row["shard"]}) == ["0", "1"]  # the rerun wrote a new shard
    assert np.load(out / "embeds-00001.npy").shape[0] == 1


def test_a_killed_run_leaves_no_row_without_its_data(tiny_model_dir: Path, footage: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    writer = IndexWriter(out, runner)
    paths = [str(path) for path in sorted(footage.glob("clip*.mp4"))]
    results = list(embed_videos(runner, paths, writer))
    assert all(result.ok for result in results) and len(writer.pending) == len(paths) < SHARD_VIDEOS
    # Killed before the shard was written: no rows yet, so a rerun redoes these videos.
    np.save(out / "embeds-00000.npy", np.zeros((1, 4), dtype=np.float32))  # a half-written shard
    del writer
    resumed = IndexWriter(out, runner)
    assert resumed.done == set() and not (out / "embeds-00000.npy").exists()
    list(embed_videos(runner, paths, resumed))
    resumed.close()
    assert {entry.path for entry in Index(out).entries} == set(paths)


def test_an_index_is_scored_only_with_its_own_checkpoint(
    tiny_model_dir: Path, other_model_dir: Path, footage: Path, tmp_path: Path
) -> None:
    embed(tiny_model_dir, footage, tmp_path / "index")
    result = invoke(["search", str(tmp_path / "index"), "dancing", "--model", str(other_model_dir)])
    assert result.exit_code == ExitCode.USAGE
    assert "made with other vision weights" in result.stderr and "\n" not in result.stderr.strip()
    resumed = embed(other_model_dir, footage, tmp_path / "index")
    assert resumed.exit_code == ExitCode.USAGE and "--overwrite" in resumed.stderr
    missing = invoke(["search", str(tmp_path / "nowhere"), "dancing"])
    assert missing.exit_code == ExitCode.USAGE and "not an xclip index" in missing.stderr


def test_stored_video_embeddings_are_unit_length(tiny_model_dir: Path, footage: Path, tmp_path: Path) -> None:
    embed(tiny_model_dir, footage, tmp_path / "index")
    embeds = np.load(tmp_path / "index" / "embeds-00000.npy")
    assert embeds.shape[0] == 3 and np.allclose(np.linalg.norm(embeds, axis=1), 1.0, atol=1e-5)


def test_one_writer_at_a_time_and_only_its_own_files_are_touched(tiny_model_dir: Path, tmp_path: Path) -> None:
    from xclip_cli.store.locks import Busy

    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    out = tmp_path / "index"
    first = IndexWriter(out, runner)
    with pytest.raises(Busy, match="another xclip is writing it"):
        IndexWriter(out, runner)
    first.close()
    (out / "notes-2024.npy").write_bytes(b"mine")
    (out / "embeds-summary.txt").write_text("mine")
    IndexWriter(out, runner, overwrite=True).close()
    assert (out / "notes-2024.npy").exists() and (out / "embeds-summary.txt").exists()


def test_the_timeout_counts_decoding_not_the_callers_time() -> None:
    from xclip_cli.errors import VideoError
    from xclip_cli.media.seeking import Deadline

    now = [100.0]  # a clock the test moves by hand: no sleeps, no machine speed in the outcome
    deadline = Deadline("x.mp4", 0.2, clock=lambda: now[0])
    now[0] += 0.15  # decoding
    with deadline.paused():
        now[0] += 0.3  # the caller's time
    deadline.check()  # 0.15 s of decoding so far
    now[0] += 0.04
    deadline.check()  # 0.19 s
    now[0] += 0.02
    with pytest.raises(VideoError, match=r"gave up after 0\.2 s"):
        deadline.check()  # 0.21 s


def test_an_index_from_0_1_0_is_still_accepted(
    tiny_model_dir: Path, footage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.1.0 summed weights with torch (thread-dependent); its fingerprints are still recognised."""
    embed(tiny_model_dir, footage, tmp_path / "index")
    real = XClipRunner.vision_fingerprint

    def fingerprint(self: XClipRunner, legacy: bool = False) -> str:
        return "as 0.1.0 computed it" if legacy else real(self)

    monkeypatch.setattr(XClipRunner, "vision_fingerprint", fingerprint)
    manifest = tmp_path / "index" / "index.json"
    stored = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(stored | {"vision_fingerprint": "as 0.1.0 computed it"}))
    searched = invoke(["search", str(tmp_path / "index"), "dancing", "--model", str(tiny_model_dir)])
    assert searched.exit_code == 0, searched.stderr
    write_video(tmp_path / "new.mp4", num_frames=12)  # something to add, so the model loads and is checked
    assert embed(tiny_model_dir, tmp_path / "new.mp4", tmp_path / "index").exit_code == ExitCode.OK
    manifest.write_text(json.dumps(stored | {"vision_fingerprint": "another checkpoint"}))
    refused = invoke(["search", str(tmp_path / "index"), "dancing", "--model", str(tiny_model_dir)])
    assert refused.exit_code == ExitCode.USAGE


def test_paths_lead_to_the_videos_from_anywhere(
    tiny_model_dir: Path, footage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(footage.parent)
    assert embed(tiny_model_dir, Path(footage.name), tmp_path / "index").exit_code == ExitCode.PARTIAL
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    found = invoke(["search", str(tmp_path / "index"), "dancing", "-f", "json"])
    assert found.exit_code == ExitCode.OK, found.stderr
    hits = [hit["path"] for hit in json.loads(found.stdout)["hits"]]
    assert len(hits) == 3 and all(os.path.isfile(path) for path in hits)
    scored = invoke(["classify", "--index", str(tmp_path / "index"), "-l", LABELS_SURFING_TEXT, "-f", "jsonl"])
    assert scored.exit_code == ExitCode.PARTIAL  # the broken file's row
    assert all(os.path.isfile(json.loads(line)["path"]) for line in scored.stdout.splitlines()[:3])
    # Shown relative to where the user is when the videos lie below it.
    monkeypatch.chdir(footage.parent)
    here = invoke(["search", str(tmp_path / "index"), "dancing", "-f", "csv"])
    paths = [row["path"] for row in csv.DictReader(here.stdout.splitlines())]
    assert sorted(paths) == [f"{footage.name}/clip{i}.mp4" for i in range(3)]
    # The same videos named absolutely are already in the index.
    again = invoke(["embed", str(footage), "-o", str(tmp_path / "index"), "-m", str(tiny_model_dir)])
    assert again.exit_code == ExitCode.OK and "nothing to do: all 4 videos are already in" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "BROKEN"],
            "made with --model TINY, this run uses BROKEN",
        ),
        (["--precision", "bf16"], "made with --precision fp32, this run uses bf16"),
    ],
)
def test_embedding_into_an_index_built_otherwise_is_refused_before_loading(
    tiny_model_dir: Path, footage: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    index = tmp_path / "index"
    embed(tiny_model_dir, footage, index)
    before = sorted((path.name, path.stat().st_size) for path in index.iterdir())
    broken = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    (broken / "model.safetensors").unlink()  # loading it would fail: a refusal proves nothing loaded
    write_video(tmp_path / "new.mp4", num_frames=12)
    base = ["embed", str(tmp_path / "new.mp4"), "-o", str(index), "--model", str(tiny_model_dir)]
    result = invoke([*base, *[str(broken) if arg == "BROKEN" else arg for arg in args]])
    assert result.exit_code == ExitCode.USAGE, result.stderr
    expected = message.replace("TINY", str(tiny_model_dir)).replace("BROKEN", str(broken))
    assert result.stderr == f"xclip: error: {index}: {expected}; use those settings, another -o, or --overwrite\n"
    assert sorted((path.name, path.stat().st_size) for path in index.iterdir()) == before


def test_an_explicit_model_wins_over_the_index_model(tiny_model_dir: Path, footage: Path, tmp_path: Path) -> None:
    embed(tiny_model_dir, footage, tmp_path / "index")
    # The default hub id, named explicitly, is what the user asked for: it is loaded (and fails
    # offline here) instead of being swapped silently for the index's checkpoint.
    result = invoke(
        [
            "classify",
            "--index",
            str(tmp_path / "index"),
            "-l",
            LABELS_SURFING_TEXT,
            "-m",
            "microsoft/xclip-base-patch32",
        ]
    )
    assert result.exit_code == ExitCode.MODEL, result.stderr
    assert "microsoft/xclip-base-patch32" in result.stderr


def test_paths_are_shown_absolute_from_the_root_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from xclip_cli.cli.common import display_path

    monkeypatch.chdir(tmp_path)
    assert display_path(str(tmp_path / "a" / "v.mp4")) == os.path.join("a", "v.mp4")
    assert display_path("/elsewhere/v.mp4") == "/elsewhere/v.mp4"
    monkeypatch.chdir("/")
    assert display_path(str(tmp_path / "v.mp4")) == str(tmp_path / "v.mp4")


def test_an_index_keeps_its_sampling(tiny_model_dir: Path, footage: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    assert embed(tiny_model_dir, footage, index, "--sampling", "keyframes").exit_code == ExitCode.PARTIAL
    assert json.loads((index / "index.json").read_text())["sampling"] == "keyframes"
    # Scored without --sampling: the index's own; each record says so, and that substitutes were not kept.
    scored = invoke(["classify", "--index", str(index), "-l", LABELS_SURFING_TEXT, "-f", "jsonl"])
    assert scored.exit_code == ExitCode.PARTIAL, scored.stderr
    records = [json.loads(line) for line in scored.stdout.splitlines()]
    assert {r["sampling"] for r in records} == {"keyframes"}
    assert {r["keyframe_substitutes"] for r in records} == {None}
    # Asked otherwise, before any model loads (the model is named wrongly to prove it).
    for extra, message in (
        (["--sampling", "exact"], "the index holds videos sampled with --sampling keyframes, not exact"),
        (["--clips", "2"], "--clips cannot apply to --index"),
        (["--start", "1"], "--start cannot apply to --index"),
    ):
        refused = invoke(["classify", "--index", str(index), "-l", LABELS_SURFING_TEXT, "-m", "no/such-model", *extra])
        assert refused.exit_code == ExitCode.USAGE and message in refused.stderr, refused.stderr
        assert refused.stderr.count("\n") == 1
    write_video(tmp_path / "new.mp4", num_frames=12)
    more = invoke(["embed", str(tmp_path / "new.mp4"), "-o", str(index), "--model", str(tiny_model_dir), "-q"])
    assert more.exit_code == ExitCode.USAGE
    assert "made with --sampling keyframes, this run uses exact" in more.stderr

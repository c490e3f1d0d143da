"""The ONNX Runtime engine: prepared once per checkpoint, equal to transformers, never stale,
and a warm one-shot run that imports neither torch nor transformers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    LABELS,
    TOKENIZER_DIR,
    assert_within_float32_rounding,
    float32_rounding_bound,
    float64_logits,
    invoke,
    probability_tolerance,
    random_pixels,
    reference_logits,
    save_full_size_checkpoint,
    save_tiny_checkpoint,
    text_rounding_bound,
)

from xclip_cli.errors import ExitCode
from xclip_cli.jobs.classify import classify_videos, load_frames, view_pixels
from xclip_cli.labels import inline_labelset, parse_labelset
from xclip_cli.model.onnx.cache import checkpoint_stamp, find_prepared, read_manifest
from xclip_cli.model.onnx.export import is_prepared, prepare, prepared_folder
from xclip_cli.model.onnx.runner import FEW_VIDEOS, OnnxRunner
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions

pytest.importorskip("onnxruntime")
SHORT_LABELS = ["cooking", "dancing", "surfing"]  # what the command-line cases score

# ONNX Runtime's float32 forward and torch's are each within helpers.float32_rounding_bound of
# transformers' float64 forward, whatever their kernels, blocking, FMA use or thread count:
# within twice it of each other. The tolerances below are derived so, for the inputs at hand.


def record_tolerance(folder: Path, texts: list[str], pixels: np.ndarray) -> float:
    """How far any number in two records of ``pixels`` scored with ``texts`` (labels, and the
    background prompts of --multi-label) may be apart, one record from each backend.

    A logit (or a search score, or a mean of them over views) is within twice the float32
    bound; a probability or a tag score is a softmax share, at most 1, so it moves by at most
    ``probability_tolerance`` of a probability of 1, which exceeds that logit bound.
    """
    exact = float64_logits(folder, texts, pixels)
    logit_bound = 2 * float32_rounding_bound(folder, texts, pixels, exact)
    return float(probability_tolerance(np.ones(1), exact, logit_bound)[0])


def clip_pixels(folder: Path, clips: list[Path], options: ClassifyOptions = ClassifyOptions()) -> np.ndarray:
    """Every view the model sees of ``clips`` under ``options``, as classify samples them."""
    runner = XClipRunner.from_pretrained(str(folder), device="cpu")
    return np.concatenate([view_pixels(load_frames(runner, str(clip), options)) for clip in clips])


@pytest.fixture
def engines(tiny_model_dir: Path, onnx_ready: Path) -> tuple[XClipRunner, OnnxRunner]:
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    folder = find_prepared(str(tiny_model_dir))
    assert folder is not None
    return runner, OnnxRunner.open(folder, str(tiny_model_dir))


def classify_args(model: Path, clip: Path, *extra: str) -> list[str]:
    return ["classify", str(clip), "-m", str(model), "-l", "cooking, dancing, surfing", "-f", "json", *extra]


@pytest.mark.parametrize("labels", [LABELS[:1], LABELS], ids=["1-label", "5-labels"])
@pytest.mark.parametrize("videos", [1, 3])
def test_logits_equal_transformers(
    tiny_model_dir: Path,
    engines: tuple[XClipRunner, OnnxRunner],
    random_inputs_bound: float,
    labels: list[str],
    videos: int,
) -> None:
    runner, onnx = engines
    pixel_values = random_pixels(videos, runner)
    text = onnx.label_text_features(inline_labelset(", ".join(labels) + ","))  # its own text encoder
    assert onnx.text_encoder_calls == 1
    ours = onnx.video_logits(pixel_values, text)
    expected = reference_logits(tiny_model_dir, labels, pixel_values)
    assert ours.shape == expected.shape == (videos, len(labels))
    assert_within_float32_rounding(ours, expected, 2 * random_inputs_bound)


def test_text_encoder_and_ensembles_equal_torch(tiny_model_dir: Path, engines: tuple[XClipRunner, OnnxRunner]) -> None:
    runner, onnx = engines
    long = " ".join(["a very long prompt about a person playing the violin on a stage"] * 12)  # > 77 tokens
    texts = ["cooking", "a video of someone walking the dog in the rain", long, "Ünïcode  spaces\tand tabs!"]
    # The encoders themselves (the cache would hand one's output to the other): one batch of
    # unequal lengths, padded.
    token_ids = [runner._tokenize(text) for text in texts]
    assert max(len(ids) for ids in token_ids) == 77 and min(len(ids) for ids in token_ids) == 3
    ours, theirs = onnx._encode_texts(token_ids), runner._encode_texts(token_ids)
    assert np.abs(ours - theirs).max() <= 2 * text_rounding_bound(tiny_model_dir, [[ids] for ids in token_ids])
    labelset = parse_labelset(
        {
            "templates": ["a video of {}", "{}", "a person {}"],
            "labels": ["cooking", {"name": "dancing", "prompts": ["dancing", "doing a dance"]}, "surfing"],
        },
        origin="test",
    )
    fresh = OnnxRunner.open(onnx.folder, onnx.model_id)  # no memory of the texts above
    ours, theirs = fresh.label_text_features(labelset), runner.label_text_features(labelset)
    per_label = [[runner._tokenize(text) for text in prompts] for prompts in labelset.texts_per_label()]
    assert np.abs(ours - theirs).max() <= 2 * text_rounding_bound(tiny_model_dir, per_label)


def test_a_runner_for_stored_features_opens_the_vision_graph_on_first_use(
    engines: tuple[XClipRunner, OnnxRunner], random_inputs_bound: float
) -> None:
    """``videos=0`` (search, classify from an index): the head loads at open (a damaged one
    is refused before any output), the vision graph when first used, with the same logits."""
    runner, onnx = engines
    lazy = OnnxRunner.open(onnx.folder, onnx.model_id, videos=0)
    assert set(lazy._sessions) == {"head"} and set(onnx._sessions) >= {"vision", "head"}
    pixels = random_pixels(2, runner)
    text = onnx.text_features(["cooking", "surfing"])
    ours = lazy.video_logits(pixels, text)
    assert set(lazy._sessions) == {"vision", "head"}
    assert_within_float32_rounding(ours, onnx.video_logits(pixels, text), 2 * random_inputs_bound)


def prepacked(session: Any) -> bool:
    """Whether ONNX Runtime repacked the session's matrix weights at open (its default)."""
    try:
        return session.get_session_options().get_session_config_entry("session.disable_prepacking") != "1"
    except RuntimeError:  # onnxruntime: "does not have configuration with key": not set, the default
        return True


def test_a_run_of_few_videos_opens_the_vision_graph_without_prepacking(
    engines: tuple[XClipRunner, OnnxRunner], random_inputs_bound: float
) -> None:
    """A one-shot classify (at most FEW_VIDEOS videos times views) opens the vision graph
    without weight prepacking, faster; the head and text graphs, and runs of more videos or of
    an unknown count, prepack. The logits are the prepacked ones, within float32's rounding."""
    runner, onnx = engines
    counts = (1, FEW_VIDEOS, FEW_VIDEOS + 1, None)
    kinds = {videos: OnnxRunner.open(onnx.folder, onnx.model_id, videos=videos) for videos in counts}
    pixels = random_pixels(2, runner)
    text = kinds[1].text_features(["cooking", "surfing"])  # opens the text graph too
    for videos, opened in kinds.items():
        few = videos is not None and videos <= FEW_VIDEOS
        assert prepacked(opened._session("vision")) is not few, videos
        assert prepacked(opened._session("head"))
    assert prepacked(kinds[1]._session("text"))
    ours = kinds[1].video_logits(pixels, text)
    assert_within_float32_rounding(ours, onnx.video_logits(pixels, text), 2 * random_inputs_bound)


def test_token_ids_equal_transformers_on_the_real_clip_tokenizer(engines: tuple[XClipRunner, OnnxRunner]) -> None:
    from transformers import CLIPTokenizer

    _, onnx = engines
    reference = CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"))
    texts = [
        "cooking",
        "Playing the VIOLIN, badly...",
        "a person's dog isn't jumping",
        "naïve café — 東京 🎉",
        "  leading and   repeated   spaces  ",
        "word " * 100,  # truncated to the encoder's 77 positions, end token kept
        "",
    ]
    for text in texts:
        expected = reference(text, truncation=True, max_length=77)["input_ids"]
        assert onnx._tokenize(text) == expected, text


def test_classify_results_equal_the_torch_backend(
    tiny_model_dir: Path, engines: tuple[XClipRunner, OnnxRunner], clip_dir: Path
) -> None:
    runner, onnx = engines
    labelset = inline_labelset("cooking, dancing, skateboarding, surfing")
    paths = [str(clip_dir / "a.mp4"), str(clip_dir / "b.mp4"), str(clip_dir / "missing.mp4")]
    options = ClassifyOptions(top_k=4, clips=2, crops=3, batch_size=2)  # multi-view, batched
    on_torch = list(classify_videos(runner, paths, labelset, options))
    on_onnx = list(classify_videos(onnx, paths, labelset, options))
    tolerance = record_tolerance(tiny_model_dir, list(labelset.names), clip_pixels(tiny_model_dir, paths[:2], options))
    for a, b in zip(on_torch, on_onnx, strict=True):
        assert (a.path, a.status, a.views, a.timestamps, a.error) == (b.path, b.status, b.views, b.timestamps, b.error)
        assert_equal_apart_from_digits(a.to_record(), b.to_record(), tolerance)


def test_a_text_cache_written_by_torch_is_warm_for_onnx(
    engines: tuple[XClipRunner, OnnxRunner], random_inputs_bound: float
) -> None:
    runner, onnx = engines
    labelset = inline_labelset(", ".join(LABELS))
    runner.label_text_features(labelset)
    fresh = OnnxRunner.open(onnx.folder, onnx.model_id)
    pixel_values = random_pixels(2, runner)
    logits = fresh.video_logits(pixel_values, fresh.label_text_features(labelset))
    assert fresh.text_encoder_calls == 0 and fresh._tokenizer is None  # a hit needs no tokenizer either
    expected = runner.video_logits(pixel_values, runner.label_text_features(labelset))
    assert_within_float32_rounding(logits, expected, 2 * random_inputs_bound)


def test_a_warm_one_shot_run_imports_neither_torch_nor_transformers(
    tiny_model_dir: Path, clip_dir: Path, onnx_ready: Path
) -> None:
    code = (
        "import sys\n"
        "from xclip_cli.cli import main\n"
        "sys.argv = ['xclip', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "XCLIP_BACKEND": "auto"}
    for labels in ("cooking, dancing, surfing", "kinetics400"):  # a text-cache miss, then a built-in set
        args = classify_args(tiny_model_dir, clip_dir / "a.mp4")
        args[args.index("-l") + 1] = labels
        completed = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env
        )
        assert completed.returncode == 0, completed.stderr
        (record,) = json.loads(completed.stdout)
        assert record["status"] == "ok" and record["precision"] == "fp32"
        assert completed.stderr == ""


@pytest.mark.heavy
def test_auto_prepares_on_first_use_then_reuses(tmp_path: Path, clip_dir: Path) -> None:
    model = save_tiny_checkpoint(tmp_path / "model", seed=3)
    args = classify_args(model, clip_dir / "a.mp4", "--backend", "auto")
    first = invoke(args)
    assert first.exit_code == ExitCode.OK, first.stderr
    assert first.stderr.startswith(f"xclip: preparing {model} for ONNX Runtime: once per checkpoint")
    assert find_prepared(str(model)) is not None
    second = invoke(args)
    assert second.exit_code == ExitCode.OK and second.stderr == ""
    on_torch = invoke(classify_args(model, clip_dir / "a.mp4", "--backend", "torch"))
    records = [json.loads(run.stdout)[0] for run in (first, second, on_torch)]
    assert records[0] == records[1]
    tolerance = record_tolerance(model, SHORT_LABELS, clip_pixels(model, [clip_dir / "a.mp4"]))
    assert_equal_apart_from_digits(records[0], records[2], tolerance)


@pytest.mark.heavy
def test_a_checkpoint_edited_after_preparing_is_exported_anew(
    tmp_path: Path, clip_dir: Path, isolated_dirs: Path, prepared_onnx: Path, tiny_model_dir: Path
) -> None:
    from safetensors.torch import load_file, save_file

    shutil.copytree(prepared_onnx, isolated_dirs / "onnx")  # a new entry is written: a copy
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    before = invoke(["models", "prepare", "--model", str(model)])  # same weights: the shared entry
    assert before.exit_code == ExitCode.OK and "preparing" not in before.stderr
    weights = load_file(model / "model.safetensors")
    name = next(key for key in weights if "prompts_generator" in key and key.endswith("weight"))
    weights[name] = weights[name] + 0.01  # one head weight, same file size: the graphs must not be reused
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    assert find_prepared(str(model)) is None  # its files changed: looked at again
    args = classify_args(model, clip_dir / "a.mp4")
    edited = invoke([*args, "--backend", "onnx"])
    assert edited.exit_code == ExitCode.OK, edited.stderr
    assert edited.stderr.startswith(f"xclip: preparing {model} for ONNX Runtime")
    on_torch = json.loads(invoke([*args, "--backend", "torch"]).stdout)[0]
    tolerance = record_tolerance(model, SHORT_LABELS, clip_pixels(model, [clip_dir / "a.mp4"]))
    assert_equal_apart_from_digits(json.loads(edited.stdout)[0], on_torch, tolerance)
    changed = XClipRunner.from_pretrained(str(model), device="cpu")
    assert find_prepared(str(model)) == prepared_folder(changed) != find_prepared(str(tiny_model_dir))


@pytest.mark.heavy
def test_a_damaged_entry_is_rebuilt_with_a_warning(
    tiny_model_dir: Path, isolated_dirs: Path, prepared_onnx: Path
) -> None:
    shutil.copytree(prepared_onnx, isolated_dirs / "onnx")  # a copy: the session's entry stays whole
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    folder = prepared_folder(runner)
    with open(folder / "head.onnx", "r+b") as handle:
        handle.truncate(100)  # a disk that filled up, a copy cut short
    assert read_manifest(folder) is None and find_prepared(str(tiny_model_dir)) is None
    said: list[str] = []
    assert prepare(runner, said.append) == folder and is_prepared(runner)
    assert said[0] == f"xclip: warning: {folder}: damaged ONNX cache entry, exporting again"
    assert json.loads((folder / "manifest.json").read_text())["sizes"]["head.onnx"] > 100


def test_an_unwritable_cache_runs_on_torch_with_a_warning(
    tmp_path: Path, clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = save_tiny_checkpoint(tmp_path / "model", seed=4)
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would be\n")
    monkeypatch.setenv("XCLIP_CACHE_DIR", str(blocked))
    result = invoke(classify_args(model, clip_dir / "a.mp4", "--backend", "auto"))
    assert result.exit_code == ExitCode.OK, result.stderr
    assert f"xclip: warning: cannot prepare {model} for ONNX Runtime" in result.stderr
    assert result.stderr.rstrip().endswith("running on torch")
    assert json.loads(result.stdout)[0]["status"] == "ok"
    for args in (
        ["models", "prepare", "--model", str(model)],
        classify_args(model, clip_dir / "a.mp4", "--backend", "onnx"),
    ):
        refused = invoke(args)  # asked for explicitly: an output error, in one line
        assert refused.exit_code == ExitCode.OUTPUT, refused.stderr
        assert refused.stderr.startswith(f"xclip: error: cannot prepare {model} for ONNX Runtime: ")
        assert len(refused.stderr.splitlines()) == 1


def test_the_stamp_names_the_files_not_the_spelling(tiny_model_dir: Path, tmp_path: Path) -> None:
    stamp = checkpoint_stamp(str(tiny_model_dir))
    assert stamp is not None and checkpoint_stamp(f"{tiny_model_dir}/") == stamp
    assert checkpoint_stamp(str(tmp_path / "absent")) is None and checkpoint_stamp("nobody/nothing") is None
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert checkpoint_stamp(str(copy)) != stamp  # another folder: verified once with torch


def test_onnx_refuses_what_it_cannot_run(tiny_model_dir: Path, clip_dir: Path, onnx_ready: Path) -> None:
    base = ["classify", str(clip_dir / "a.mp4"), "-m", str(tiny_model_dir), "-l", "a, b", "--backend", "onnx"]
    result = invoke([*base, "--precision", "bf16"])
    assert result.exit_code == ExitCode.USAGE
    # Refused before anything loads: one line, no bf16 speed warning first.
    assert (
        result.stderr == "xclip: error: --backend onnx runs fp32 or int8, not --precision bf16: use --backend torch\n"
    )
    unknown = invoke(["classify", str(clip_dir / "a.mp4"), "-m", str(tiny_model_dir), "--backend", "tpu"])
    assert (
        unknown.exit_code == ExitCode.USAGE and "--backend 'tpu': expected one of auto, torch, onnx" in unknown.stderr
    )


def test_int8_is_onnx_only_lossy_and_named_in_the_output(
    tiny_model_dir: Path, clip_dir: Path, isolated_dirs: Path, prepared_onnx: Path
) -> None:
    shutil.copytree(prepared_onnx, isolated_dirs / "onnx")  # int8 is added to the entry: a copy
    args = classify_args(tiny_model_dir, clip_dir / "a.mp4")
    refused = invoke([*args, "--precision", "int8", "--backend", "torch"])
    assert refused.exit_code == ExitCode.USAGE and "--precision int8 runs on ONNX Runtime" in refused.stderr
    int8 = invoke([*args, "--precision", "int8", "--backend", "auto"])  # quantised now, without torch
    assert int8.exit_code == ExitCode.OK, int8.stderr
    assert int8.stderr.startswith("xclip: quantising the vision weights to int8 (once)")
    (record,) = json.loads(int8.stdout)
    assert record["precision"] == "int8" and len(record["predictions"]) == 3
    assert sum(p["probability"] for p in record["predictions"]) == pytest.approx(1.0, abs=1e-5)
    again = invoke([*args, "--precision", "int8", "--backend", "auto"])
    assert again.stderr == "" and json.loads(again.stdout) == [record]
    prepared = invoke(["models", "prepare", "--model", str(tiny_model_dir), "--precision", "int8"])
    assert prepared.exit_code == ExitCode.OK and "quantising" not in prepared.stderr  # already there


def test_int8_features_never_mix_with_fp32_in_an_index(
    tiny_model_dir: Path, isolated_dirs: Path, prepared_onnx: Path
) -> None:
    shutil.copytree(prepared_onnx, isolated_dirs / "onnx")
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    folder = prepare(runner, int8=True)
    onnx, int8 = OnnxRunner.open(folder, str(tiny_model_dir)), OnnxRunner.open(folder, str(tiny_model_dir), int8=True)
    assert int8.precision == "int8" and onnx.precision == "fp32"
    assert int8.vision_fingerprint() != onnx.vision_fingerprint() == runner.vision_fingerprint()
    assert onnx.vision_fingerprint(legacy=True) == runner.vision_fingerprint(legacy=True)
    pixels = random_pixels(2, runner)
    assert int8.video_features(pixels).embeds.shape == onnx.video_features(pixels).embeds.shape


def assert_equal_apart_from_digits(a: object, b: object, tolerance: float) -> None:
    """Same structure, texts and counts; numbers within ``tolerance`` (``record_tolerance``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_equal_apart_from_digits(a[key], b[key], tolerance)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_equal_apart_from_digits(x, y, tolerance)
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=tolerance)
    else:
        assert a == b


@pytest.mark.heavy
def test_every_command_gives_the_same_records_on_both_backends(
    tiny_model_dir: Path, clip_dir: Path, onnx_ready: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xclip_cli.jobs.tagging import DEFAULT_BACKGROUND

    seen: list[np.ndarray] = []  # every view torch scores or embeds: what the tolerance is derived for
    video_features = XClipRunner.video_features

    def recording(self: XClipRunner, pixel_values: np.ndarray) -> object:
        seen.append(np.asarray(pixel_values))
        return video_features(self, pixel_values)

    monkeypatch.setattr(XClipRunner, "video_features", recording)
    data = tmp_path / "data"
    for label, clip in (("cooking", "a.mp4"), ("dancing", "b.mp4")):
        (data / label).mkdir(parents=True)
        shutil.copy(clip_dir / clip, data / label / clip)
    model, labels = ["-m", str(tiny_model_dir)], ["-l", "cooking, dancing, surfing"]
    commands = {
        "classify": ["classify", str(clip_dir / "a.mp4"), *model, *labels, "--clips", "2", "-f", "json"],
        "scan": ["scan", str(clip_dir), *model, *labels, "-f", "jsonl", "--multi-label"],
        "timeline": ["timeline", str(clip_dir / "a.mp4"), *model, *labels, "--window", "1", "-f", "json"],
        "tags": ["timeline", str(clip_dir / "a.mp4"), *model, *labels, "--multi-label", "-f", "json"],
        "eval": ["eval", str(data), *model, *labels, "-f", "json", "-q"],
    }
    outputs: dict[str, tuple[object, object]] = {}
    for name, args in commands.items():
        runs = {backend: invoke([*args, "--backend", backend]) for backend in ("torch", "onnx")}
        for backend, run in runs.items():
            assert run.exit_code == ExitCode.OK, (name, backend, run.stderr)
        if name == "scan":
            torch_out, onnx_out = ([json.loads(line) for line in run.stdout.splitlines()] for run in runs.values())
        else:
            torch_out, onnx_out = (json.loads(run.stdout) for run in runs.values())
        outputs[name] = (onnx_out, torch_out)
    for backend in ("torch", "onnx"):
        index = tmp_path / f"index-{backend}"
        embedded = invoke(["embed", str(clip_dir), "-o", str(index), *model, "--backend", backend, "-q"])
        assert embedded.exit_code == ExitCode.OK, embedded.stderr
    searches = [invoke(["search", str(tmp_path / f"index-{b}"), "cooking", "-f", "json"]) for b in ("torch", "onnx")]
    outputs["search"] = (json.loads(searches[1].stdout), json.loads(searches[0].stdout))
    views = np.unique(np.concatenate(seen), axis=0)
    tolerance = record_tolerance(tiny_model_dir, [*SHORT_LABELS, *DEFAULT_BACKGROUND], views)
    for onnx_out, torch_out in outputs.values():
        assert_equal_apart_from_digits(onnx_out, torch_out, tolerance)
    # The index remembers its backend's features: fp32 on both, so scoring it across backends works.
    rescored = invoke(
        ["classify", "--index", str(tmp_path / "index-torch"), *labels, "-f", "json", "--backend", "onnx"]
    )
    assert rescored.exit_code == ExitCode.OK, rescored.stderr


@pytest.mark.slow
def test_full_size_model_on_onnx_runtime_equals_transformers(tmp_path: Path, isolated_dirs: Path) -> None:
    """The base-patch32 shape (XCLIPConfig()), random weights, 400 Kinetics labels, exported: ONNX
    Runtime's float32 logits against transformers' ``logits_per_video`` in float64 (about 3 minutes).

    The bound is the one of ``test_equivalence.test_full_size_model_logits_equal_transformers``:
    3x the float64 change that float32's worst-case rounding at every operation causes
    (``helpers.simulated_float32``), which holds for MLAS's kernels on any x86 CPU and any
    number of intra-op threads because it does not depend on summation order, blocking or FMA;
    probabilities follow within 2·bound·p. The bound comes to ~5e-4 here against ~2e-6 measured
    (1 or 2 intra-op threads); a wrong graph (layers reordered by the export, a mis-scaled logit,
    the text pooled at the wrong token) moves logits by 2e-2 to 0.5.
    """
    from xclip_cli.labels import resolve_labels
    from xclip_cli.model.open import open_backend

    folder = save_full_size_checkpoint(tmp_path)
    onnx = open_backend(str(folder), "cpu", "fp32", "onnx")
    assert isinstance(onnx, OnnxRunner)
    labelset = resolve_labels("kinetics400")
    assert labelset.texts_per_label() == [[name] for name in labelset.names] and len(labelset) == 400
    rng = np.random.default_rng(0)
    pixel_values = rng.standard_normal((2, onnx.num_frames, 3, 224, 224), dtype=np.float32)
    ours = onnx.video_logits(pixel_values, onnx.label_text_features(labelset))
    names = list(labelset.names)
    exact = float64_logits(folder, names, pixel_values)
    assert_within_float32_rounding(ours, exact, float32_rounding_bound(folder, names, pixel_values, exact))


def test_a_server_on_onnx_runtime_says_so_and_gives_the_torch_records(
    tiny_model_dir: Path, engines: tuple[XClipRunner, OnnxRunner], clip_dir: Path
) -> None:
    import threading
    import urllib.request

    from xclip_cli.run.server import ClassifyService, make_server

    runner, onnx = engines
    http = make_server(ClassifyService(onnx, [clip_dir], max_upload=200_000), "127.0.0.1", 0)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}"
    try:
        with urllib.request.urlopen(url + "/model", timeout=60) as response:
            info = json.loads(response.read())
        body = json.dumps({"path": str(clip_dir / "a.mp4"), "labels": "cooking, dancing, surfing"}).encode()
        request = urllib.request.Request(url + "/classify", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = json.loads(response.read())
    finally:
        http.shutdown()
        http.server_close()
    assert info["backend"] == "onnx" and info["device"] == "cpu" and info["precision"] == "fp32"
    (expected,) = classify_videos(runner, [str(clip_dir / "a.mp4")], inline_labelset("cooking, dancing, surfing"))
    # The server names the file it read (resolved_path), as classify -f json does.
    tolerance = record_tolerance(tiny_model_dir, SHORT_LABELS, clip_pixels(tiny_model_dir, [clip_dir / "a.mp4"]))
    assert_equal_apart_from_digits(
        served, [expected.to_record() | {"resolved_path": os.path.realpath(clip_dir / "a.mp4")}], tolerance
    )


def test_an_install_without_the_exporter_says_what_to_install(
    tiny_model_dir: Path, clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xclip_cli.model.open

    monkeypatch.setattr(xclip_cli.model.open, "_installed", lambda name: name != "onnxscript")
    message = (
        f"xclip: error: preparing {tiny_model_dir} for ONNX Runtime needs onnxscript: pip install 'xclip-cli[torch]'\n"
    )
    for args in (
        classify_args(tiny_model_dir, clip_dir / "a.mp4", "--backend", "onnx"),
        ["models", "prepare", "--model", str(tiny_model_dir)],
    ):
        refused = invoke(args)
        assert refused.exit_code == ExitCode.MISSING and refused.stderr == message
    trimmed = invoke(classify_args(tiny_model_dir, clip_dir / "a.mp4", "--backend", "auto"))
    assert trimmed.exit_code == ExitCode.OK and trimmed.stderr == ""  # auto: torch, as before ONNX existed
    assert json.loads(trimmed.stdout)[0]["precision"] == "fp32"

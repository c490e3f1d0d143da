"""The text-feature cache: computed once per label set and checkpoint, on disk and in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xclip_cli.labels import inline_labelset
from xclip_cli.model import text_cache
from xclip_cli.model.torch.runner import XClipRunner


def count_text_encoder_runs(runner: XClipRunner) -> list[int]:
    """Count real forward calls of the text transformer (a hook on the module itself)."""
    calls: list[int] = []
    runner.model.text_model.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_second_run_does_not_run_the_text_encoder(tiny_model_dir: Path, isolated_dirs: Path) -> None:
    labels = inline_labelset("cooking, dancing, skateboarding")
    first = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    first_calls = count_text_encoder_runs(first)
    features = first.label_text_features(labels)
    assert len(first_calls) >= 1
    assert len(list((isolated_dirs / "text-features").glob("*.npy"))) == 1

    second = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")  # a new process, in effect
    second_calls = count_text_encoder_runs(second)
    again = second.label_text_features(labels)
    assert second_calls == []
    assert np.array_equal(features, again)
    second.label_text_features(labels)  # memory cache: not even a disk read
    assert second_calls == []


def test_changed_labels_or_checkpoint_invalidate(tiny_model_dir: Path, other_model_dir: Path) -> None:
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    runner.label_text_features(inline_labelset("cooking, dancing"))
    calls = count_text_encoder_runs(runner)
    runner.label_text_features(inline_labelset("cooking, dancing, surfing"))
    assert len(calls) >= 1

    other = XClipRunner.from_pretrained(str(other_model_dir), device="cpu")
    other_calls = count_text_encoder_runs(other)
    other.label_text_features(inline_labelset("cooking, dancing"))
    assert len(other_calls) >= 1
    assert other.fingerprint() != runner.fingerprint()


def test_cached_features_equal_fresh_ones(tiny_model_dir: Path) -> None:
    labels = inline_labelset("a b c, playing the violin while riding a unicycle, x")
    cached = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    cached.label_text_features(labels)
    assert cached.text_encoder_calls == 1
    second = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    calls = count_text_encoder_runs(second)
    reloaded = second.label_text_features(labels)
    assert calls == [] and second.text_encoder_calls == 0  # read from the file, not recomputed
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    with torch.inference_mode():
        inputs = runner.tokenizer(labels.names, padding=True, return_tensors="pt")
        direct = runner.model.get_text_features(**inputs).pooler_output
    np.testing.assert_allclose(reloaded, direct.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("content", [b"not numpy", b""], ids=["garbage", "empty"])
def test_corrupt_cache_file_is_recomputed(tiny_model_dir: Path, isolated_dirs: Path, content: bytes) -> None:
    labels = inline_labelset("cooking, dancing")
    XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu").label_text_features(labels)
    (path,) = (isolated_dirs / "text-features").glob("*.npy")
    path.write_bytes(content)
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    calls = count_text_encoder_runs(runner)
    runner.label_text_features(labels)
    assert len(calls) >= 1
    assert np.load(path).shape[0] == 2  # rewritten


def test_unwritable_cache_only_costs_speed(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("XCLIP_CACHE_DIR", str(blocker / "cache"))
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    assert runner.label_text_features(inline_labelset("a, b")).shape == (2, 64)


def test_cache_dir_honours_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XCLIP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert text_cache.cache_dir() == tmp_path / "xdg" / "xclip-cli"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert text_cache.cache_dir() == tmp_path / "home" / ".cache" / "xclip-cli"


@pytest.mark.parametrize(
    "tensor", ["text_model.encoder.layers.0.mlp.fc1.weight", "text_model.embeddings.token_embedding.weight"]
)
def test_one_edited_text_weight_invalidates(tiny_model_dir: Path, tmp_path: Path, tensor: str) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    edited = tmp_path / "edited"
    shutil.copytree(tiny_model_dir, edited)
    weights = load_file(edited / "model.safetensors")
    weights[tensor][3, 5] += 0.01  # one value, between the fingerprint's samples
    save_file(weights, edited / "model.safetensors", metadata={"format": "pt"})
    labels = inline_labelset("cooking, dancing")
    XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu").label_text_features(labels)
    runner = XClipRunner.from_pretrained(str(edited), device="cpu")
    calls = count_text_encoder_runs(runner)
    runner.label_text_features(labels)
    assert len(calls) >= 1


def test_fingerprints_do_not_depend_on_torch_threads(tiny_model_dir: Path) -> None:
    """A Ray worker runs torch on one thread: its cache keys and index checks must still match."""
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    threads = torch.get_num_threads()
    seen = set()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            runner._fingerprint = None
            runner._fingerprints.clear()  # computed anew at each thread count
            seen.add((runner.fingerprint(), runner.vision_fingerprint()))
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 1


def test_a_warm_cache_never_loads_the_tokenizer(tiny_model_dir: Path) -> None:
    """Loading CLIP's tokenizer costs about 0.3 s of a one-shot run; cache hits are named without it."""
    labels = inline_labelset("cooking, dancing, skateboarding")
    first = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    features = first.label_text_features(labels)
    assert first._tokenizer is not None  # a miss: tokenized and encoded
    second = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    assert np.array_equal(second.label_text_features(labels), features)
    assert second._tokenizer is None and second.text_encoder_calls == 0


def test_the_lazy_tokenizer_and_image_processor_are_xclip_processors(tiny_model_dir: Path) -> None:
    from transformers import XCLIPProcessor

    from xclip_cli.media.preprocess import PreprocessConfig

    processor = XCLIPProcessor.from_pretrained(str(tiny_model_dir))
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    assert type(runner.tokenizer) is type(processor.tokenizer)
    prompts = ["a video of cooking", "Playing the VIOLIN, on a unicycle!", "x " * 100, "naïve café 動画"]
    assert [runner._tokenize(text) for text in prompts] == [
        processor.tokenizer(text, truncation=True, max_length=runner.max_length)["input_ids"] for text in prompts
    ]
    assert runner.preprocess == PreprocessConfig.from_image_processor(processor.image_processor)


def test_a_changed_tokenizer_file_misses_the_cache(tiny_model_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    labels = inline_labelset("cooking, dancing")
    XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu").label_text_features(labels)
    edited = tmp_path / "edited"
    shutil.copytree(tiny_model_dir, edited)
    config = json.loads((edited / "tokenizer_config.json").read_text())
    (edited / "tokenizer_config.json").write_text(json.dumps(config | {"do_lower_case": False}))
    runner = XClipRunner.from_pretrained(str(edited), device="cpu")
    runner.label_text_features(labels)
    assert runner.text_encoder_calls == 1


def test_a_broken_tokenizer_is_a_one_line_model_error_when_first_needed(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from xclip_cli.errors import ExitCode

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "tokenizer.json").write_text("{ not json")
    video = tmp_path / "v.mp4"
    from helpers import invoke, write_video

    write_video(video)
    result = invoke(["classify", str(video), "--model", str(broken), "--labels", "cooking, dancing"])
    assert result.exit_code == ExitCode.MODEL
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"xclip: error: cannot load the tokenizer of {broken}")

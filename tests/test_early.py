"""Decoding the first video while the model loads: used only when the guessed settings are exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import invoke, save_tiny_checkpoint

import xclip_cli.jobs.early as early
from xclip_cli.model.torch.runner import XClipRunner


@pytest.mark.parametrize("legacy", [False, True], ids=["processor_config", "preprocessor_config"])
@pytest.mark.parametrize("resample", [2, 3], ids=["bilinear", "bicubic"])
def test_guessed_settings_equal_the_loaded_processor(tmp_path: Path, legacy: bool, resample: int) -> None:
    folder = save_tiny_checkpoint(tmp_path / "model", num_frames=6, legacy_preprocessor=legacy, resample=resample)
    runner = XClipRunner.from_pretrained(str(folder), device="cpu")
    assert early.checkpoint_settings(str(folder)) == (runner.num_frames, runner.preprocess)


def test_unknown_layouts_are_not_guessed(tmp_path: Path) -> None:
    assert early.checkpoint_settings(str(tmp_path)) is None  # no files at all
    (tmp_path / "config.json").write_text(json.dumps({"vision_config": {"num_frames": 8}}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": 224, "do_resize": False}))
    assert early.checkpoint_settings(str(tmp_path)) is None


def test_results_are_the_same_with_and_without_early_decoding(
    tiny_model_dir: Path, clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["classify", str(clip_dir / "a.mp4"), str(clip_dir / "b.mp4"), "--model", str(tiny_model_dir)]
    args += ["--labels", "cooking, dancing, surfing", "-f", "jsonl", "--clips", "2"]
    used = []
    take = early.EarlyDecode.take

    def spy(self: early.EarlyDecode, *a: object) -> dict[str, object]:
        result = take(self, *a)  # type: ignore[arg-type]
        used.append(bool(result))
        return result  # type: ignore[return-value]

    monkeypatch.setattr(early.EarlyDecode, "take", spy)
    with_early = invoke(args)
    assert with_early.exit_code == 0, with_early.stderr
    assert used == [True]  # the first video came from the early decoding
    monkeypatch.setattr(early, "checkpoint_settings", lambda model_id: None)
    without = invoke(args)
    assert without.exit_code == 0 and used == [True, False]
    assert with_early.stdout == without.stdout


def test_a_wrong_guess_is_thrown_away(tiny_model_dir: Path, clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = early.checkpoint_settings

    def off_by_one(model_id: str) -> object:
        frames, config = real(model_id)  # type: ignore[misc]
        return frames + 1, config

    args = ["classify", str(clip_dir / "a.mp4"), "--model", str(tiny_model_dir), "--labels", "a, b", "-f", "json"]
    expected = invoke(args).stdout
    monkeypatch.setattr(early, "checkpoint_settings", off_by_one)
    result = invoke(args)
    assert result.exit_code == 0 and result.stdout == expected

"""Loading checkpoints: what is refused, with which message."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from xclip_cli.errors import ExitCode, ModelLoadError
from xclip_cli.model.torch.runner import XClipRunner


def test_missing_weights_are_refused_not_randomly_initialised(tiny_model_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir, partial)
    weights = load_file(partial / "model.safetensors")
    kept = {name: tensor for name, tensor in weights.items() if not name.startswith("prompts_generator.")}
    save_file(kept, partial / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"incomplete or mismatched weights \(\d+ missing keys, e\.g\. prompts_"):
        XClipRunner.from_pretrained(str(partial), device="cpu")


def test_a_clip_checkpoint_is_not_xclip(tmp_path: Path) -> None:
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": 30,
            "patch_size": 2,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="it is a 'clip' model, not X-CLIP"):
        XClipRunner.from_pretrained(str(tmp_path), device="cpu")


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        XClipRunner.from_pretrained(str(tmp_path), device="cpu")


def hub_cache(tmp_path: Path, checkpoint: Path, repo: str, skip: tuple[str, ...] = ()) -> Path:
    """A Hugging Face hub cache holding ``checkpoint`` as ``repo`` (what `hf download` leaves)."""
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    entry = cache / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(commit)
    for item in checkpoint.iterdir():
        if item.name not in skip:
            (snapshot / item.name).write_bytes(item.read_bytes())
    return cache


@pytest.mark.heavy
def test_a_hub_id_loads_offline_from_the_hub_cache(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A fresh process (huggingface_hub reads its cache location at import), as a user runs it."""
    import subprocess
    import sys

    from helpers import write_video

    video = write_video(tmp_path / "v.mp4")
    repo = "someone/tiny-xclip"
    command = [sys.executable, "-m", "xclip_cli", "classify", str(video), "--model", repo]
    command += ["--labels", "cooking, dancing", "-f", "jsonl"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub_cache(tmp_path, tiny_model_dir, repo)))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"status": "ok"' in done.stdout
    # A cache missing the tokenizer's files (an interrupted download): refused when loading, in one line.
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json")
    env["HF_HUB_CACHE"] = str(hub_cache(tmp_path / "partial", tiny_model_dir, repo, skip=tokenizer_files))
    partial = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert partial.returncode == 6, partial.stderr
    assert len(partial.stderr.strip().splitlines()) == 1 and repo in partial.stderr


def test_a_folder_without_a_vocabulary_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    """transformers would build a tokenizer with an empty vocabulary: every prompt unknown tokens."""
    folder = tmp_path / "no-vocab"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="no vocabulary file"):
        XClipRunner.from_pretrained(str(folder), device="cpu")


@pytest.mark.parametrize("terminal", [True, False])
def test_download_bars_show_on_a_terminal_only(terminal: bool) -> None:
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

    from xclip_cli.model.torch.loading import download_progress

    disable_progress_bars()  # as loading leaves them (transformers' disable_progress_bar)
    with download_progress(terminal):
        assert are_progress_bars_disabled() is not terminal
    assert are_progress_bars_disabled()  # put back as it was


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("microsoft/xclip-base-patch3", "microsoft/xclip-base-patch32"),
        ("xclip-base-patch32", "microsoft/xclip-base-patch32"),  # the owner left out
        ("Microsoft/XCLIP-base-patch16-zeroshot", "microsoft/xclip-base-patch16-zero-shot"),
    ],
)
def test_a_misspelt_hub_id_gets_did_you_mean(typed: str, meant: str, clip_dir: Path) -> None:
    from helpers import invoke

    with pytest.raises(ModelLoadError) as info:  # HF_HUB_OFFLINE (conftest): not cached, hub unreachable
        XClipRunner.from_pretrained(typed, device="cpu")
    assert str(info.value) == (
        f"cannot load model {typed}: not in the local Hugging Face cache and the hub cannot be reached "
        f"(did you mean {meant}? `xclip models` lists the published checkpoints)"
    )
    result = invoke(["classify", str(clip_dir / "a.mp4"), "-m", typed, "-l", "a, b"])
    assert result.exit_code == ExitCode.MODEL and f"did you mean {meant}?" in result.stderr


def test_an_unknown_hub_id_far_from_the_catalogue_gets_no_guess() -> None:
    from xclip_cli.model.checkpoints import DEFAULT_MODEL, close_checkpoint

    assert close_checkpoint(DEFAULT_MODEL) is None  # a catalogue id is no typo
    assert close_checkpoint("openai/clip-vit-base-patch32") is None
    with pytest.raises(ModelLoadError, match=r"hub cannot be reached\. Download it once") as info:
        XClipRunner.from_pretrained("someone/video-model", device="cpu")
    assert "did you mean" not in str(info.value)

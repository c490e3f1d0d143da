"""Loading checkpoints: what is refused, with which message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from xclip_cli.errors import ModelLoadError
from xclip_cli.runner import XClipRunner


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

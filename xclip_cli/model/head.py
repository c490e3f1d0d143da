"""X-CLIP's head in numpy, arranged for many videos and few texts: moment search.

The head (``Backend.logits_from_features``) conditions every text on every video with the
prompt generator, two cross-attention layers in which the text attends over the video's patch
features (49 for base-patch32), then takes the cosine with the video embedding. Computed as
transformers writes it, each video's keys and values (its patches through two 512x512
projections in each layer) cost about 51M multiply-adds, eight times what one text then costs;
for one query over many windows that is nearly all the time.

Here those projections move to the text's side, where they are done once per head instead of
once per patch: a head's score q·(W_k x) is (W_kᵀ q)·x, and its output W_v(Σ a_p x_p) applies
W_v once to the attention-weighted patch mean. A window then costs about 7M multiply-adds (the
two MLPs are 4.2M of them): the same function, summed in another order, so its float32 result
differs from the graph's by rounding only (``tests/test_search_head.py`` derives the bound).

``HeadWeights`` is the prompt generator's state dict under transformers' names, plus the
scalars the head needs; the ONNX backend reads it from the prepared folder (``HEAD_WEIGHTS``,
written at prepare time), the torch backend from its model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xclip_cli.errors import ModelLoadError, UsageError

CHUNK = 256  # windows at a time: their centred patches (26 MB for base-patch32), per text 8 heads' mixes (4 MB)
_CONFIG = ("heads", "layers", "activation", "vision_eps", "text_eps", "logit_scale")


@dataclass(frozen=True)
class HeadWeights:
    """What X-CLIP's head needs: the prompt generator's tensors (float32, by their names in
    ``XCLIPModel.prompts_generator.state_dict()``) and its scalars."""

    tensors: Mapping[str, np.ndarray]
    heads: int  # prompt_num_attention_heads
    layers: int  # prompt_layers
    activation: str  # prompt_hidden_act
    vision_eps: float  # the prompt generator's own LayerNorm (vision_config.layer_norm_eps)
    text_eps: float  # its layers' LayerNorms (text_config.layer_norm_eps)
    logit_scale: float  # the cosine's multiplier is its exp (the parameter as stored)

    def save(self, path: Path) -> None:
        arrays = dict(self.tensors) | {f"config.{name}": np.asarray(getattr(self, name)) for name in _CONFIG}
        np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stubs take **kwds for its own flags

    @classmethod
    def load(cls, path: Path) -> HeadWeights:
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            config = {name: arrays.pop(f"config.{name}").item() for name in _CONFIG}
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"{path}: cannot read the head's weights ({exc})") from None
        return cls({name: value.astype(np.float32) for name, value in arrays.items()}, **config)


def head_logits(weights: HeadWeights, embeds: np.ndarray, patches: np.ndarray, text: np.ndarray) -> np.ndarray:
    """(videos, texts) logits, as ``Backend.logits_from_features`` gives them: ``embeds`` (N, D)
    and ``patches`` (N, P, D) of N videos, ``text`` (Q, D). Float32 (float64 for float64 inputs:
    the tests' reference runs the same arithmetic exactly)."""
    parts = []
    for start in range(0, len(embeds), CHUNK):
        conditioned = conditioned_text(weights, patches[start : start + CHUNK], text)  # (N, Q, D), unit length
        video = _floating(embeds[start : start + CHUNK])
        video = video / np.linalg.norm(video, axis=-1, keepdims=True)
        parts.append(np.matmul(conditioned, video[:, :, None])[:, :, 0])
    if not parts:
        return np.zeros((0, len(text)), np.float32)
    cosines = np.concatenate(parts)
    return np.exp(np.asarray(weights.logit_scale, dtype=cosines.dtype)) * cosines


def conditioned_text(weights: HeadWeights, patches: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Each text conditioned on each video by the prompt generator, unit length: (N, Q, D)."""
    if weights.activation != "quick_gelu":  # every published X-CLIP checkpoint's
        raise UsageError(f"moment search supports X-CLIP's quick_gelu prompt generator, not {weights.activation!r}")
    w = weights.tensors
    text = _floating(text)
    # The prompt generator's LayerNorm of the patches, never written out (it cost as much as the
    # rest of the head): each patch is centred and scaled by its 1/std where it is used; the
    # LayerNorm's gain goes into the folded queries, and its shift, the same for every patch,
    # drops out of the attention scores and is added to their weighted mean.
    centred = patches.astype(np.promote_types(patches.dtype, np.float32))  # a copy, changed in place
    centred -= centred.mean(axis=-1, keepdims=True)  # (N, P, D)
    variance = np.matmul(centred[..., None, :], centred[..., :, None])[..., 0, 0] / centred.shape[-1]
    inverse_std = (1 / np.sqrt(variance + weights.vision_eps))[:, None, :]  # (N, 1, P)
    gain, shift = w["layernorm.weight"], w["layernorm.bias"]
    videos, texts, width = len(centred), len(text), text.shape[-1]
    heads = weights.heads
    size = width // heads
    x = text  # the texts' states: (Q, D) while they are the same for every video, then (N*Q, D)
    for layer in range(weights.layers):
        prefix = f"decoder.{layer}."
        query = _layer_norm(x, w[prefix + "norm1.weight"], w[prefix + "norm1.bias"], weights.text_eps)
        query = query @ w[prefix + "cross_attn.q_proj.weight"].T * size**-0.5
        # Each head's query taken back through W_k, then the LayerNorm's gain: (rows, H, D). (Never
        # a product of weights alone: every rounding stays in the arithmetic the tests simulate.)
        keys = w[prefix + "cross_attn.k_proj.weight"].reshape(heads, size, width)
        folded = np.matmul(query.reshape(len(query), heads, size).transpose(1, 0, 2), keys).transpose(1, 0, 2) * gain
        if layer == 0:  # the texts are the same for every video: one product over all patches
            scores = centred.reshape(-1, width) @ folded.reshape(texts * heads, width).T
            scores = scores.reshape(videos, -1, texts * heads).transpose(0, 2, 1)
        else:
            scores = np.matmul(folded.reshape(videos, texts * heads, width), centred.transpose(0, 2, 1))
        attention = _softmax(scores * inverse_std) * inverse_std  # (N, Q*H, P), over centred patches
        mixed = np.matmul(attention, centred) * gain + shift  # each head's attention-weighted patch mean
        values = w[prefix + "cross_attn.v_proj.weight"].reshape(heads, size, width)
        out = np.matmul(mixed.reshape(videos * texts, heads, width).transpose(1, 0, 2), values.transpose(0, 2, 1))
        out = out.transpose(1, 0, 2).copy().reshape(videos * texts, width)  # heads side by side
        if layer == 0:
            x = np.tile(x, (videos, 1))
        x = x + (out @ w[prefix + "cross_attn.proj.weight"].T + w[prefix + "cross_attn.proj.bias"])
        hidden = _layer_norm(x, w[prefix + "norm3.weight"], w[prefix + "norm3.bias"], weights.text_eps)
        hidden = _quick_gelu(hidden @ w[prefix + "mlp.0.weight"].T + w[prefix + "mlp.0.bias"])
        x = x + (hidden @ w[prefix + "mlp.3.weight"].T + w[prefix + "mlp.3.bias"])
    conditioned = (np.tile(text, (videos, 1)) + w["alpha"] * x).reshape(videos, texts, width)
    return conditioned / np.linalg.norm(conditioned, axis=-1, keepdims=True)


def _floating(x: np.ndarray) -> np.ndarray:
    """Float32 (float64 stays float64); an ndarray subclass stays one (the tests' rounding simulator)."""
    return x.astype(np.promote_types(x.dtype, np.float32), copy=False)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * weight + bias


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _quick_gelu(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.exp(-1.702 * x))

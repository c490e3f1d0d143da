"""The model runner: X-CLIP's forward split into a cached text side and a per-video side.

``XCLIPModel.forward`` runs the text encoder for every call, although its output depends only
on the prompts. Here the text side (encoder plus text projection) runs once per label set and
is cached in memory and on disk; per video only the vision encoder, the multi-frame
integration transformer, the video-conditioned prompt generator and the scaled cosine logits
run, using transformers' own modules, so the logits equal ``logits_per_video``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import text_cache
from .device import resolve_device
from .errors import UsageError
from .labels import LabelSet
from .loading import load_checkpoint
from .preprocess import PreprocessConfig

if TYPE_CHECKING:
    from transformers import XCLIPModel

FINGERPRINT_STRIDE = 61  # a prime, so the sample does not line up with rows of any width
TEXT_BATCH_SIZE = 64  # prompts per text-encoder call; groups of equal length need no padding
PRECISIONS = ("fp32", "bf16")


@dataclass
class XClipRunner:
    """A loaded X-CLIP checkpoint with its tokenizer and preprocessing settings."""

    model: XCLIPModel
    load_tokenizer: Callable[[], Any]  # called on first use: a warm text cache needs no tokenizer
    preprocess: PreprocessConfig
    model_id: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"  # "bf16": bfloat16 autocast, faster on CPUs with bf16 units, lossy
    # A digest of the tokenizer's files and versions: names cached text features without
    # tokenizing. None (a model built in memory): keys come from the token ids instead.
    tokenizer_identity: str | None = None
    text_encoder_calls: int = 0  # how often the text encoder ran (the cache avoids it)
    _tokenizer: Any = field(default=None, repr=False)
    _memory_cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _label_features: dict[LabelSet, torch.Tensor] = field(default_factory=dict, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    # Vision (by legacy flag) and head fingerprints: the ONNX cache key, index checks and auto's
    # "is it prepared?" each ask; the weights do not change under a loaded runner.
    _fingerprints: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def tokenizer(self) -> Any:
        """The checkpoint's tokenizer (loaded on first use: about 0.3 s for CLIP's)."""
        if self._tokenizer is None:
            self._tokenizer = self.load_tokenizer()
        return self._tokenizer

    @property
    def _config(self) -> Any:
        """The checkpoint's XCLIPConfig (its sub-configs are loosely typed in transformers)."""
        return self.model.config

    @property
    def image_size(self) -> int:
        """Side of the square frames the vision encoder takes."""
        return int(self._config.vision_config.image_size)

    @property
    def num_frames(self) -> int:
        """Frames per video the checkpoint was trained with (its vision config)."""
        return int(self._config.vision_config.num_frames)

    @classmethod
    def from_pretrained(cls, model_id: str, device: str = "auto", precision: str = "fp32") -> XClipRunner:
        """Load a hub id or a local ``save_pretrained`` folder. Never runs remote code."""
        if precision not in PRECISIONS:
            raise UsageError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        torch_device = resolve_device(device)
        loaded = load_checkpoint(model_id)
        loaded.model.to(torch_device).eval()
        return cls(
            model=loaded.model,
            load_tokenizer=loaded.load_tokenizer,
            preprocess=PreprocessConfig.from_image_processor(loaded.image_processor),
            model_id=model_id,
            device=torch_device,
            precision=precision,
            tokenizer_identity=loaded.tokenizer_identity,
            _tokenizer=loaded.tokenizer,
        )

    # --- text side -------------------------------------------------------------------------

    def label_text_features(self, labelset: LabelSet) -> torch.Tensor:
        """One text-projection vector per label, ensembling the label's prompts (L x D).

        Kept in memory per label set, so repeated calls skip even tokenising and hashing.
        """
        if labelset not in self._label_features:
            self._label_features[labelset] = self._ensembled_features(labelset)
        return self._label_features[labelset]

    def _ensembled_features(self, labelset: LabelSet) -> torch.Tensor:
        texts_per_label = labelset.texts_per_label()
        unique_texts = list(dict.fromkeys(text for texts in texts_per_label for text in texts))
        features = self.text_features(unique_texts)
        row = {text: index for index, text in enumerate(unique_texts)}
        return torch.stack(
            [ensemble_text_embeddings(features[[row[text] for text in texts]]) for texts in texts_per_label]
        )

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Text-encoder output after the projection, one row per text, from cache if possible."""
        if self.tokenizer_identity:  # named without tokenizing: a hit never loads the tokenizer
            prompts = {"tokenizer": self.tokenizer_identity, "max_length": self._max_length, "texts": list(texts)}
        else:
            prompts = {"token_ids": [self._tokenize(text) for text in texts]}
        key = text_cache.cache_key(self.fingerprint(), prompts)
        cached = self._memory_cache.get(key)
        if cached is None:
            array = text_cache.load(key, expected_rows=len(texts))
            if array is None:
                token_ids = prompts.get("token_ids")
                if not isinstance(token_ids, list):  # named by the tokenizer's files: tokenize now
                    token_ids = [self._tokenize(text) for text in texts]
                array = self._encode_texts(token_ids)
                text_cache.store(key, array)
            cached = torch.from_numpy(array).to(self.device)
            self._memory_cache[key] = cached
        return cached

    def fingerprint(self) -> str:
        """Identity of everything that shapes the text features: text config and weights.

        Every text-side tensor contributes its name, shape, exact sum and every
        ``FINGERPRINT_STRIDE``-th value: any changed checkpoint (fine-tuned, re-initialised, one
        edited weight) changes the hash, in well under a second for a base model instead of
        hashing 250 MB of bytes. Works for models built in memory too.
        """
        if self._fingerprint is None:
            model, config = self.model, self._config
            digest = hashlib.sha256(config.text_config.to_json_string().encode())
            digest.update(f"{config.projection_dim} {self.precision}".encode())
            tensors = [("text_projection.weight", model.text_projection.weight)]
            tensors += [(f"text_model.{name}", tensor) for name, tensor in model.text_model.state_dict().items()]
            self._fingerprint = _digest_tensors(digest, tensors)
        return self._fingerprint

    def vision_fingerprint(self, legacy: bool = False) -> str:
        """Identity of everything that shapes ``video_features``: vision weights, frames, preprocessing.

        Stored with an embedding index, so scoring it with another checkpoint is refused.
        ``legacy``: as xclip-cli 0.1.0 computed it (torch's threaded sums), to accept its indexes.
        """
        name = "vision-legacy" if legacy else "vision"
        if name not in self._fingerprints:
            model, config = self.model, self._config
            digest = hashlib.sha256(config.vision_config.to_json_string().encode())
            digest.update(f"{config.projection_dim} {self.precision} {self.preprocess!r}".encode())
            modules = ("vision_model", "visual_projection", "mit", "prompts_visual_layernorm")
            tensors = [("prompts_visual_projection", model.prompts_visual_projection)]
            for module in modules:
                tensors += [(f"{module}.{n}", t) for n, t in getattr(model, module).state_dict().items()]
            self._fingerprints[name] = _digest_tensors(digest, tensors, torch_sums=legacy)
        return self._fingerprints[name]

    def head_fingerprint(self) -> str:
        """Identity of X-CLIP's head (prompt generator and logit scale): with the vision
        fingerprint, what an exported per-video graph depends on."""
        if "head" not in self._fingerprints:
            digest = hashlib.sha256(f"{self._config.projection_dim} {self.precision}".encode())
            tensors = [("logit_scale", self.model.logit_scale)]
            tensors += [(f"prompts_generator.{n}", t) for n, t in self.model.prompts_generator.state_dict().items()]
            self._fingerprints["head"] = _digest_tensors(digest, tensors)
        return self._fingerprints["head"]

    @property
    def _max_length(self) -> int:
        return int(self._config.text_config.max_position_embeddings)

    def _tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, truncation=True, max_length=self._max_length)["input_ids"])

    @torch.inference_mode()
    def _encode_texts(self, token_ids: list[list[int]]) -> np.ndarray:
        """Run the text encoder, batching prompts of similar length to keep padding small."""
        self.text_encoder_calls += 1
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
        pad_id = self.tokenizer.pad_token_id or 0
        out = np.empty((len(token_ids), int(self.model.config.projection_dim)), dtype=np.float32)
        for start in range(0, len(order), TEXT_BATCH_SIZE):
            batch = order[start : start + TEXT_BATCH_SIZE]
            width = max(len(token_ids[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(token_ids[i])] = torch.tensor(token_ids[i])
                mask[row, : len(token_ids[i])] = 1
            with self._autocast():
                output = self.model.get_text_features(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                )
            out[batch] = output.pooler_output.float().cpu().numpy()
        return out

    def _autocast(self) -> Any:
        """bfloat16 autocast when asked for; a no-op context in full precision."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    # --- video side ------------------------------------------------------------------------

    @torch.inference_mode()
    def video_logits(self, pixel_values: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``logits_per_video`` (B x L) for videos (B x T x 3 x H x W) and cached text features."""
        return self.logits_from_features(self.video_features(pixel_values), text_features)

    @torch.inference_mode()
    def video_features(self, pixel_values: torch.Tensor) -> VideoFeatures:
        """What X-CLIP's head needs of each video (B x T x 3 x H x W): all the vision-side work."""
        model = self.model
        pixel_values = pixel_values.to(self.device, dtype=model.dtype)
        batch, frames, channels, height, width = pixel_values.shape
        with self._autocast():
            vision = model.vision_model(pixel_values=pixel_values.reshape(-1, channels, height, width))
            frame_embeds = model.visual_projection(vision.pooler_output).view(batch, frames, -1)
            video_embeds = model.mit(frame_embeds).pooler_output
            patches = model.prompts_visual_layernorm(vision.last_hidden_state[:, 1:, :])
            patches = patches @ model.prompts_visual_projection
            patches = patches.view(batch, frames, -1, video_embeds.shape[-1]).mean(dim=1)
        return VideoFeatures(embeds=video_embeds.float(), patches=patches.float())

    @torch.inference_mode()
    def logits_from_features(self, features: VideoFeatures, text_features: torch.Tensor) -> torch.Tensor:
        """X-CLIP's head: the prompt generator conditions the text on each video, then cosine x scale."""
        model = self.model
        embeds = features.embeds.to(self.device, dtype=model.dtype)
        patches = features.patches.to(self.device, dtype=model.dtype)
        with self._autocast():
            text = text_features.to(self.device, embeds.dtype).unsqueeze(0).expand(embeds.shape[0], -1, -1)
            text = text + model.prompts_generator(text, patches)
            video = embeds / embeds.norm(p=2, dim=-1, keepdim=True)
            text = text / text.norm(p=2, dim=-1, keepdim=True)
            logits = torch.einsum("bd,bkd->bk", video, model.logit_scale.exp() * text)
        return logits.float()


@dataclass(frozen=True)
class VideoFeatures:
    """Per video: the MIT video embedding (B x D) and the frame-averaged patch features the
    prompt generator attends to (B x P x D). Enough to score any text later (``xclip embed``)."""

    embeds: torch.Tensor
    patches: torch.Tensor

    def __len__(self) -> int:
        return int(self.embeds.shape[0])


def _digest_tensors(digest: Any, tensors: Sequence[tuple[str, torch.Tensor]], torch_sums: bool = False) -> str:
    """Add each tensor's name, shape, exact sum and a strided sample to ``digest``; the hex digest."""
    for name, tensor in tensors:
        values = tensor.detach().to("cpu", torch.float32).contiguous().numpy().reshape(-1)
        # The exact sum catches edits between the samples. numpy's single-threaded pairwise sum,
        # not torch's: torch's result depends on its thread count (a Ray worker's is 1).
        total = float(tensor.detach().double().sum()) if torch_sums else float(np.sum(values, dtype=np.float64))
        digest.update(f"{name}{tuple(tensor.shape)}{total!r}".encode())
        digest.update(values[::FINGERPRINT_STRIDE].tobytes())
    return digest.hexdigest()


def ensemble_text_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
    """Combine a label's prompt embeddings (N x D) into one vector.

    The unit-normalised embeddings are averaged and renormalised (CLIP's prompt ensembling),
    then scaled to the prompts' mean length: X-CLIP's prompt generator adds video-conditioned
    offsets to the unnormalised text features, so their length matters. With one prompt this
    returns the embedding unchanged.
    """
    if embeddings.shape[0] == 1:
        return embeddings[0]
    norms = embeddings.norm(p=2, dim=-1, keepdim=True)
    direction = (embeddings / norms).mean(dim=0)
    return direction / direction.norm(p=2) * norms.mean()

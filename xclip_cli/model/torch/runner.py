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

from xclip_cli.errors import UsageError
from xclip_cli.media.preprocess import PreprocessConfig
from xclip_cli.model.backend import VideoFeatures
from xclip_cli.model.device import resolve_device
from xclip_cli.model.head import HeadWeights
from xclip_cli.model.text import TextMethods, TextSide, length_batches
from xclip_cli.model.torch.loading import load_checkpoint

if TYPE_CHECKING:
    from transformers import XCLIPModel

FINGERPRINT_STRIDE = 61  # a prime, so the sample does not line up with rows of any width
PRECISIONS = ("fp32", "bf16")


@dataclass
class XClipRunner(TextMethods):
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
    _tokenizer: Any = field(default=None, repr=False)
    _text_side: TextSide | None = field(default=None, repr=False)
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
    def backend(self) -> str:
        return "torch"

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

    @property
    def text_side(self) -> TextSide:
        """The cached text side (its fingerprint hashes the text weights on first use)."""
        if self._text_side is None:
            self._text_side = TextSide(
                fingerprint=self.fingerprint(),
                max_length=self.max_length,
                tokenize=self._tokenize,
                encode=self._encode_texts,
                tokenizer_identity=self.tokenizer_identity,
            )
        return self._text_side

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

    def head_weights(self) -> HeadWeights:
        """The head's tensors in float32 numpy (``model.head``: moment search computes it there)."""
        config, model = self._config, self.model
        generator = model.prompts_generator.state_dict()
        tensors = {name: tensor.detach().to("cpu", torch.float32).numpy() for name, tensor in generator.items()}
        return HeadWeights(
            tensors,
            heads=int(config.prompt_num_attention_heads),
            layers=int(config.prompt_layers),
            activation=str(config.prompt_hidden_act),
            vision_eps=float(config.vision_config.layer_norm_eps),
            text_eps=float(config.text_config.layer_norm_eps),
            logit_scale=float(model.logit_scale.detach().float()),
        )

    @property
    def max_length(self) -> int:
        """The text encoder's positions: longer prompts are truncated."""
        return int(self._config.text_config.max_position_embeddings)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)

    def _tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"])

    @torch.inference_mode()
    def _encode_texts(self, token_ids: list[list[int]]) -> np.ndarray:
        """Run the text encoder on batches of prompts of similar length."""
        out = np.empty((len(token_ids), int(self._config.projection_dim)), dtype=np.float32)
        for rows, ids, mask in length_batches(token_ids, self.pad_token_id):
            with self._autocast():
                output = self.model.get_text_features(
                    input_ids=torch.from_numpy(ids).to(self.device),
                    attention_mask=torch.from_numpy(mask).to(self.device),
                )
            out[rows] = output.pooler_output.float().cpu().numpy()
        return out

    def _autocast(self) -> Any:
        """bfloat16 autocast when asked for; a no-op context in full precision."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    # --- video side ------------------------------------------------------------------------

    def video_logits(self, pixel_values: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        """``logits_per_video`` (B x L) for videos (B x T x 3 x H x W) and cached text features."""
        return self.logits_from_features(self.video_features(pixel_values), text_features)

    @torch.inference_mode()
    def video_features(self, pixel_values: np.ndarray) -> VideoFeatures:
        """What X-CLIP's head needs of each video (B x T x 3 x H x W): all the vision-side work."""
        embeds, patches = self.vision_side(torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32)))
        return VideoFeatures(embeds=embeds.cpu().numpy(), patches=patches.cpu().numpy())

    def vision_side(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The vision side in torch: (video embeddings, frame-averaged patch features), float32."""
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
        return video_embeds.float(), patches.float()

    @torch.inference_mode()
    def logits_from_features(self, features: VideoFeatures, text_features: np.ndarray) -> np.ndarray:
        """X-CLIP's head: the prompt generator conditions the text on each video, then cosine x scale."""
        embeds, patches, text = (
            torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
            for a in (features.embeds, features.patches, text_features)
        )
        return self.head(embeds, patches, text).cpu().numpy()

    def head(self, embeds: torch.Tensor, patches: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """X-CLIP's head in torch: (videos, texts) float32 logits."""
        model = self.model
        embeds = embeds.to(self.device, dtype=model.dtype)
        patches = patches.to(self.device, dtype=model.dtype)
        with self._autocast():
            text = text_features.to(self.device, embeds.dtype).unsqueeze(0).expand(embeds.shape[0], -1, -1)
            text = text + model.prompts_generator(text, patches)
            video = embeds / embeds.norm(p=2, dim=-1, keepdim=True)
            text = text / text.norm(p=2, dim=-1, keepdim=True)
            logits = torch.einsum("bd,bkd->bk", video, model.logit_scale.exp() * text)
        return logits.float()


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

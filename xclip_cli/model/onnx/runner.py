"""X-CLIP on ONNX Runtime, without torch or transformers: the fast CPU backend.

``OnnxRunner`` opens a folder that ``onnx_export.prepare`` wrote (``onnx_cache`` finds it):
the head graph loads at once, the vision graph too unless the run scores stored features, the
text encoder and the ``tokenizers`` tokenizer on a text-cache miss. Preprocessing, frame count
and identities come from the folder's manifest, which holds what transformers loaded when the
checkpoint was prepared.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from xclip_cli.errors import ModelLoadError
from xclip_cli.media.preprocess import PreprocessConfig
from xclip_cli.model.backend import VideoFeatures
from xclip_cli.model.head import HeadWeights
from xclip_cli.model.onnx.cache import HEAD, HEAD_WEIGHTS, TEXT, TOKENIZER, VISION, VISION_INT8, read_manifest
from xclip_cli.model.text import TextMethods, TextSide, length_batches

# A run that passes at most this many videos (times views) through the vision graph opens it
# without weight prepacking: prepacking costs about 0.35 s at open and saves about 0.06 s per
# video (base-patch32 fp32 on 2 cores: it pays after 6 videos, int8 after 5;
# python benchmarks/bench_onnx.py --load-only).
FEW_VIDEOS = 4


def session_options(threads: int | None = None, prepack: bool = True) -> Any:
    """ONNX Runtime's session settings of the engine (the benchmarks start from them too).

    ``prepack=False``: the weights of matrix products are not repacked for the CPU's kernels
    at open (``session.disable_prepacking``) but as each product runs: a session that opens in
    about a fifth of the time and runs each call about 1.2x slower (``FEW_VIDEOS``)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    # Idle pool threads sleep instead of spinning: decoding threads share the cores (measured:
    # the scan path 10-15% faster on 2 cores, the model alone no slower).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    return options


def open_session(path: Path, threads: int | None = None, prepack: bool = True) -> Any:
    import onnxruntime

    options = session_options(threads, prepack)
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise ModelLoadError(f"{path}: cannot load the prepared graph ({str(exc).splitlines()[0]})") from None


@dataclass
class OnnxRunner(TextMethods):
    """``Backend`` on ONNX Runtime, from a prepared folder: no torch, no transformers."""

    model_id: str
    folder: Path
    manifest: dict[str, Any]
    int8: bool = False  # the vision graph with int8 weights (lossy)
    threads: int | None = None  # ONNX Runtime's intra-op threads; None: one per physical core
    prepack: bool = True  # the vision graph's weights prepacked at open (session_options)
    _sessions: dict[str, Any] = field(default_factory=dict, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _text_side: TextSide | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls, folder: Path, model_id: str, int8: bool = False, threads: int | None = None, videos: int | None = None
    ) -> OnnxRunner:
        """Open a prepared folder (``find_prepared`` or ``onnx_export.prepare`` gives it).

        ``videos``: how many videos (times views) the run will pass through the vision graph,
        when the caller knows. The head loads now, and the vision graph too while a first video
        decodes: prepacked, unless the run has at most ``FEW_VIDEOS`` (a one-shot classify: head
        and vision then open in 0.09 s instead of 0.45 s). ``videos=0``, a run that scores stored
        features (search, classify from an index), loads it on first use, if ever. The text
        encoder loads on a text-cache miss."""
        manifest = read_manifest(folder)
        if manifest is None or (int8 and VISION_INT8 not in manifest["sizes"]):
            raise ModelLoadError(f"{folder}: not a whole prepared model; run `xclip models prepare {model_id}`")
        runner = cls(model_id, folder, manifest, int8, threads, prepack=videos is None or videos > FEW_VIDEOS)
        runner._session("head")
        if videos != 0:
            runner._session("vision")
        return runner

    def _session(self, name: str) -> Any:
        """The ONNX Runtime session of one graph (vision, head or text), opened on first use."""
        if name not in self._sessions:
            graph = {"vision": VISION_INT8 if self.int8 else VISION, "head": HEAD, "text": TEXT}[name]
            prepack = self.prepack or name != "vision"
            self._sessions[name] = open_session(self.folder / graph, self.threads, prepack)
        return self._sessions[name]

    # --- what the checkpoint is --------------------------------------------------------------

    @cached_property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.manifest["preprocess"])  # read per video: parsed once

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp32"

    @property
    def backend(self) -> str:
        return "onnx"

    @property
    def num_frames(self) -> int:
        return int(self.manifest["config"]["num_frames"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["config"]["image_size"])

    def fingerprint(self) -> str:
        """The text side's identity (the torch runner's, at fp32): names cached text features."""
        return str(self.manifest["identity"]["text"])

    def vision_fingerprint(self, legacy: bool = False) -> str:
        """The torch runner's at fp32, told apart for int8 features (an index never mixes them)."""
        fingerprint = str(self.manifest["identity"]["vision_legacy" if legacy else "vision"])
        return hashlib.sha256(f"{fingerprint} int8".encode()).hexdigest() if self.int8 else fingerprint

    # --- text side ---------------------------------------------------------------------------

    @property
    def text_side(self) -> TextSide:
        if self._text_side is None:
            config = self.manifest["config"]
            self._text_side = TextSide(
                fingerprint=self.fingerprint(),
                max_length=int(config["max_length"]),
                tokenize=self._tokenize,
                encode=self._encode_texts,
                tokenizer_identity=self.manifest["identity"]["tokenizer"],
            )
        return self._text_side

    def _tokenize(self, text: str) -> list[int]:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER))
            tokenizer.enable_truncation(int(self.manifest["config"]["max_length"]))
            tokenizer.no_padding()
            self._tokenizer = tokenizer
        return list(self._tokenizer.encode(text).ids)

    def _encode_texts(self, token_ids: list[list[int]]) -> np.ndarray:
        config = self.manifest["config"]
        out = np.empty((len(token_ids), int(config["projection_dim"])), dtype=np.float32)
        for rows, ids, mask in length_batches(token_ids, int(config["pad_token_id"])):
            (out[rows],) = self._session("text").run(None, {"input_ids": ids, "attention_mask": mask})
        return out

    # --- video side --------------------------------------------------------------------------

    def video_features(self, pixel_values: np.ndarray) -> VideoFeatures:
        pixels = np.ascontiguousarray(pixel_values, dtype=np.float32)
        embeds, patches = self._session("vision").run(None, {"pixel_values": pixels})
        return VideoFeatures(embeds, patches)

    def logits_from_features(self, features: VideoFeatures, text_features: np.ndarray) -> np.ndarray:
        inputs = {
            "embeds": np.ascontiguousarray(features.embeds, dtype=np.float32),
            "patches": np.ascontiguousarray(features.patches, dtype=np.float32),
            "text_features": np.ascontiguousarray(text_features, dtype=np.float32),
        }
        (logits,) = self._session("head").run(None, inputs)
        return np.asarray(logits)

    def head_weights(self) -> HeadWeights:
        return HeadWeights.load(self.folder / HEAD_WEIGHTS)

    def video_logits(self, pixel_values: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        return self.logits_from_features(self.video_features(pixel_values), text_features)

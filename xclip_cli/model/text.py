"""The text side both backends share: prompts -> cached text-encoder features -> label vectors.

Only the text encoder's output (after the projection) is cached, in memory and on disk
(``text_cache``): X-CLIP's final label vectors depend on the video. A backend supplies how to
tokenize and how to run its encoder; the cache keys do not depend on the backend, so a label
set encoded by torch is a warm cache for ONNX Runtime and back (both fp32, equal to ~1e-6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from xclip_cli.labels import LabelSet
from xclip_cli.model import text_cache

TEXT_BATCH_SIZE = 64  # prompts per encoder call; groups of equal length need no padding


@dataclass
class TextSide:
    """Text features of one checkpoint's text encoder, from cache when possible."""

    fingerprint: str  # identity of the text weights and config: names cache entries
    max_length: int  # the encoder's positions: longer prompts are truncated
    tokenize: Callable[[str], list[int]]  # loads the tokenizer on first use, not before
    encode: Callable[[list[list[int]]], np.ndarray]  # token ids -> (texts, D) float32
    # A digest of the tokenizer's files: names cached features without tokenizing (a warm
    # cache never loads the tokenizer). None: keys come from the token ids instead.
    tokenizer_identity: str | None = None
    encoder_calls: int = 0  # how often the encoder ran (the cache avoids it)
    _memory: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _labels: dict[LabelSet, np.ndarray] = field(default_factory=dict, repr=False)

    def label_features(self, labelset: LabelSet) -> np.ndarray:
        """One vector per label, ensembling the label's prompts (L x D); kept per label set."""
        if labelset not in self._labels:
            texts_per_label = labelset.texts_per_label()
            unique = list(dict.fromkeys(text for texts in texts_per_label for text in texts))
            features = self.features(unique)
            row = {text: index for index, text in enumerate(unique)}
            self._labels[labelset] = np.stack(
                [ensemble_text_embeddings(features[[row[text] for text in texts]]) for texts in texts_per_label]
            )
        return self._labels[labelset]

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """Encoder output after the projection, one row per text (texts x D)."""
        if self.tokenizer_identity:
            prompts: dict[str, object] = {
                "tokenizer": self.tokenizer_identity,
                "max_length": self.max_length,
                "texts": list(texts),
            }
        else:
            prompts = {"token_ids": [self.tokenize(text) for text in texts]}
        key = text_cache.cache_key(self.fingerprint, prompts)
        cached = self._memory.get(key)
        if cached is None:
            cached = text_cache.load(key, expected_rows=len(texts))
            if cached is None:
                token_ids = prompts.get("token_ids")
                if not isinstance(token_ids, list):  # named by the tokenizer's files: tokenize now
                    token_ids = [self.tokenize(text) for text in texts]
                self.encoder_calls += 1
                cached = np.ascontiguousarray(self.encode(token_ids), dtype=np.float32)
                text_cache.store(key, cached)
            self._memory[key] = cached
        return cached


class TextMethods:
    """The ``Backend`` text methods of a backend that keeps a ``TextSide`` (made on first use)."""

    _text_side: TextSide | None

    @property
    def text_side(self) -> TextSide:
        raise NotImplementedError

    @property
    def text_encoder_calls(self) -> int:
        """How often the text encoder ran (the cache avoids it)."""
        return 0 if self._text_side is None else self._text_side.encoder_calls

    def label_text_features(self, labelset: LabelSet) -> np.ndarray:
        """One vector per label, ensembling the label's prompts (L x D)."""
        return self.text_side.label_features(labelset)

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """Text-encoder output after the projection, one row per text, from cache if possible."""
        return self.text_side.features(texts)


def length_batches(
    token_ids: list[list[int]], pad_id: int, batch_size: int = TEXT_BATCH_SIZE
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """(rows, ids, attention mask) batches of prompts of similar length, to keep padding small."""
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(token_ids[i]) for i in rows)
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, i in enumerate(rows):
            ids[row, : len(token_ids[i])] = token_ids[i]
            mask[row, : len(token_ids[i])] = 1
        yield rows, ids, mask


def ensemble_text_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """Combine a label's prompt embeddings (N x D) into one vector.

    The unit-normalised embeddings are averaged and renormalised (CLIP's prompt ensembling),
    then scaled to the prompts' mean length: X-CLIP's prompt generator adds video-conditioned
    offsets to the unnormalised text features, so their length matters. With one prompt this
    returns the embedding unchanged.
    """
    if embeddings.shape[0] == 1:
        return embeddings[0]
    vectors = embeddings.astype(np.float64)  # float32 sums drift by ~1e-5 of the result
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    direction = (vectors / norms).mean(axis=0)
    return (direction / np.linalg.norm(direction) * norms.mean()).astype(np.float32)


__all__ = ["TEXT_BATCH_SIZE", "TextMethods", "TextSide", "ensemble_text_embeddings", "length_batches"]

"""Loading an X-CLIP checkpoint (a hub id or a save_pretrained folder) with quiet logs and
clear one-line errors: what ``XClipRunner.from_pretrained`` builds on.

The tokenizer is loaded only when needed (a warm text cache never needs it); its files are
digested instead, to name cached text features.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from xclip_cli.errors import ModelLoadError
from xclip_cli.model.checkpoints import local_folder

TOKENIZER_FILE_SUFFIXES = frozenset({".json", ".txt", ".model", ".tiktoken"})
VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")


@dataclass(frozen=True)
class _Checkpoint:
    """What ``from_pretrained`` gave: XCLIPProcessor's parts, the tokenizer left for later."""

    model: Any
    image_processor: Any
    load_tokenizer: Callable[[], Any]
    tokenizer_identity: str | None
    tokenizer: Any = None  # already loaded, when it had to be


def load_checkpoint(model_id: str) -> _Checkpoint:
    """``from_pretrained`` for the model and its processor, with quiet logs and clear errors.

    A hub id is first looked up in the local Hugging Face cache only, so a model downloaded
    once loads offline and without a network round trip. Otherwise one quick hub query
    decides whether downloading can work: huggingface_hub's per-file downloads retry for
    minutes when the network is down.
    """
    import huggingface_hub
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()
    folder = Path(model_id).expanduser()
    local = folder.is_dir()
    if not local and (model_id.startswith((".", "/", "~")) or folder.suffix or model_id.count("/") > 1):
        raise ModelLoadError(f"cannot load model from {model_id}: no such folder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("transformers").setLevel(logging.ERROR)
        if local:
            if not (folder / "config.json").is_file():
                raise ModelLoadError(
                    f"cannot load model from {model_id}: no config.json (not a save_pretrained folder)"
                )
            return _from_pretrained(str(folder), model_id, local_files_only=True)
        try:
            return _from_pretrained(model_id, model_id, local_files_only=True)
        except _NotCached:
            pass  # not (completely) in the cache: download
        _check_hub_reachable(model_id)
        with download_progress(sys.stderr.isatty()):
            return _from_pretrained(model_id, model_id, local_files_only=False)


@contextlib.contextmanager
def download_progress(shown: bool) -> Iterator[None]:
    """huggingface_hub's download bars while a checkpoint is fetched, on a terminal only
    (hundreds of MB without a sign of life look like a hang; in a log they are noise)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    (enable_progress_bars if shown else disable_progress_bars)()
    try:
        yield
    finally:
        (disable_progress_bars if was_disabled else enable_progress_bars)()


def _from_pretrained(source: str, model_id: str, local_files_only: bool) -> _Checkpoint:
    from transformers import AutoConfig, AutoImageProcessor, XCLIPModel

    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
        if config.model_type != "xclip":
            raise ModelLoadError(f"cannot load model {model_id}: it is a {config.model_type!r} model, not X-CLIP")
        # What XCLIPProcessor.from_pretrained loads, part by part (transformers' ProcessorMixin:
        # AutoImageProcessor and AutoTokenizer on the same source), so the tokenizer can wait.
        image_processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_files_only)
        loaded: Any = XCLIPModel.from_pretrained(  # (model, info) with output_loading_info
            source, dtype=torch.float32, local_files_only=local_files_only, output_loading_info=True
        )
        model, info = loaded
    except pickle.UnpicklingError:
        # torch.load(weights_only=True) met a pickle that is more than tensors: never run it.
        raise ModelLoadError(
            f"cannot load model {model_id}: its pickled weights hold more than tensors and could run code; "
            "refusing to load them (convert the checkpoint to safetensors from a trusted copy)"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        if local_files_only and source == model_id:
            raise _NotCached from None
        raise ModelLoadError(f"cannot load model {model_id}: {_first_line(exc)}") from None
    # transformers only warns (and we silence it) when weights are missing: refuse a model
    # that would run with random layers.
    problems = {kind: info.get(kind) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {kind: keys for kind, keys in problems.items() if keys}
    if problems:
        kind, keys = next(iter(problems.items()))
        names = sorted(str(key[0] if isinstance(key, tuple) else key) for key in keys)
        raise ModelLoadError(
            f"cannot load model {model_id}: incomplete or mismatched weights "
            f"({len(keys)} {kind.replace('_', ' ')}, e.g. {names[0]})"
        )
    folder = local_folder(source)  # after loading: in the hub cache if it came from there
    load_tokenizer = partial(_load_tokenizer, source, model_id, local_files_only)
    tokenizer = None
    if folder is None or not _has_vocabulary(folder):
        # No files to name the cache by, or not downloaded yet (a hub model's first run): load it
        # now, which fetches them, rather than name the cache by an incomplete set of files.
        tokenizer = load_tokenizer()
        if folder is not None and not _has_vocabulary(folder):
            # transformers builds an empty-vocabulary tokenizer rather than fail: every prompt
            # would become unknown tokens and every label score alike.
            raise ModelLoadError(
                f"cannot load the tokenizer of {model_id}: no vocabulary file "
                f"({' or '.join(VOCABULARY_FILES)}) in {folder}"
            )
    identity = None if folder is None else _tokenizer_identity(folder)
    return _Checkpoint(model, image_processor, load_tokenizer, identity, tokenizer)


def _has_vocabulary(folder: Path) -> bool:
    return any((folder / name).is_file() for name in VOCABULARY_FILES)


def _load_tokenizer(source: str, model_id: str, local_files_only: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    except Exception as exc:  # tokenizers' Rust errors are plain Exceptions: any is a load failure
        raise ModelLoadError(f"cannot load the tokenizer of {model_id}: {_first_line(exc)}") from None


def _tokenizer_identity(folder: Path) -> str:
    """A digest of every small text file of the checkpoint (tokenizer.json, vocab, merges,
    configs) and of the libraries that tokenize: changes whenever tokenization could."""
    import transformers

    digest = hashlib.sha256(f"transformers {transformers.__version__}".encode())
    try:
        import tokenizers

        digest.update(f" tokenizers {tokenizers.__version__}".encode())
    except ImportError:
        pass
    for path in sorted(folder.iterdir()):
        if path.suffix in TOKENIZER_FILE_SUFFIXES and path.is_file():
            digest.update(f"\n{path.name}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class _NotCached(Exception):
    """A hub id whose files are not (all) in the local cache."""


def _check_hub_reachable(model_id: str) -> None:
    """Fail fast, with what to do, when the hub id does not exist or cannot be reached."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    from xclip_cli.model.checkpoints import close_checkpoint

    meant = close_checkpoint(model_id)
    hint = f" (did you mean {meant}? `xclip models` lists the published checkpoints)" if meant else ""
    try:
        huggingface_hub.snapshot_download(model_id, allow_patterns=["config.json"])
    except GatedRepoError:
        raise ModelLoadError(
            f"cannot load model {model_id}: access is restricted; log in with `hf auth login`{hint}"
        ) from None
    except RepositoryNotFoundError:
        raise ModelLoadError(f"cannot load model {model_id}: no such model on the Hugging Face hub{hint}") from None
    except Exception:
        if meant:  # most likely a typo: say so rather than how to download the misspelt id
            raise ModelLoadError(
                f"cannot load model {model_id}: not in the local Hugging Face cache and the hub cannot be reached{hint}"
            ) from None
        raise ModelLoadError(
            f"cannot load model {model_id}: it is not in the local Hugging Face cache and the hub "
            f"cannot be reached. Download it once where there is network (`hf download {model_id}`) "
            "and copy the Hugging Face cache, or pass a folder saved with save_pretrained: --model PATH"
        ) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

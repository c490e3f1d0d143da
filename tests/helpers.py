"""Test helpers: tiny X-CLIP checkpoints and synthetic videos, built on the fly."""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from typer.testing import CliRunner

DATA = Path(__file__).parent / "data"
TOKENIZER_DIR = DATA / "clip_tokenizer"
VIDEOS = DATA / "videos"
README = Path(__file__).parent.parent / "README.md"
IMAGE_SIZE = 30  # transformers' own X-CLIP tests use 30x30 images with 2x2 patches
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# The label sets the tests share, one name each: lists for the library, text for --labels.
LABELS = ["cooking", "dancing", "skateboarding", "playing the violin", "walking the dog"]
LABELS_TEXT = "cooking, dancing, skateboarding"
LABELS_SHORT_TEXT = "cooking, dancing, surfing"
LABELS_SURFING_TEXT = "cooking, dancing, skateboarding, surfing"
LABELS_JUGGLING_TEXT = "cooking, dancing, skateboarding, juggling, surfing"
COLOURS_TEXT = "red, green, blue, yellow, white, black, cyan, magenta"  # for clips of flat colours
# Labels a cue format must survive: markup, an arrow, FFMETADATA's specials, a newline, non-ASCII.
MARKUP_LABELS = ("cooking", "<b>tom & jerry</b>", "a --> b", "x=1; #2 \\ y", "two\nlines", "café 動画")


def tiny_config(num_frames: int = 8, seed_tag: int = 0):
    """A small X-CLIP config with the real CLIP vocabulary size."""
    from transformers import XCLIPConfig

    text = {
        "vocab_size": 49408,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
    }
    vision = {
        "image_size": IMAGE_SIZE,
        "patch_size": 2,
        "num_frames": num_frames,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "mit_hidden_size": 64,
        "mit_intermediate_size": 128,
        "mit_num_hidden_layers": 1,
        "mit_num_attention_heads": 4,
    }
    return XCLIPConfig(text_config=text, vision_config=vision, projection_dim=64, prompt_layers=2)


def condition_prompt_generator(model: Any) -> None:
    """Scale the prompt generator's Linear weights by fan_in^-1/2 (in place): unit gain, the scale
    transformers gives every other layer. Every test checkpoint, tiny or full-size, is built so.

    transformers draws these weights with std 1.0 (``initializer_factor``), so each Linear
    multiplies its input's size by sqrt(fan_in) (8 to 45 here): the prompt generator's attention
    logits and output reach the hundreds against text features of ~1 to 4, and float32 rounding
    of its inputs moves the video logits ~1000x more than it would in a trained checkpoint,
    whoever computes them (torch, ONNX Runtime, the same code with another thread count). The
    tests derive their tolerances from float32's arithmetic (``float32_rounding_bound``): on such
    a model the bound is ~20x larger (tiny, 5 labels, 3 random videos: 3.7e-3 against 1.9e-4
    scaled), near the 1e-2 logit errors that real bugs make. Scaled, random weights test the
    arithmetic instead of amplifying its rounding.

    Its LayerNorms get random gains (1 ± ~0.2) and shifts (± ~0.2): transformers starts them at
    1 and 0, which would leave the code that applies them (the search head folds them into
    other products) untested.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.prompts_generator.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(module.in_features**-0.5)
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(0.2 * torch.randn(module.weight.shape, generator=generator))
                module.bias.add_(0.2 * torch.randn(module.bias.shape, generator=generator))


def save_tiny_checkpoint(
    folder: Path,
    seed: int = 0,
    num_frames: int = 8,
    legacy_preprocessor: bool = False,
    resample: int = 2,
) -> Path:
    """Save a random tiny X-CLIP with a real CLIP tokenizer and a VideoMAE processor config.

    ``legacy_preprocessor`` writes the hub's ``preprocessor_config.json`` layout instead of
    the ``processor_config.json`` that transformers 5 saves.
    """
    import torch
    from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPModel, XCLIPProcessor

    torch.manual_seed(seed)
    model = XCLIPModel(tiny_config(num_frames)).eval()
    # A larger logit scale than the init value makes probabilities less flat, so
    # differences would show.
    with torch.no_grad():
        model.logit_scale.fill_(4.0)
    condition_prompt_generator(model)
    model.save_pretrained(folder)
    tokenizer = CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"))
    if legacy_preprocessor:
        tokenizer.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(
            json.dumps(
                {
                    "crop_size": IMAGE_SIZE,
                    "do_center_crop": True,
                    "do_normalize": True,
                    "do_resize": True,
                    "feature_extractor_type": "VideoMAEFeatureExtractor",
                    "image_mean": list(MEAN),
                    "image_std": list(STD),
                    "processor_class": "XCLIPProcessor",
                    "resample": resample,
                    "size": IMAGE_SIZE,
                }
            )
        )
    else:
        image_processor = VideoMAEImageProcessor(
            size={"shortest_edge": IMAGE_SIZE},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            image_mean=list(MEAN),
            image_std=list(STD),
            resample=resample,
        )
        XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_full_size_checkpoint(folder: Path) -> Path:
    """XCLIPConfig() (the base-patch32 shape), random weights (the prompt generator conditioned as
    in the tiny ones: ``condition_prompt_generator``), CLIP's tokenizer, VideoMAE's processor."""
    import torch
    from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    torch.manual_seed(0)
    model = XCLIPModel(XCLIPConfig())
    condition_prompt_generator(model)
    model.save_pretrained(folder)
    tokenizer = CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"))
    XCLIPProcessor(image_processor=VideoMAEImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_video(
    path: Path,
    num_frames: int = 24,
    size: tuple[int, int] = (64, 48),
    rate: int = 12,
    codec: str = "libx264",
    gop: int = 6,
    pattern: str = "moving",
    options: dict[str, str] | None = None,
) -> Path:
    """Write a small synthetic video whose every frame is different (frame number encoded).

    Frames carry their index in the red channel of a block, so tests can tell which frame
    the decoder returned.
    """
    if options is None and codec == "libx264":
        options = {"g": str(gop), "crf": "10", "bf": "2"}
    frames = [frame_pixels(index, *size, pattern) for index in range(num_frames)]
    encode_video(path, frames, codec=codec, rate=rate, options=options)
    return path


def encode_video(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rate: int = 12,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    pts: list[int] | None = None,
    rotation: int = 0,
    fmt: str | None = None,
) -> Path:
    """Encode RGB frames with any codec, pixel format, timestamps (in 1/rate s) and rotation:
    the one PyAV encoding loop of the tests."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = Fraction(1, rate)
        if options:
            stream.options = options
        if rotation:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index if pts is None else pts[index]
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_pixels(index: int, width: int, height: int, pattern: str = "moving") -> np.ndarray:
    """The RGB picture of frame ``index``: a flat colour code plus a moving bar."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    # The frame number in steps of 10, readable after lossy coding (up to 625 frames).
    image[..., 0] = (index % 25) * 10
    image[..., 1] = 80
    image[..., 2] = (index // 25) * 10
    if pattern == "moving":
        x = (index * 3) % max(1, width - 8)
        image[:, x : x + 8, :] = 255
    return image


def frame_number(rgb: np.ndarray) -> int:
    """Recover the frame index that ``frame_pixels`` encoded (from a bar-free column block)."""
    height, _width = rgb.shape[:2]
    red, blue = (float(np.median(rgb[: height // 4, :, channel])) for channel in (0, 2))
    return round(red / 10) + 25 * round(blue / 10)


def decode_all(path: Path) -> list[np.ndarray]:
    """The naive reference decoder: every frame of the first video stream, in order, as RGB."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def invoke(args: list[str], input: str | None = None, env: dict[str, str] | None = None) -> Any:
    """The ``xclip`` command run in-process (typer's CliRunner), stdout and stderr apart."""
    from xclip_cli.cli import app

    return CliRunner().invoke(app, args, input=input, env=env)


def need_program(name: str, package: str | None = None) -> str:
    """A real program a test drives (ffmpeg, jq): its path. `.ci/run` installs it, so CI fails
    without it; elsewhere the test skips, saying why."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run installs it")
        pytest.skip(f"{name} is not installed here (sudo apt install {package or name}); CI runs this test")
    return path


def readme_lines(start: str) -> list[str]:
    """The lines of the README and docs/ that begin with ``start``, each once (their examples, run
    by tests so they cannot rot)."""
    pages = [README, *sorted((README.parent / "docs").glob("*.md"))]
    lines = (line for page in pages for line in page.read_text(encoding="utf-8").splitlines())
    return list(dict.fromkeys(line for line in lines if line.startswith(start)))


# --- equivalence with transformers: float64 truth and float32's rounding, simulated -----------
#
# The reference for correctness is transformers itself. A test holds a float32 forward (ours on
# torch or ONNX Runtime) to transformers' float64 forward, or to transformers' float32 forward,
# within a bound derived from float32's arithmetic for that model and those inputs, never within
# a number measured on one machine: ``float32_rounding_bound`` against float64; twice it between
# two float32 forwards (each is within it of the float64 one: the triangle inequality);
# ``probability_tolerance`` for probabilities.

UNIT_ROUNDOFF = 2.0**-24  # float32: every rounding is within a relative 2^-24
ELEMENTWISE_ULPS = 4  # vectorised exp, erf, tanh, sigmoid, rsqrt: within a few ulps, any CPU
# The bound over one simulated draw of float32's rounding errors. The draw puts an error at the
# worst-case size on every operation at once (real kernels stay ~100x below it); 3 covers
# unlucky signs and the spread of a single draw, and keeps a bug's 1e-3 in sight.
ROUNDING_SAFETY = 3


def pixel_rounding_bound(mean: Sequence[float], std: Sequence[float], rescale: float = 1 / 255) -> float:
    """How far our preprocessing's float32 pixels may be from transformers' PIL backend's, for the
    same uint8 pixels (Pillow's resize and the crop are the same integer arithmetic on both).

    Ours computes x·(r/σ) − μ/σ with r, μ, σ rounded to float32: within u·(4·|x·r/σ| + 3·|μ/σ| +
    |x·r − μ|/σ) of the exact value. transformers' computes (float32(x·r) − μ)/σ: within
    u·(|x·r| + |μ| + 3·|x·r − μ|)/σ. Each is a handful of IEEE additions, multiplications and
    divisions, each correctly rounded: the same on any x86 CPU, with SIMD or without, and numpy
    never fuses them into FMAs. The sum over x·r in [0, 255·r] is the bound (2.4e-6 for
    ImageNet's mean and std; a wrong resize, crop or channel order moves pixels by 1e-2 and more).
    """
    worst = 0.0
    for mu, sigma in zip(mean, std, strict=True):
        top = 255 * rescale  # the largest x·r
        spread = max(abs(top - mu), abs(mu))  # the largest |x·r − μ|
        ours = (4 * top + 3 * abs(mu) + spread) / sigma
        theirs = (top + abs(mu) + 3 * spread) / sigma
        worst = max(worst, ours + theirs)
    return UNIT_ROUNDOFF * worst


PIXEL_ROUNDING = pixel_rounding_bound(MEAN, STD)  # the test checkpoints' normalisation (ImageNet's)


def random_pixels(videos: int, runner: Any, seed: int = 0) -> np.ndarray:
    """Standard-normal model inputs (videos x T x 3 x H x W, float32): the scale of normalised pixels."""
    size = int(runner.model.config.vision_config.image_size)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((videos, runner.num_frames, 3, size, size), dtype=np.float32)


def reference_logits(
    folder: Path, texts: list[str], pixel_values: np.ndarray, texts_per_label: list[list[str]] | None = None
) -> np.ndarray:
    """transformers' float32 ``logits_per_video``: XCLIPProcessor's tokenizer, then XCLIPModel.

    ``texts_per_label``: each label's text features are the ensemble (``ensemble_text_embeddings``)
    of ``get_text_features`` over its prompts, put in place of the text projection's output.
    """
    return _transformers_logits(folder, texts, pixel_values, texts_per_label)


def float64_logits(
    folder: Path,
    texts: list[str],
    pixel_values: np.ndarray,
    rounding_seed: int | None = None,
    texts_per_label: list[list[str]] | None = None,
) -> Any:
    """``reference_logits`` computed in float64 (exact to ~1e-16 for our purpose; ensembles are
    float32 in both, as in every float32 forward).

    ``rounding_seed``: also add, to the result of every floating-point operation, a random-sign
    error of the size float32 may make there (``simulated_float32``): the float64 output change
    this causes estimates how far any float32 forward can be from the exact one.
    """
    return _transformers_logits(folder, texts, pixel_values, texts_per_label, double=True, rounding_seed=rounding_seed)


def _transformers_logits(
    folder: Path,
    texts: list[str],
    pixel_values: np.ndarray,
    texts_per_label: list[list[str]] | None,
    double: bool = False,
    rounding_seed: int | None = None,
) -> Any:
    import contextlib

    import torch

    from xclip_cli.model.text import ensemble_text_embeddings

    tokenizer, model = _loaded(str(folder), _stamp(folder), double)
    dtype = model.dtype
    mode = contextlib.nullcontext() if rounding_seed is None else simulated_float32(rounding_seed)
    with torch.no_grad(), mode:
        hooks = []
        if texts_per_label is not None:
            ensembles = []
            for prompts in texts_per_label:
                inputs = tokenizer(prompts, padding=True, return_tensors="pt")
                features = model.get_text_features(**inputs).pooler_output.numpy()
                ensembles.append(ensemble_text_embeddings(features))
            replacement = torch.from_numpy(np.stack(ensembles)).to(dtype)
            hooks.append(model.text_projection.register_forward_hook(lambda module, args, output: replacement))
        inputs = tokenizer(texts, padding=True, return_tensors="pt")
        try:
            return model(**inputs, pixel_values=torch.from_numpy(pixel_values).to(dtype)).logits_per_video.numpy()
        finally:
            for hook in hooks:
                hook.remove()


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """The checkpoint folder's files as they are now: a test that edits weights gets them anew."""
    return tuple(sorted((path.name, path.stat().st_mtime_ns, path.stat().st_size) for path in Path(folder).iterdir()))


@functools.lru_cache(maxsize=4)
def _loaded(folder: str, stamp: tuple[tuple[str, int, int], ...], double: bool) -> tuple[Any, Any]:
    """transformers' tokenizer (XCLIPProcessor's) and XCLIPModel, in float32 or float64, loaded once
    per checkpoint as it is on disk (``stamp``). Nothing here changes the model."""
    import torch
    from transformers import XCLIPModel, XCLIPProcessor

    model = XCLIPModel.from_pretrained(folder).to(torch.float64 if double else torch.float32).eval()
    return XCLIPProcessor.from_pretrained(folder).tokenizer, model


def float64_text_features(folder: Path, token_ids: list[list[int]], rounding_seed: int | None = None) -> Any:
    """transformers' ``get_text_features`` in float64 for prompts' token ids (texts x D), padded and
    masked (the causal text encoder never looks past a prompt's end token); ``rounding_seed`` as in
    ``float64_logits``."""
    import contextlib

    import torch

    _, model = _loaded(str(folder), _stamp(folder), True)
    width = max(len(ids) for ids in token_ids)
    ids = torch.tensor([row + [0] * (width - len(row)) for row in token_ids])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in token_ids])
    mode = contextlib.nullcontext() if rounding_seed is None else simulated_float32(rounding_seed)
    with torch.no_grad(), mode:
        return model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output.numpy()


def float32_rounding_bound(
    folder: Path,
    texts: list[str],
    pixel_values: np.ndarray,
    exact: np.ndarray | None = None,
    texts_per_label: list[list[str]] | None = None,
) -> float:
    """How far any float32 forward may be from the float64 one (``exact``, computed when not given):
    ROUNDING_SAFETY times the float64 change that float32's worst-case rounding errors, one at
    every operation with random signs, cause.

    It holds on any x86 CPU because each operation's error bound does not depend on summation
    order, blocking, FMA use or thread count (``simulated_float32``). Two float32 forwards of the
    same inputs (ours and transformers', torch and ONNX Runtime, batched and one at a time) are
    each within it of the float64 one, so within twice it of each other.
    """
    if exact is None:
        exact = float64_logits(folder, texts, pixel_values, texts_per_label=texts_per_label)
    simulated = float64_logits(folder, texts, pixel_values, rounding_seed=0, texts_per_label=texts_per_label)
    return ROUNDING_SAFETY * float(np.abs(simulated - exact).max())


def text_rounding_bound(folder: Path, token_ids_per_label: list[list[list[int]]]) -> float:
    """``float32_rounding_bound`` for label features (what the text cache holds): each label's
    prompts (token ids) through the text encoder and the projection, ensembled as both backends
    do (``ensemble_text_embeddings``)."""
    from xclip_cli.model.text import ensemble_text_embeddings

    token_ids = [ids for prompts in token_ids_per_label for ids in prompts]
    exact, simulated = (float64_text_features(folder, token_ids, seed) for seed in (None, 0))
    starts = np.cumsum([0] + [len(prompts) for prompts in token_ids_per_label])
    error = max(
        np.abs(ensemble_text_embeddings(simulated[a:b]) - ensemble_text_embeddings(exact[a:b])).max()
        for a, b in itertools.pairwise(starts)
    )
    return ROUNDING_SAFETY * float(error)


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float64: the tests' own, not the code's under test."""
    shifted = np.asarray(logits, dtype=np.float64)
    exp = np.exp(shifted - shifted.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def softmax_rounding(logits: np.ndarray) -> float:
    """A relative bound on a float32 softmax's own rounding over ``logits``' last axis, to first
    order in u, for any summation order: the shift z − max z (u·2·max|z| absolute, so relative
    after exp), exp (ELEMENTWISE_ULPS·u) in each term and hence in the sum, the sum of k positive
    terms ((k−1)·u, Higham's bound for any order), the division (u)."""
    k = logits.shape[-1]
    return UNIT_ROUNDOFF * (2 * (2 * float(np.abs(logits).max()) + ELEMENTWISE_ULPS) + k)


def probability_tolerance(probabilities: np.ndarray, logits: np.ndarray, logit_bound: float) -> np.ndarray:
    """How far probabilities may be from ``probabilities`` (a softmax of ``logits``, float32 or
    float64), element by element, when they are a softmax of logits within ``logit_bound`` of
    ``logits``: a logit change dz moves the numerator and the normalising sum each by a factor
    within exp(±max|dz|), so each probability by a factor within exp(±2·max|dz|); each side's
    own rounding (``softmax_rounding``) adds to the exponent. A mean over views keeps the factor."""
    return np.asarray(probabilities, dtype=np.float64) * np.expm1(2 * (logit_bound + softmax_rounding(logits)))


def assert_within_float32_rounding(ours: np.ndarray, reference: np.ndarray, bound: float) -> None:
    """Float32 logits within ``bound`` of ``reference`` (float64 or float32), and so their
    probabilities within ``probability_tolerance``."""
    assert ours.shape == reference.shape and ours.dtype == np.float32
    error = np.abs(ours.astype(np.float64) - reference).max()
    assert error <= bound, f"logits {error:.3g} off the reference, float32 rounding allows {bound:.3g}"
    ours_p, reference_p = softmax64(ours), softmax64(reference)
    assert np.all(np.abs(ours_p - reference_p) <= probability_tolerance(reference_p, reference, bound)), "probabilities"


def _simulated_float32_class() -> type:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    elementwise = {
        aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.add.Scalar, aten.mul.Scalar,
        aten.div.Scalar, aten.exp.default, aten.sigmoid.default, aten.gelu.default, aten.tanh.default,
        aten.rsqrt.default, aten.sqrt.default, aten.pow.Tensor_Scalar, aten.reciprocal.default,
    }  # fmt: skip

    class SimulatedFloat32(TorchDispatchMode):
        """Float64 arithmetic plus, on each operation's result, a random-sign error at float32's bound.

        The bounds hold for any summation order, blocking, FMA use and thread split, hence for
        every kernel of every x86 CPU (Higham and Mary's probabilistic bound): a product or sum of
        inner length k is within sqrt(k)·u·Σ|terms| (the |A|·|B| product), an elementwise result
        within ELEMENTWISE_ULPS·u of itself, a layer norm within sqrt(n)·u of |x|'s mean over σ,
        a softmax within u·(2·max|x| + sqrt(k)) of itself (attention is decomposed into these).
        """

        def __init__(self, seed: int) -> None:
            super().__init__()
            self.generator = torch.Generator().manual_seed(seed)
            self.ops: set[str] = set()  # every float64 operation seen: what the simulation covered

        def _noisy(self, value: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
            signs = torch.randint(0, 2, value.shape, generator=self.generator, dtype=torch.float64).mul_(2).sub_(1)
            size = torch.nan_to_num(size, nan=0.0, posinf=0.0, neginf=0.0)  # masks stay -inf
            return torch.addcmul(value, signs, size, value=UNIT_ROUNDOFF)

        def _attention(self, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
            """Scaled dot-product attention decomposed (scores, softmax, weighted sum), each step noisy;
            the kernel's second output (logsumexp, which only a backward pass reads) as zeros."""
            query, key, value = args[:3]
            scale = kwargs.get("scale") or query.shape[-1] ** -0.5
            # Scaled on the (L x E) side, not the (L x L) one: the same values to ~1e-16, fewer passes.
            magnitude = (query.abs() * (scale * query.shape[-1] ** 0.5)) @ key.abs().transpose(-1, -2)
            scores = self._noisy((query * scale) @ key.transpose(-1, -2), magnitude)
            largest = torch.maximum(scores.amax(dim=-1, keepdim=True), -scores.amin(dim=-1, keepdim=True))
            spread = 2 * largest + key.shape[-2] ** 0.5
            if kwargs.get("attn_mask") is not None:
                scores = scores + kwargs["attn_mask"]
            if args[4] if len(args) > 4 else kwargs.get("is_causal", False):
                causal = torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1)
                scores = scores.masked_fill(causal, -torch.inf)
            weights = scores.softmax(dim=-1)
            weights = self._noisy(weights, weights * spread)
            output = self._noisy(weights @ value, key.shape[-2] ** 0.5 * (weights @ value.abs()))
            return output, torch.zeros(scores.shape[:-1], dtype=scores.dtype)  # logsumexp: for gradients only

        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            if func is aten._scaled_dot_product_flash_attention_for_cpu.default and _is_float64(args[0]):
                self.ops.add(str(func))
                return self._attention(args, kwargs)  # not run twice: the kernel's own result is unused
            out = func(*args, **kwargs)
            if not isinstance(out, torch.Tensor | tuple) or not _is_float64(out):
                return out
            self.ops.add(str(func))
            if func in (aten.mm.default, aten.bmm.default):
                a, b = args[0], args[1]
                return self._noisy(out, a.shape[-1] ** 0.5 * func(a.abs(), b.abs()))
            if func in (aten.addmm.default, aten.baddbmm.default):
                bias, a, b = args[0], args[1], args[2]
                return self._noisy(
                    out, (a.shape[-1] + 1) ** 0.5 * (bias.abs() + func(bias.abs() * 0, a.abs(), b.abs()))
                )
            if func is aten.convolution.default:
                x, w = args[0], args[1]
                size = func(x.abs(), w.abs(), None, *args[3:])
                return self._noisy(out, w[0].numel() ** 0.5 * size)
            if func is aten.native_layer_norm.default:
                x, shape, weight = args[0], args[1], args[2]
                y, mean, rstd = out
                n = int(np.prod(shape))
                gain = 1.0 if weight is None else weight.abs()
                size = n**0.5 * (y.abs() + gain * x.abs().mean(dim=-1, keepdim=True) * rstd)
                return (self._noisy(y, size), mean, rstd)
            if func is aten._softmax.default:
                x, dim = args[0], args[1]
                spread = 2 * x.abs().amax(dim=dim, keepdim=True) + x.shape[dim] ** 0.5
                return self._noisy(out, out.abs() * spread)
            if func in (aten.sum.dim_IntList, aten.mean.dim):
                x, dims = args[0], args[1]
                k = int(np.prod([x.shape[d] for d in dims])) if dims else x.numel()
                return self._noisy(out, k**0.5 * func(x.abs(), *args[1:], **kwargs))
            if func is aten.linalg_vector_norm.default:
                dims = args[2] if len(args) > 2 else kwargs.get("dim")
                k = int(np.prod([args[0].shape[d] for d in dims])) if dims else args[0].numel()
                return self._noisy(out, k**0.5 * out.abs())
            if func in elementwise:
                return self._noisy(out, ELEMENTWISE_ULPS * out.abs())
            return out

    return SimulatedFloat32


def _is_float64(out: Any) -> bool:
    import torch

    first = out[0] if isinstance(out, tuple) else out
    return isinstance(first, torch.Tensor) and first.dtype == torch.float64


def simulated_float32(seed: int) -> Any:
    """A float32-rounding simulator for float64 forwards (the class is built on first use: torch
    is imported lazily here)."""
    return _simulated_float32_class()(seed)


def paused_mid_scan(command: list[str], out: Path, after: int, total: int, attempts: int = 3) -> Any:
    """A scan subprocess paused (SIGSTOP) with at least ``after`` and fewer than ``total`` rows
    in ``out``: the state the interrupt tests need, whatever the machine's load.

    Rows are polled, then the scan is stopped; on a loaded machine this test's process may be
    held off the CPU between the poll and the stop while the scan writes its last rows, so the
    row count is checked again once it is stopped, and the scan started afresh if it got to the
    end (at most ``attempts`` times, then the test fails: it never passes without the case)."""
    import signal
    import subprocess
    import time

    for _ in range(attempts):
        out.unlink(missing_ok=True)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=interruptible)
        deadline = time.monotonic() + 120
        while not out.exists() or out.read_text(encoding="utf-8").count("\n") < after + 1:
            assert process.poll() is None, "the scan ended before it wrote the rows waited for"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGSTOP)
        if process.poll() is None and out.read_text(encoding="utf-8").count("\n") < total + 1:
            return process
        process.kill()
        process.wait()
    raise AssertionError(f"the scan finished before it could be stopped, {attempts} times")


def interruptible() -> None:
    """``preexec_fn`` for a child that a test interrupts: Ctrl-C's default action back. A shell
    without job control starts background commands with SIGINT ignored (POSIX), their children
    inherit that, and Python then installs no KeyboardInterrupt handler: a suite started as
    ``make test-heavy &`` would see SIGINT do nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def float64_head_logits(folder: Path, embeds: np.ndarray, patches: np.ndarray, text: np.ndarray) -> np.ndarray:
    """transformers' X-CLIP head in float64 (prompt generator, then the scaled cosine of
    ``XCLIPModel.forward``) on stored features: the reference for ``model.head``."""
    import torch

    _, model = _loaded(str(folder), _stamp(folder), True)
    with torch.no_grad():
        video = torch.from_numpy(np.asarray(embeds, np.float64))
        texts = torch.from_numpy(np.asarray(text, np.float64)).unsqueeze(0).expand(len(video), -1, -1)
        texts = texts + model.prompts_generator(texts, torch.from_numpy(np.asarray(patches, np.float64)))
        video = video / video.norm(p=2, dim=-1, keepdim=True)
        texts = texts / texts.norm(p=2, dim=-1, keepdim=True)
        return torch.einsum("bd,bkd->bk", video, model.logit_scale.exp() * texts).numpy()


def head_rounding_bound(
    weights: Any, embeds: np.ndarray, patches: np.ndarray, text: np.ndarray, exact: np.ndarray
) -> float:
    """How far a float32 run of ``model.head.head_logits`` may be from ``exact`` (its float64
    result, ``float64_head_logits``): ROUNDING_SAFETY x the change that float32's worst-case
    rounding at every operation of the same arithmetic causes (``RoundedFloat64``)."""
    from xclip_cli.model.head import head_logits

    rounded = head_logits(weights, *(np.asarray(x, np.float64).view(RoundedFloat64) for x in (embeds, patches, text)))
    return ROUNDING_SAFETY * float(np.abs(np.asarray(rounded) - exact).max())


class RoundedFloat64(np.ndarray):
    """The numpy twin of ``simulated_float32``: float64 arrays whose every ufunc result (matmul,
    sums, elementwise operations) gets a random-sign error at float32's worst-case bound, the
    same bounds as there (a product or sum of inner length k within sqrt(k)·u·Σ|terms|, an
    elementwise result within ELEMENTWISE_ULPS·u of itself; maxima and sign flips are exact).
    Code that keeps an array's subclass and dtype (``model.head``) runs on it unchanged; the
    change of its float64 output then estimates how far its float32 run may be from exact, on
    any CPU (the bounds hold for any summation order, blocking, FMA use and thread split)."""

    generator = np.random.default_rng(0)
    EXACT = frozenset({np.maximum, np.minimum, np.negative, np.conjugate, np.absolute})
    ELEMENTWISE = frozenset({np.add, np.subtract, np.multiply, np.divide, np.exp, np.sqrt, np.reciprocal, np.square})

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        plain = [np.asarray(x) if isinstance(x, RoundedFloat64) else x for x in inputs]
        outs = kwargs.pop("out", None)
        if outs is not None:
            kwargs["out"] = tuple(np.asarray(out) for out in outs)
        result = getattr(ufunc, method)(*plain, **kwargs)
        value = np.asarray(result)
        if value.dtype != np.float64 or ufunc in self.EXACT:
            size = None
        elif ufunc is np.matmul and method == "__call__":
            a, b = (np.asarray(x, np.float64) for x in plain)
            size = a.shape[-1] ** 0.5 * np.matmul(np.abs(a), np.abs(b))
        elif ufunc is np.add and method == "reduce":
            x = np.asarray(plain[0])
            count = x.size // max(1, value.size)
            size = count**0.5 * np.add.reduce(np.abs(x), **{k: v for k, v in kwargs.items() if k != "out"})
        elif ufunc in self.ELEMENTWISE and method == "__call__":
            size = ELEMENTWISE_ULPS * np.abs(value)
        else:
            raise AssertionError(f"RoundedFloat64: {ufunc.__name__}.{method} has no rounding rule")
        if size is not None:
            signs = self.generator.integers(0, 2, value.shape) * 2.0 - 1
            noisy = value + signs * np.asarray(size) * UNIT_ROUNDOFF
            if outs is not None:
                np.asarray(outs[0])[...] = noisy
            else:
                result = noisy
        if outs is not None:
            return outs[0]
        return np.asarray(result).view(RoundedFloat64)

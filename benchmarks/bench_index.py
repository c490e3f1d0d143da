"""Benchmark scoring an embedding index: seconds per 1,000 indexed videos, against decoding them.

With the randomly initialised full-size X-CLIP of ``bench_classify.py`` (warm text cache), on
the features of N videos (random values of the real shapes: scoring cost does not depend on
them): one ``xclip search`` query, and ``xclip classify --index`` with 400 Kinetics labels,
against classifying one 10 s 720p clip from the video itself (decode + vision encoder).

Run it with ``python benchmarks/bench_index.py [--videos N] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_classify import DEFAULT_WORKDIR, LABELSET, bench_setup, ensure_checkpoint, ensure_clip, log

from xclip_cli.backend import VideoFeatures
from xclip_cli.classify import classify_videos
from xclip_cli.index import SCORE_CHUNK
from xclip_cli.labels import resolve_labels
from xclip_cli.runner import XClipRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--videos", type=int, default=1024)
    args = parser.parse_args()
    with bench_setup(args.workdir) as workdir:
        model_dir = ensure_checkpoint(workdir)
        clip = ensure_clip(workdir, 10)
        runner = XClipRunner.from_pretrained(str(model_dir), device="cpu")
        labelset = resolve_labels(LABELSET)
        kinetics = runner.label_text_features(labelset)
        config = runner.model.config
        patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
        rng = np.random.default_rng(0)
        chunk = VideoFeatures(
            embeds=rng.standard_normal((SCORE_CHUNK, config.projection_dim), dtype=np.float32),
            patches=rng.standard_normal((SCORE_CHUNK, patches, config.projection_dim), dtype=np.float32),
        )
        chunks = max(1, args.videos // SCORE_CHUNK)
        log(f"search: one query over {chunks * SCORE_CHUNK} videos ...")
        start = time.perf_counter()
        query = runner.text_features(["a dog catching a frisbee"])
        for _ in range(chunks):
            runner.logits_from_features(chunk, query)
        search = time.perf_counter() - start
        log(f"classify --index: {len(labelset)} labels over {chunks * SCORE_CHUNK} videos ...")
        start = time.perf_counter()
        for _ in range(chunks):
            runner.logits_from_features(chunk, kinetics)
        rescore = time.perf_counter() - start
        log("classify one 10 s 720p clip from the video ...")
        list(classify_videos(runner, [str(clip)], labelset))  # warm
        start = time.perf_counter()
        list(classify_videos(runner, [str(clip)], labelset))
        direct = time.perf_counter() - start
    videos = chunks * SCORE_CHUNK
    print("\n=== xclip-cli benchmark: scoring an embedding index ===")
    print(f"index of {videos} videos (base-patch32 shapes: {patches} patches x {config.projection_dim})")
    rows = [
        ("search, one query (text side + prompt generator)", search / videos * 1000),
        (f"classify --index, {len(labelset)} labels", rescore / videos * 1000),
        ("classify from the video (10 s 720p clip)", direct * 1000),
    ]
    for name, seconds in rows:
        print(f"  {name:52} {seconds:8.2f} s per 1,000 videos")
    ratio_name = f"from the video / from the index ({len(labelset)} labels)"
    print(f"  {ratio_name:52} {direct * videos / rescore:8.1f}x")


if __name__ == "__main__":
    main()

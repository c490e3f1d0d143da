"""Benchmark scoring an embedding index: seconds per 1,000 indexed videos, against decoding them.

With the randomly initialised full-size X-CLIP of ``common.py`` (warm text cache), on
the features of N videos (random values of the real shapes: scoring cost does not depend on
them): one ``xclip search`` query, and ``xclip classify --index`` with 400 Kinetics labels,
against classifying one 10 s 720p clip from the video itself (decode + vision encoder).

Run it with ``python benchmarks/bench_index.py [--videos N] [--repeat N] [--quick] [--smoke] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import LABELSET, Timing, add_bench_arguments, bench_session, interleaved, log, ratio_line

from xclip_cli.jobs.classify import classify_videos
from xclip_cli.jobs.index import SCORE_CHUNK
from xclip_cli.labels import resolve_labels
from xclip_cli.model.backend import VideoFeatures
from xclip_cli.model.torch.runner import XClipRunner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    parser.add_argument("--videos", type=int, default=1024)
    args = parser.parse_args(argv)
    with bench_session(args) as bench:
        model_dir = bench.checkpoint()
        clip = bench.clip(10)
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
        videos = chunks * SCORE_CHUNK

        def search() -> None:
            query = runner.text_features(["a dog catching a frisbee"])
            for _ in range(chunks):
                runner.logits_from_features(chunk, query)

        def rescore() -> None:
            for _ in range(chunks):
                runner.logits_from_features(chunk, kinetics)

        # Per 1,000 videos: the index's rows are per ``videos``, the direct row per one video.
        rows = [
            (Timing("search, one query (text side + prompt generator)", per=videos), search),
            (Timing(f"classify --index, {len(labelset)} labels", per=videos), rescore),
            (
                Timing("classify from the video (10 s clip)"),
                lambda: list(classify_videos(runner, [str(clip)], labelset)),
            ),
        ]
        log(f"search, classify --index over {videos} videos, and one clip, {bench.repeat} round(s) ...")
        interleaved(rows, bench.repeat)
    print("\n=== xclip-cli benchmark: scoring an embedding index ===")
    print(f"index of {videos} videos ({patches} patches x {config.projection_dim}); medians of {bench.repeat} round(s)")
    for timing, _ in rows:
        print(f"  {timing.name:52} {timing.median * 1000:8.2f} s per 1,000 videos  (min-max per video {timing.spread})")
    print(ratio_line(f"from the video / from the index ({len(labelset)} labels)", rows[2][0], rows[1][0]))


if __name__ == "__main__":
    main()

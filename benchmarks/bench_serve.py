"""``xclip classify --server`` against a running ``xclip serve``, against the recipe script.

Each round, interleaved, on the 10 s 720p clip with 400 Kinetics labels: the recipe as a fresh
script (``recipe.py``), a one-shot ``xclip classify`` (auto engine, warm text cache) and the same
classify sent to a running ``xclip serve`` (model loaded once by the server, its first request
filling its text cache before the rounds). The ONNX graphs are prepared once into
``WORKDIR/cache`` and kept between runs.

Run it with ``python benchmarks/bench_serve.py [--repeat N] [--quick] [--smoke] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from common import (
    LABELSET,
    Bench,
    Timing,
    add_bench_arguments,
    bench_session,
    clip_facts,
    environment,
    interleaved,
    log,
    prepare_onnx,
    print_ratios,
    print_table,
    ratio_line,
    run_cli,
    run_recipe_script,
    write_labels_file,
)

from xclip_cli.labels import resolve_labels

HEALTH_WAIT = 60.0  # seconds for the server to answer /health


@contextmanager
def running_server(model_dir: Path, root: Path, env: dict[str, str]) -> Iterator[str]:
    """``xclip serve`` on a free port, until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "xclip_cli", "serve", "--model", str(model_dir), "--port", str(port)]
    server = subprocess.Popen([*command, "--root", str(root)], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HEALTH_WAIT
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"xclip serve did not come up on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(bench: Bench, model_dir: Path, clip: Path) -> list[Timing]:
    env = dict(os.environ)
    labels_file = write_labels_file(bench, resolve_labels(LABELSET).names)
    prepared = prepare_onnx(model_dir, env)  # seconds when the kept cache has them already
    recipe = Timing("recipe as a fresh script")
    one_shot = Timing("xclip classify, one-shot (auto engine)")
    served = Timing("xclip classify --server (running xclip serve)", note="model loaded once by the server")
    with running_server(model_dir, clip.parent, env) as url:
        run_cli(model_dir, clip, env, url)  # the server's first request fills its text cache
        interleaved(
            [
                (recipe, lambda: run_recipe_script(model_dir, clip, labels_file, env)),
                (one_shot, lambda: run_cli(model_dir, clip, env)),
                (served, lambda: run_cli(model_dir, clip, env, url)),
            ],
            bench.repeat,
            warmup=False,  # the fresh processes are the point; the server was warmed above
        )
    prepared.note += " (kept in WORKDIR/cache: later runs find it prepared)"
    return [recipe, one_shot, served, prepared]


def ratios(timings: Sequence[Timing]) -> list[str]:
    recipe, one_shot, served = timings[:3]
    return [
        ratio_line("recipe script / xclip classify --server", recipe, served, "(issue #8: stay warm)"),
        ratio_line("xclip classify one-shot / --server", one_shot, served),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()
    with bench_session(args, keep_cache=True) as bench:
        model_dir, clip = bench.checkpoint(), bench.clip(10)
        log(f"preparing, starting xclip serve, then {bench.repeat} round(s) ...")
        timings = measure(bench, model_dir, clip)
    print("\n=== xclip-cli benchmark: classify through xclip serve vs the recipe as a script ===")
    for line in environment(load_at_start):
        print(line)
    print(f"model: {model_dir}; labels: {LABELSET}; clip: {clip_facts(clip)}")
    print_table(f"== medians of {bench.repeat} interleaved round(s) ==", timings)
    print_ratios(ratios(timings))


if __name__ == "__main__":
    main()

"""``xclip scan --watch``: the time from a file being complete to its row in the results file.

A watched scan (a fresh process, ONNX Runtime, the full-size random model prepared once) of an
empty folder. First single files, one at a time: the 10 s 720p clip copied in, the moment its
copy is closed noted, then the moment its row shows in the CSV (polled every 20 ms). Then a
burst: ``--burst`` copies at once, each timed the same way (their rows wait for each other:
the scan classifies one video at a time). Printed: medians and min-max, and the same less the
settle time (what the watcher's tick, decoding and the model add).

    python benchmarks/bench_watch.py [--repeat 3] [--burst 10] [--settle 2] [--smoke] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import LABELSET, add_bench_arguments, bench_session, log, prepare_onnx


def rows_in(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["path"] for row in csv.DictReader(handle)}


def arrive(folder: Path, clip: Path, names: list[str], out: Path, deadline: float = 600) -> list[float]:
    """Copy ``clip`` in under each name at once; seconds from each copy's close to its row."""
    completed = {}
    for name in names:
        shutil.copy(clip, folder / name)
        completed[str(folder / name)] = time.monotonic()
    seen: dict[str, float] = {}
    give_up = time.monotonic() + deadline
    while len(seen) < len(names):
        if time.monotonic() > give_up:
            raise RuntimeError(f"{len(seen)} of {len(names)} rows after {deadline} s")
        now = time.monotonic()
        for path in rows_in(out) & completed.keys():
            seen.setdefault(path, now)
        time.sleep(0.02)
    return [seen[path] - completed[path] for path in completed]


def line(name: str, seconds: list[float], settle: float) -> str:
    median = statistics.median(seconds)
    return (
        f"{name:<34} median {median:6.2f} s (min-max {min(seconds):.2f}-{max(seconds):.2f}); "
        f"less the settle time {median - settle:5.2f} s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    parser.add_argument("--burst", type=int, default=10, help="files copied in at once")
    parser.add_argument("--settle", type=float, default=2.0, help="the scan's --settle")
    args = parser.parse_args(argv)
    with bench_session(args) as bench, tempfile.TemporaryDirectory(prefix="xclip-watch-") as work:
        model_dir, clip = bench.checkpoint(), bench.clip(10)
        env = dict(os.environ)
        prepare_onnx(model_dir, env)
        folder, out = Path(work) / "inbox", Path(work) / "results.csv"
        folder.mkdir()
        command = [sys.executable, "-m", "xclip_cli", "scan", str(folder), "-o", str(out), "--watch", "-q"]
        command += ["--settle", str(args.settle), "--model", str(model_dir), "--labels", LABELSET]
        scan = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            log(f"{bench.repeat} single file(s), then a burst of {args.burst} ...")
            single = [arrive(folder, clip, [f"single{index}.mp4"], out)[0] for index in range(bench.repeat + 1)][1:]
            burst = arrive(folder, clip, [f"burst{index:03d}.mp4" for index in range(args.burst)], out)
        finally:
            scan.send_signal(signal.SIGTERM)
            code = scan.wait(timeout=120)
    print(f"\n=== scan --watch: from a complete file to its row, --settle {args.settle:g} s ===")
    print(line("one file at a time", single, args.settle))
    print(line(f"a burst of {args.burst}", burst, args.settle))
    print(f"the scan's exit code after SIGTERM: {code}")


if __name__ == "__main__":
    main()

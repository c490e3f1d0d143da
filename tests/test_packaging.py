"""The wheel ships the built-in label sets and the entry points, and works outside the repo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_label_sets_and_finds_them_when_installed(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp_path, ROOT],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("xclip_cli-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, wheel],
        check=True,
        timeout=300,
    )
    code = (
        "import xclip_cli.labels as l, sys\n"
        "assert str(l.builtin_dir()).startswith(sys.argv[1]), l.builtin_dir()\n"
        "assert len(l.resolve_labels('kinetics400')) == 400\n"
        "print(len(l.builtin_names()))\n"
    )
    # Run from an empty folder so the source tree is not importable.
    completed = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert int(completed.stdout) == len(list((ROOT / "labelsets").glob("*.yaml")))
    assert (target / "bin" / "xclip").exists()


def test_every_public_name_resolves() -> None:
    import xclip_cli

    for name in xclip_cli.__all__:
        assert getattr(xclip_cli, name) is not None, name


def test_every_public_name_is_the_object_not_a_submodule() -> None:
    # A lazily exported name that is also a submodule's name would be whichever was imported last.
    code = (
        "import importlib, pkgutil, types, xclip_cli\n"
        "for module in pkgutil.walk_packages(xclip_cli.__path__, 'xclip_cli.'):\n"
        "    if not module.name.startswith(('xclip_cli.cli', 'xclip_cli.run.ray', 'xclip_cli.output.plot')):\n"
        "        importlib.import_module(module.name)\n"
        "wrong = [n for n in xclip_cli.__all__ if isinstance(getattr(xclip_cli, n), types.ModuleType)]\n"
        "assert not wrong, wrong\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_the_media_package_never_imports_torch(clip_dir: Path) -> None:
    code = (
        "import sys\n"
        "from xclip_cli.media import decode, discovery, probe, sampling\n"
        "video = decode.sample_video(sys.argv[1], 8)\n"
        "assert len(video.frames) == 8 and list(discovery.find_videos([sys.argv[2]]))\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    command = [sys.executable, "-c", code, str(clip_dir / "a.mp4"), str(clip_dir)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr

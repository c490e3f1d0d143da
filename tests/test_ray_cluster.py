"""`--engine ray` on a real cluster of three nodes on this machine, and what happens when one goes.

``ray.cluster_utils.Cluster`` starts a head and two worker nodes, each a raylet with its own
object store and its own (empty) xclip cache: the prepared ONNX graphs reach the workers
through the object store. Then: a worker node removed in the middle of a scan, the driver
killed in the middle of a scan, and a node that runs another version of xclip-cli.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from helpers import LABELS_JUGGLING_TEXT, paused_mid_scan
from ray.cluster_utils import Cluster
from test_ray_engine import assert_same_rows, csv_rows, local_scan

import xclip_cli
from xclip_cli.errors import ExitCode
from xclip_cli.jobs.scan import ScanOptions, scan_videos
from xclip_cli.labels import inline_labelset
from xclip_cli.model.onnx.cache import read_manifest
from xclip_cli.run.ray import RayExecutor, RayOptions

pytestmark = pytest.mark.heavy

WORKERS = 2
CLIPS = 16


def node_env(cache: Path) -> dict[str, str]:
    return {"XCLIP_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "XCLIP_BACKEND": "onnx"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    """A head (1 CPU: the driver's node) and two workers (2 CPUs each), each with its own cache."""
    caches = tmp_path_factory.mktemp("node-caches")
    head = {"num_cpus": 1, "env_vars": node_env(caches / "head"), "include_dashboard": False}
    started = Cluster(initialize_head=True, head_node_args=head)
    for index in range(WORKERS):
        started.add_node(num_cpus=2, env_vars=node_env(caches / f"worker{index}"))
    yield started, caches
    started.shutdown()


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("many")
    for index in range(CLIPS):
        shutil.copy(clip_dir / ("a.mp4" if index % 2 else "b.mp4"), folder / f"clip{index:02d}.mp4")
    (folder / "broken.mp4").write_text("not a video")
    return folder


def ray_scan_command(model: Path, folder: Path, out: Path, address: str) -> list[str]:
    command = [sys.executable, "-m", "xclip_cli", "scan", str(folder), "-o", str(out), "-q", "--model", str(model)]
    command += ["-l", LABELS_JUGGLING_TEXT, "--engine", "ray", "--ray-address", address, "--backend", "onnx"]
    return [*command, "--concurrency", "2", "--decode-cpus", "0.5"]


def test_a_cluster_writes_the_local_rows_and_its_nodes_get_the_graphs_through_the_object_store(
    cluster: tuple[Cluster, Path], onnx_ready: Path, tiny_model_dir: Path, many: Path, tmp_path: Path
) -> None:
    started, caches = cluster
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    local_scan(tiny_model_dir, many, local, "--backend", "onnx")
    done = subprocess.run(ray_scan_command(tiny_model_dir, many, on_ray, started.address), capture_output=True)
    assert done.returncode == ExitCode.PARTIAL, done.stderr.decode()  # the broken file's row
    assert done.stderr.decode() == ""  # -q: nothing of Ray's on the user's terminal either
    assert_same_rows(csv_rows(on_ray), csv_rows(local))
    written = [folder for folder in caches.glob("worker*/onnx/*") if read_manifest(folder) is not None]
    assert written, "no worker node wrote the shipped graphs into its own cache"
    assert not (caches / "head" / "onnx").exists()  # the driver's node reads the driver's folder


def test_a_node_lost_mid_scan_neither_loses_nor_doubles_a_row(
    cluster: tuple[Cluster, Path], onnx_ready: Path, tiny_model_dir: Path, many: Path, tmp_path: Path
) -> None:
    started, caches = cluster
    local, out = tmp_path / "local.csv", tmp_path / "ray.csv"
    local_scan(tiny_model_dir, many, local, "--backend", "onnx")
    paths = sorted(str(path) for path in many.iterdir())
    executor = RayExecutor(str(tiny_model_dir), RayOptions(address=started.address, concurrency=2, decode_cpus=0.5))
    victim = started.worker_nodes and next(iter(started.worker_nodes))
    lost = []

    def after_each(_: object) -> None:
        if len(lost) == 0 and len(csv_rows(out)) == 4:  # rows flushed: the scan is well under way
            started.remove_node(victim, allow_graceful=False)
            lost.append(victim)

    try:
        summary = scan_videos(
            paths, inline_labelset(LABELS_JUGGLING_TEXT), executor, ScanOptions(output=out), on_result=after_each
        )
    finally:
        ray.shutdown()
        started.add_node(num_cpus=2, env_vars=node_env(caches / "replacement"))  # for the tests after this one
    assert lost and summary.done == len(paths)
    assert_same_rows(csv_rows(out), csv_rows(local))  # csv_rows fails on a path written twice


def test_a_killed_driver_is_resumed_by_a_rerun(
    cluster: tuple[Cluster, Path], onnx_ready: Path, tiny_model_dir: Path, many: Path, tmp_path: Path
) -> None:
    started, _ = cluster
    out = tmp_path / "ray.csv"
    command = ray_scan_command(tiny_model_dir, many, out, started.address)
    process = paused_mid_scan(command, out, after=2, total=CLIPS + 1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    finished = list(csv_rows(out))
    assert 2 <= len(finished) < CLIPS + 1
    rerun = subprocess.run(command, capture_output=True)
    assert rerun.returncode == ExitCode.PARTIAL, rerun.stderr.decode()
    rows = csv_rows(out)
    assert list(rows)[: len(finished)] == finished
    assert sorted(rows) == sorted(str(path) for path in many.iterdir())


def scan_on_one_odd_node(site: Path, model: Path, clips: Path, out: Path) -> subprocess.CompletedProcess[bytes]:
    """A scan on a cluster whose only worker node's Python starts with ``site`` first on its path
    (the driver's node runs nothing: no CPU)."""
    env = {**node_env(out.parent / "cache"), "PYTHONPATH": str(site)}
    small = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        small.add_node(num_cpus=3, env_vars=env)  # two actors and a decoder
        return subprocess.run(ray_scan_command(model, clips, out, small.address), capture_output=True)
    finally:
        small.shutdown()


def test_a_node_with_another_xclip_version_is_named_in_one_line(
    tmp_path: Path, onnx_ready: Path, tiny_model_dir: Path, clip_dir: Path
) -> None:
    """A worker whose Python has another xclip-cli (a copy of the package with another version,
    imported at start-up, before Ray puts the driver's folder first on its path)."""
    other = tmp_path / "other-site"
    shutil.copytree(Path(xclip_cli.__file__).parent, other / "xclip_cli")
    init = other / "xclip_cli" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{xclip_cli.__version__}"', '__version__ = "0.0.1"'))
    (other / "sitecustomize.py").write_text("import xclip_cli\n")
    done = scan_on_one_odd_node(other, tiny_model_dir, clip_dir, tmp_path / "r.csv")
    said = done.stderr.decode().strip().splitlines()
    assert done.returncode == ExitCode.ENGINE, said
    assert (
        len(said) == 1
        and said[0].startswith("xclip: error: Ray node ")
        and said[0].endswith(
            f"runs xclip-cli 0.0.1, the driver {xclip_cli.__version__}: install the same version on every node"
        )
    ), said


def test_a_node_without_the_ray_extra_is_named_in_one_line(
    tmp_path: Path, onnx_ready: Path, tiny_model_dir: Path, clip_dir: Path
) -> None:
    """A worker whose Python lacks pyarrow (Ray without its [data] extra, which xclip-cli[ray] brings)."""
    site = tmp_path / "no-pyarrow"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['pyarrow'] = None  # not installed here\n")
    done = scan_on_one_odd_node(site, tiny_model_dir, clip_dir, tmp_path / "r.csv")
    said = done.stderr.decode().strip().splitlines()
    assert done.returncode == ExitCode.MISSING, said
    assert len(said) == 1 and re.fullmatch(
        r"xclip: error: Ray node [\d.]+ cannot run the scan: no module 'pyarrow' there; install 'xclip-cli\[ray\]' "
        r"\(the same version as here\) on every node",
        said[0],
    ), said

"""Scans on a Ray cluster: decoding in CPU tasks, the model in a pool of actors (Ray Data).

The same functions as the local engine do the work, so the numbers are the same: decoding
tasks call ``sample_frames`` and ship each ``SampledVideo`` (or its ``VideoError``); model
actors load the checkpoint once each and call ``score_loaded``. The driver loads the
checkpoint once on its CPU to check it, read its frame count and preprocessing, and compute the
label set's text features (through the disk cache), which every actor receives: actors never
run the text encoder, and no cache needs to be shared between nodes.

Results stream back in the order they finish; the caller writes each one as it arrives.
Needs ``pip install 'xclip-cli[ray]'`` on the driver and on every worker node.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pickle
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xclip_cli import __version__
from xclip_cli.errors import (
    EngineError,
    LabelSetError,
    MissingDependency,
    ModelLoadError,
    OutputError,
    UsageError,
    VideoError,
    XClipError,
)
from xclip_cli.jobs.classify import sample_frames, score_loaded, scoring_text_features
from xclip_cli.labels import LabelSet
from xclip_cli.media.preprocess import PreprocessConfig
from xclip_cli.model.backend import ONNX_PRECISIONS
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import VideoResult
from xclip_cli.run.ray_cluster import (
    DECODE_MEMORY,
    connect,
    first_line,
    import_ray,
    quiet_logs,
    resolve_address,
)

# Paths per input block: small enough that a handful of videos keeps every CPU busy, large
# enough that a million paths do not become a million tasks.
PATHS_PER_BLOCK = 32
MIN_BLOCKS = 64
DECODE_ATTEMPTS = 3  # deaths of a decoding process on one video before it becomes an error row


@dataclass(frozen=True)
class RayOptions:
    """Where and with what the scan runs on Ray."""

    address: str | None = None  # None: RAY_ADDRESS, else a new local instance; "auto": the one `ray start` runs
    concurrency: int = 1  # model actors
    num_gpus: float = 0.0  # GPUs per model actor
    cpus_per_actor: float = 1.0  # torch threads of a model actor follow this
    decode_cpus: float = 1.0  # per decoding task; below 1 runs more decoders than there are CPUs
    num_cpus: int | None = None  # CPUs of a local instance started here (None: all of this machine)
    device: str = "auto"  # where actors run the model; the driver uses its CPU
    precision: str = "fp32"
    backend: str = "auto"  # auto: ONNX Runtime for actors on CPUs (prepared by the driver), torch on GPUs
    verbose: bool = False  # worker logs reach the driver's stderr


@dataclass(frozen=True)
class RayExecutor:
    """Classify on a Ray cluster (``classify_videos_on_ray``); called like ``classify.LocalExecutor``."""

    model: str
    options: RayOptions = RayOptions()
    say: Callable[[str], None] | None = None
    ship: bool | None = None  # the prepared graphs to other nodes (None: when Ray was joined, not started)

    @property
    def precision(self) -> str:
        return self.options.precision

    def classify(self, paths: Sequence[str], labelset: LabelSet, options: ClassifyOptions) -> Iterator[VideoResult]:
        return classify_videos_on_ray(self.model, paths, labelset, options, self.options, self.say, self.ship)

    @contextlib.contextmanager
    def session(self) -> Iterator[RayExecutor]:
        """Ray joined (or started here) once for many ``classify`` calls (a watched scan's
        batches), and a Ray started here stopped at the end; without it each call starts its own."""
        _check_options(self.options)
        ray = import_ray()
        address = resolve_address(self.options.address)
        started_here = connect(ray, address, self.options)
        try:
            yield replace(self, ship=not started_here)  # a joined cluster may have (or gain) other nodes
        finally:
            if started_here:
                ray.shutdown()


def classify_videos_on_ray(
    model_id: str,
    paths: Sequence[str],
    labelset: LabelSet,
    options: ClassifyOptions | None = None,
    ray_options: RayOptions = RayOptions(),
    say: Callable[[str], None] | None = None,
    ship: bool | None = None,
) -> Iterator[VideoResult]:
    """One result per path, as each finishes (not in input order); failed videos give error results.

    The checkpoint loads and Ray starts (or is joined) before this returns, so their errors
    come before any output; Ray started here is shut down once the results are consumed.
    ``say`` receives one-line notes (a checkpoint prepared for ONNX Runtime on first use).
    """
    options = ClassifyOptions() if options is None else options
    _check_options(ray_options)
    ray = import_ray()
    address = resolve_address(ray_options.address)  # before loading anything: fail fast
    from xclip_cli.model.open import open_backend

    # With no GPU reserved, Ray still shows actors every GPU: "auto" would crowd them onto one.
    device = "cpu" if ray_options.device == "auto" and not ray_options.num_gpus else ray_options.device
    backend = ray_options.backend
    if backend == "auto":
        backend = "onnx" if device == "cpu" and ray_options.precision in ONNX_PRECISIONS else "torch"
    elif backend == "onnx" and device != "cpu":
        raise UsageError("--backend onnx runs on the CPU: use --num-gpus 0 (or --backend torch)")
    driver = open_backend(model_id, "cpu", ray_options.precision, backend, say)
    onnx_folder = getattr(driver, "folder", None)  # an OnnxRunner's prepared graphs
    folder = Path(model_id).expanduser()
    settings = _ModelSettings(
        model_id=model_id,
        # Workers do not share this process's working folder: a local checkpoint goes by its absolute path.
        source=str(folder.resolve()) if folder.is_dir() else model_id,
        num_frames=driver.num_frames,
        preprocess=driver.preprocess,
        fingerprints=(driver.fingerprint(), driver.vision_fingerprint()),
        device=device,
        precision=ray_options.precision,
        onnx_folder=None if onnx_folder is None else str(onnx_folder),
        threads=max(1, int(ray_options.cpus_per_actor)),
    )
    text_features = scoring_text_features(driver, labelset, options.multi_label)
    del driver  # the driver only needed it for the text side: free its memory for the scan
    if not paths:
        return iter(())
    started_here = connect(ray, address, ray_options)
    try:
        attempts = Path(tempfile.gettempdir()) / "xclip-decode-attempts" / uuid.uuid4().hex
        driver_node = ray.get_runtime_context().get_node_id()
        # A joined cluster may have other nodes, now or later (autoscaling), without this one's
        # cache: they get the prepared graphs through the object store (in a list, so only an
        # actor that needs them fetches them). ``ship``: the caller knows (a session it started).
        ship = not started_here if ship is None else ship
        shipped = [ray.put(_folder_files(onnx_folder))] if onnx_folder is not None and ship else []
        # Large actor arguments go by reference, owned and held by this process for the whole scan:
        # an actor restarted after its node was lost fetches them again (passed by value, Ray would
        # keep them in the object store without the bookkeeping a restart needs: ray#53727).
        shared = [ray.put((labelset, text_features))]
        settings = replace(settings, driver_node=driver_node, version=__version__)
        scored = _pipeline(ray, paths, settings, options, ray_options, attempts, shared, shipped)
        if ray_options.verbose:
            with contextlib.redirect_stdout(sys.stderr):  # stdout may carry results
                scored.explain()  # Ray Data's plans: decoding and model stages, fused or not
    except BaseException:
        if started_here:
            ray.shutdown()
        raise
    return _results(ray, scored, started_here, attempts)


def _pipeline(
    ray: Any,
    paths: Sequence[str],
    settings: _ModelSettings,
    options: ClassifyOptions,
    ray_options: RayOptions,
    attempts: Path,
    shared: list[Any],
    shipped: list[Any],
) -> Any:
    """The (lazy) Ray Data dataset: paths -> decoding tasks -> model actors -> pickled results."""
    import ray.data

    quiet_logs(ray_options.verbose)  # after importing ray.data, which configures its loggers
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI draws its own, on stderr
    context.print_on_execution_start = False
    blocks = min(len(paths), max(MIN_BLOCKS, math.ceil(len(paths) / PATHS_PER_BLOCK)))
    # Paths as bytes: Arrow strings must be UTF-8, file names need not be. Workers open the
    # absolute path (their working folder is not this one); results keep the path as given.
    items = [{"path": os.fsencode(path), "file": os.fsencode(os.path.abspath(path))} for path in paths]
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    # The memory hint keeps a node from starting more decoders than its RAM holds; as the
    # model actors ask for none, it also keeps Ray Data from fusing decoding into them,
    # which would leave the model (a GPU) idle while its actor decodes.
    decoded = dataset.map(
        _DecodeVideo(settings.num_frames, settings.preprocess, options, attempts),
        num_cpus=ray_options.decode_cpus,
        memory=DECODE_MEMORY,
    )
    return decoded.map_batches(
        _ScoreVideos,
        fn_constructor_args=(settings, options, shared, shipped),
        batch_size=max(1, options.batch_size),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=ray_options.concurrency),
        num_cpus=ray_options.cpus_per_actor,
        num_gpus=ray_options.num_gpus or None,
    )


def _results(ray: Any, scored: Any, started_here: bool, attempts: Path) -> Iterator[VideoResult]:
    try:
        for row in scored.iter_rows():
            yield pickle.loads(row["result"])
    except XClipError:
        raise
    except Exception as exc:
        raise _engine_error(exc) from None
    finally:
        if started_here:
            ray.shutdown()
        shutil.rmtree(attempts, ignore_errors=True)  # this node's marks (other nodes keep a few bytes)


@dataclass(frozen=True)
class _ModelSettings:
    """What every actor loads, and what it must agree with the driver on."""

    model_id: str  # as the user gave it, for the results
    source: str  # what the actors load: the hub id, or the checkpoint folder's absolute path
    num_frames: int
    preprocess: PreprocessConfig
    fingerprints: tuple[str, str]  # text side, vision side
    device: str
    precision: str
    onnx_folder: str | None = None  # ONNX Runtime: the driver's prepared folder (its name is the key)
    threads: int = 1  # an ONNX Runtime actor's threads: its share of the node's CPUs
    driver_node: str = ""  # the driver's Ray node: only actors there read its prepared folder
    version: str = ""  # the driver's xclip-cli: every node must run the same


@dataclass(frozen=True)
class _DecodeVideo:
    """A decoding task's work on one row: the sampled, preprocessed frames, or the video's error.

    A file that kills its decoding process (a crash in ffmpeg, the OOM killer) makes Ray retry
    the task without end. Each attempt is marked in a file that only a finished attempt removes,
    so after ``DECODE_ATTEMPTS`` deaths on a node the video becomes an error row instead.
    """

    num_frames: int
    preprocess: PreprocessConfig
    options: ClassifyOptions
    attempts: Path  # this scan's folder of attempt marks, on each node's temporary disk

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        path, file = os.fsdecode(row["path"]), os.fsdecode(row["file"])
        mark = self.attempts / hashlib.sha1(row["file"]).hexdigest()
        died = int(mark.read_text() or 0) if mark.is_file() else 0
        decoded: Any
        if died >= DECODE_ATTEMPTS:
            decoded = VideoError(
                path, f"its decoding process died {died} times (a crash in the decoder, or out of memory)"
            )
        else:
            self.attempts.mkdir(parents=True, exist_ok=True)
            mark.write_text(str(died + 1))
            try:
                decoded = sample_frames(file, self.num_frames, self.preprocess, self.options)
            except VideoError as exc:
                decoded = VideoError(path, exc.reason)
            finally:
                mark.unlink(missing_ok=True)
        return {"path": row["path"], "video": pickle.dumps(decoded, protocol=pickle.HIGHEST_PROTOCOL)}


class _ScoreVideos:
    """A model actor: loads the checkpoint once, then scores batches of decoded videos."""

    def __init__(
        self, settings: _ModelSettings, options: ClassifyOptions, shared: list[Any], shipped: list[Any]
    ) -> None:
        import ray

        if __version__ != settings.version:  # this node's xclip_cli, imported with this module
            raise EngineError(
                f"Ray node {ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]}) "
                f"runs xclip-cli {__version__}, the driver {settings.version}: install the same version on every node"
            )
        runner: Any
        if settings.onnx_folder is not None:
            from xclip_cli.model.onnx.runner import OnnxRunner

            on_drivers_node = ray.get_runtime_context().get_node_id() == settings.driver_node
            folder = _prepared_on_this_node(Path(settings.onnx_folder), shipped, on_drivers_node)
            int8 = settings.precision == "int8"
            runner = OnnxRunner.open(folder, settings.model_id, int8=int8, threads=settings.threads)
        else:
            from xclip_cli.model.torch.runner import XClipRunner

            runner = XClipRunner.from_pretrained(settings.source, device=settings.device, precision=settings.precision)
            runner.model_id = settings.model_id  # results name the model as the local engine's do
        self.runner = runner
        found = (runner.num_frames, runner.preprocess, (runner.fingerprint(), runner.vision_fingerprint()))
        if found != (settings.num_frames, settings.preprocess, settings.fingerprints):
            raise ModelLoadError(
                f"{settings.model_id} on a Ray worker differs from the driver's copy; "
                "install the same checkpoint on every node"
            )
        self.labelset, self.text_features = ray.get(shared[0])
        self.options = options

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        pairs = zip(batch["path"], batch["video"], strict=True)
        loaded = ((os.fsdecode(path), pickle.loads(video)) for path, video in pairs)
        results = score_loaded(self.runner, loaded, self.text_features, self.labelset, self.options)
        return {"result": [pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL) for result in results]}


def _folder_files(folder: Path) -> dict[str, bytes]:
    """A prepared folder's files, to ship to nodes that lack it."""
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}


def _prepared_on_this_node(driver_folder: Path, shipped: list[Any], on_drivers_node: bool) -> Path:
    """The prepared graphs on this node: in its own cache, the driver's folder (on the driver's
    node), or written into its cache from the files the driver shipped. Other nodes never read
    the driver's path: on another machine it may be a shared disk or nothing at all."""
    from xclip_cli.model.onnx.cache import entry_lock, install_entry, onnx_dir, read_manifest

    local = onnx_dir() / driver_folder.name
    for folder in (local, driver_folder) if on_drivers_node else (local,):
        if read_manifest(folder) is not None:
            return folder
    if not shipped:
        raise ModelLoadError(f"the prepared ONNX graphs {driver_folder.name} are not on this node")
    import ray

    files: dict[str, bytes] = ray.get(shipped[0])

    def write(work: Path) -> None:
        for name, data in files.items():
            (work / name).write_bytes(data)

    with entry_lock(local):
        if read_manifest(local) is None:
            install_entry(local, write)
    return local


def _check_options(ray_options: RayOptions) -> None:
    if ray_options.concurrency < 1:
        raise UsageError(f"--concurrency {ray_options.concurrency}: need at least one model actor")
    if ray_options.num_gpus < 0 or ray_options.cpus_per_actor <= 0 or ray_options.decode_cpus <= 0:
        raise UsageError("--num-gpus must be >= 0, --cpus-per-actor and --decode-cpus > 0")


def _engine_error(exc: BaseException) -> XClipError:
    """The domain error a worker raised, if any, else what Ray reported, on one line.

    Ray passes an actor's failure on as text (its traceback), so an ``xclip_cli`` error is
    recognised by its last line and raised again as itself, with its message and exit code.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, XClipError):
            return seen
        text = str(getattr(seen, "error_msg", "") or seen)
        found = _WORKER_ERROR.search(text)
        if found and found["name"] in _RAISABLE:
            return _RAISABLE[found["name"]](found["message"])
        missing = _MISSING_MODULE.search(text)
        if missing:  # a node whose Python lacks what the [ray] extra brings (pyarrow, pandas...)
            node = _NODE_IP.search(text)
            where = f"Ray node {node[1]}" if node else "a Ray node"
            return MissingDependency(
                f"{where} cannot run the scan: no module {missing[1] or missing[2]!r} there; install 'xclip-cli[ray]' "
                "(the same version as here) on every node"
            )
        seen = seen.__cause__ or seen.__context__
    return EngineError(f"the Ray scan failed: {type(exc).__name__}: {first_line(exc)}")


# "No module named 'x'", or "import of x halted; None in sys.modules" (a module taken out)
_MISSING_MODULE = re.compile(r"No module named '([\w.]+)'|import of ([\w.]+) halted")
_NODE_IP = re.compile(r"\bip=([0-9a-fA-F.:]+)\)")


_WORKER_ERROR = re.compile(r"^xclip_cli\.errors\.(?P<name>\w+): (?P<message>.+)$", re.MULTILINE)
_RAISABLE: dict[str, type[XClipError]] = {
    error.__name__: error
    for error in (EngineError, LabelSetError, MissingDependency, ModelLoadError, OutputError, UsageError)
}

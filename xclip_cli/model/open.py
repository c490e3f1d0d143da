"""Which backend runs a checkpoint: ONNX Runtime on the CPU, torch elsewhere.

``open_backend`` is what every command (and the Ray engine's driver) calls. ``auto``, the
default, runs fp32 and int8 on ONNX Runtime when the model runs on the CPU, and torch on a GPU
or for bf16. A checkpoint is prepared for ONNX Runtime the first time it runs there (about a
minute for a base model on 2 cores, said on stderr; ``xclip models prepare`` does it ahead);
from then on it opens without importing torch or transformers, as long as its files have not
changed. ``--backend torch`` never prepares anything.

A prepared folder (``xclip models prepare --output DIR``) is a model too: ``--model DIR`` runs
it on ONNX Runtime, on any machine, without the checkpoint, torch or transformers. Anything
that needs those (preparing, ``--backend torch``, bf16) in an install without them is refused
in one line with the command that installs them (``MissingDependency``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from xclip_cli.errors import MissingDependency, OutputError, UsageError
from xclip_cli.model.backend import BACKENDS, ONNX_PRECISIONS, Backend

EXPORT_PACKAGES = ("onnxruntime", "onnx", "onnxscript")
TORCH_PACKAGES = ("torch", "transformers")
TORCH_EXTRA = "pip install 'xclip-cli[torch]'"


def open_backend(
    model: str,
    device: str = "auto",
    precision: str = "fp32",
    backend: str = "auto",
    say: Callable[[str], None] | None = None,
    threads: int | None = None,
    videos: int | None = None,
) -> Backend:
    """The checkpoint on the asked backend: ``onnx``, ``torch`` or ``auto`` (see the module).

    ``say`` receives one-line notes (preparing, warnings); ``threads`` caps ONNX Runtime's
    threads (a Ray actor's share of a node); ``videos``: how many videos (times views) the run
    will pass through the vision graph, when known: on ONNX Runtime a few open it faster, and 0
    (a run that scores stored features) loads it on first use, if ever (``OnnxRunner.open``).
    """
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision == "int8" and backend == "torch":
        raise UsageError("--precision int8 runs on ONNX Runtime: use --backend onnx (or auto)")
    if precision not in ONNX_PRECISIONS and backend == "onnx":
        raise UsageError(f"--backend onnx runs fp32 or int8, not --precision {precision}: use --backend torch")
    prepared = _prepared_folder(model)
    if prepared is not None:
        return _open_prepared(prepared, device, precision, backend, say, threads, videos)
    if backend != "torch" and precision in ONNX_PRECISIONS and _installed("onnxruntime"):
        from xclip_cli.model.device import surely_cpu
        from xclip_cli.model.onnx.cache import add_int8, find_prepared
        from xclip_cli.model.onnx.runner import OnnxRunner

        folder = find_prepared(model) if surely_cpu(device) else None
        if folder is not None and (precision != "int8" or _installed("onnx")):
            if precision == "int8":
                add_int8(folder, say)  # quantised from the fp32 graph: no torch needed
            return OnnxRunner.open(folder, model, int8=precision == "int8", threads=threads, videos=videos)
    return _open_with_torch(model, device, precision, backend, say, threads, videos)


def _open_with_torch(
    model: str,
    device: str,
    precision: str,
    backend: str,
    say: Callable[[str], None] | None,
    threads: int | None,
    videos: int | None,
) -> Backend:
    """Load with transformers; for ONNX Runtime, export the graphs first (once per checkpoint)."""
    missing = [name for name in TORCH_PACKAGES if not _installed(name)]
    if missing:
        why = (
            "--backend torch"
            if backend == "torch"
            else (
                f"--precision {precision}"
                if precision not in ONNX_PRECISIONS
                else f"preparing {model} for ONNX Runtime"
            )
        )
        raise MissingDependency(
            f"{why} needs {' and '.join(missing)}, not installed here: {TORCH_EXTRA} "
            "(or run a folder prepared elsewhere: xclip models prepare MODEL --output DIR, then --model DIR)"
        )
    from xclip_cli.model.device import bf16_is_fast
    from xclip_cli.model.onnx.cache import checkpoint_stamp
    from xclip_cli.model.torch.runner import XClipRunner

    stamp = checkpoint_stamp(model)  # before loading: names the files that were loaded
    runner = XClipRunner.from_pretrained(model, device=device, precision="fp32" if precision == "int8" else precision)
    if precision == "bf16" and not bf16_is_fast(runner.device) and say is not None:
        say("xclip: warning: this CPU has no bfloat16 units: --precision bf16 will be slower than fp32")
    on_cpu = runner.device.type == "cpu"
    if backend == "torch" or (backend == "auto" and precision != "int8" and not (on_cpu and precision == "fp32")):
        return runner
    if not on_cpu:
        raise UsageError(f"--backend onnx runs on the CPU, not on {runner.device}: use --device cpu or --backend torch")
    missing = [name for name in EXPORT_PACKAGES if not _installed(name)]
    if missing:
        if backend == "auto" and precision == "fp32":
            return runner  # a trimmed install: torch it is
        raise MissingDependency(f"preparing {model} for ONNX Runtime needs {' and '.join(missing)}: {TORCH_EXTRA}")
    from xclip_cli.model.onnx.export import prepare
    from xclip_cli.model.onnx.runner import OnnxRunner

    try:
        folder = prepare(runner, say, int8=precision == "int8", stamp=stamp or checkpoint_stamp(model))
    except OutputError as exc:
        if backend != "auto" or precision != "fp32":
            raise
        if say is not None:
            say(f"xclip: warning: {exc}; running on torch")
        return runner
    del runner  # its memory is the graphs' now
    return OnnxRunner.open(folder, model, int8=precision == "int8", threads=threads, videos=videos)


def _prepared_folder(model: str) -> Path | None:
    """``model`` as a prepared folder (its manifest whole), else None: a checkpoint id or folder."""
    from xclip_cli.model.onnx.cache import MANIFEST, read_manifest

    folder = Path(model).expanduser()
    if not (folder / MANIFEST).is_file():
        return None
    if read_manifest(folder) is None:
        raise UsageError(f"{folder}: not a whole prepared model (its manifest lists files that are missing or changed)")
    return folder


def _open_prepared(
    folder: Path,
    device: str,
    precision: str,
    backend: str,
    say: Callable[[str], None] | None,
    threads: int | None,
    videos: int | None,
) -> Backend:
    """A prepared folder on ONNX Runtime: the only way it runs."""
    from xclip_cli.model.onnx.cache import VISION_INT8, add_int8, read_manifest
    from xclip_cli.model.onnx.runner import OnnxRunner

    if backend == "torch" or precision not in ONNX_PRECISIONS or device.strip().lower() not in ("auto", "cpu"):
        raise UsageError(
            f"{folder}: a prepared folder runs on ONNX Runtime on the CPU (fp32 or int8); "
            "--backend torch, bf16 and GPUs need the original checkpoint"
        )
    if not _installed("onnxruntime"):
        raise MissingDependency("a prepared folder runs on ONNX Runtime: pip install onnxruntime")
    manifest = read_manifest(folder)
    assert manifest is not None
    if precision == "int8" and VISION_INT8 not in manifest["sizes"]:
        if not _installed("onnx"):
            raise MissingDependency(
                f"{folder} has no int8 graph, and quantising one needs onnx: pip install onnx "
                "(or prepare it with --precision int8)"
            )
        add_int8(folder, say)
    return OnnxRunner.open(folder, str(manifest["model"]), int8=precision == "int8", threads=threads, videos=videos)


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None

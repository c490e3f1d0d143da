"""Ray for the scan engine (``run.ray``): joining a cluster or starting one here, quietly.

Ray's own logs stay off the user's terminal unless ``--verbose``; a cluster that does not
answer, or a local instance too small for the asked actors, is refused in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from xclip_cli.errors import EngineError, MissingDependency, UsageError

if TYPE_CHECKING:
    from xclip_cli.run.ray import RayOptions

CONNECT_TIMEOUT = 5.0  # seconds to wait for a cluster's address to answer
DECODE_MEMORY = 512 * 2**20  # bytes a decoding task may use: frames are resized as they are decoded


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependency("--engine ray needs Ray: pip install 'xclip-cli[ray]'") from None
    return ray


def resolve_address(address: str | None) -> str:
    """The address to give ``ray.init``: the option, else ``RAY_ADDRESS``, else ``"local"``.

    ``"local"`` starts a new instance even where ``ray start`` runs one (``ray.init()`` alone
    would join it). A host:port that does not answer fails now, not after Ray's minutes of retries.
    """
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
        except OSError as exc:
            raise EngineError(
                f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
                "(is `ray start --head` running there? is the port open?)"
            ) from None
    return address


def connect(ray: Any, address: str, ray_options: RayOptions) -> bool:
    """Join the cluster at ``address``, or start a local instance; True when this call started
    one, which must hold the asked actors (``check_fits``; else it is stopped again)."""
    if ray.is_initialized():
        return False
    local = address == "local"
    # Ray's C++ core prints its own error-level lines on this process's stderr (one for every Ray
    # Data actor: arguments in the object store with restarts on, ray#53727, which the actors here
    # are built to survive): off unless --verbose or the user's own setting, read as Ray starts.
    quiet = not ray_options.verbose and "RAY_BACKEND_LOG_LEVEL" not in os.environ
    try:
        with _ray_backend_quiet() if quiet else contextlib.nullcontext():
            ray.init(
                address=address,
                num_cpus=ray_options.num_cpus if local else None,
                include_dashboard=False,
                logging_level=logging.INFO if ray_options.verbose else logging.ERROR,
                log_to_driver=ray_options.verbose,
                configure_logging=True,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if address == "auto":
            raise EngineError(
                "--ray-address auto: no Ray cluster is running on this machine "
                "(start one with `ray start --head`, or leave out --ray-address for a new one)"
            ) from None
        where = "a local Ray instance" if local else f"the Ray cluster at {address}"
        raise EngineError(f"cannot start or reach {where}: {first_line(exc)}") from None
    if local:
        try:
            check_fits(ray.cluster_resources(), ray_options)
        except BaseException:
            ray.shutdown()
            raise
    return local


@contextlib.contextmanager
def _ray_backend_quiet() -> Iterator[None]:
    """Ray's C++ logging at fatal only, for the Ray started (or joined) meanwhile; its note that
    it read the setting, written on file descriptor 2, goes to /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        del os.environ["RAY_BACKEND_LOG_LEVEL"]


def quiet_logs(verbose: bool) -> None:
    """Ray Data logs a failed run with full tracebacks; the one-line error says it all."""
    level = logging.INFO if verbose else logging.CRITICAL
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(level)


def check_fits(resources: dict[str, float], ray_options: RayOptions) -> None:
    """On an instance started here, refuse actors that leave no CPU for decoding (Ray would wait forever).

    A cluster that was joined may be autoscaling: it is left to Ray to wait for its nodes.
    """
    cpus, gpus, memory = resources.get("CPU", 0.0), resources.get("GPU", 0.0), resources.get("memory", 0.0)
    actors = ray_options.concurrency
    if memory < DECODE_MEMORY:
        raise UsageError(
            f"this machine's Ray has {memory / 2**20:.0f} MiB of memory for tasks; "
            f"decoding needs {DECODE_MEMORY // 2**20} MiB"
        )
    if ray_options.num_gpus * actors > gpus:
        raise UsageError(
            f"this machine's Ray has {gpus:g} GPUs: {actors} model actors x --num-gpus {ray_options.num_gpus:g} "
            "cannot start"
        )
    if ray_options.cpus_per_actor * actors + ray_options.decode_cpus > cpus:
        raise UsageError(
            f"this machine's Ray has {cpus:g} CPUs: {actors} model actors x --cpus-per-actor "
            f"{ray_options.cpus_per_actor:g} leave none for decoding; lower --concurrency or --cpus-per-actor"
        )


def first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__

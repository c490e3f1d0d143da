"""Find video files: folders walked in a stable order, path lists, and stable shards.

Pure file-system helpers (no torch): ``scan``, ``embed`` and ``eval`` share them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from xclip_cli.errors import UsageError
from xclip_cli.store.results_file import video_identity

NUL = "\0"  # separates the paths of a ``find -print0`` list; no path can contain it

VIDEO_EXTENSIONS = frozenset(
    {"mp4", "m4v", "mov", "mkv", "webm", "avi", "wmv", "flv", "mpg", "mpeg", "m2ts", "mts", "ts"}
    | {"3gp", "3g2", "ogv", "vob", "mxf", "gif"}
)


@dataclass(frozen=True)
class Shard:
    """Process only the paths whose stable hash falls in part ``index`` of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` with 0 <= i < n, e.g. ``0/4``."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
        if count < 1 or not 0 <= index < count:
            raise UsageError(f"--shard {text!r}: need 0 <= i < n")
        return cls(index, count)

    def __contains__(self, path: str) -> bool:
        # A hash of the path, not its position: shards stay the same when files are added.
        digest = hashlib.sha1(path.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def find_videos(
    roots: Iterable[str],
    *,
    recursive: bool = True,
    pattern: str | None = None,
    extensions: frozenset[str] = VIDEO_EXTENSIONS,
) -> Iterator[str]:
    """Video files under ``roots`` in a stable (sorted) order, by extension and glob.

    Directory symlinks are not followed (no loops); a root that is a file is yielded as is.
    ``pattern`` is matched against the path relative to its root (``**/*.mp4``, ``cam1/*``).
    """
    for root in roots:
        if os.path.isfile(root):
            yield root
            continue
        if not os.path.isdir(root):
            raise UsageError(f"{root}: no such folder")
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            if not recursive:
                dirs.clear()
            for name in sorted(files):
                path = os.path.join(folder, name)
                if _wanted(path, root, pattern, extensions):
                    yield path


def _wanted(path: str, root: str, pattern: str | None, extensions: frozenset[str]) -> bool:
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in extensions:
        return False
    if pattern is None:
        return True
    relative = os.path.relpath(path, root)
    # fnmatch's "*" crosses folders, so "**/*.mp4" also matches files at the top level.
    return fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, pattern.removeprefix("**/"))


def watched(
    roots: Iterable[str],
    *,
    recursive: bool = True,
    pattern: str | None = None,
    extensions: str | None = None,
    shard: str | None = None,
) -> Callable[[str], str | None]:
    """For a watcher's absolute paths: the name ``collect_paths`` would give the file (its root
    as given, then the path below it), or None for a file it would not take (``--ext``,
    ``--glob``, ``--shard``, a subfolder without ``recursive``). Roots that are files are
    watched through their folder and only they are taken."""
    wanted = VIDEO_EXTENSIONS if extensions is None else parse_extensions(extensions)
    part = Shard.parse(shard) if shard is not None else None
    bases = [(os.path.abspath(root), root) for root in roots]

    def name(path: str) -> str | None:
        absolute = os.path.abspath(path)
        for base, root in bases:
            if absolute == base and os.path.isfile(base):
                found = root
            elif absolute.startswith(base.rstrip(os.sep) + os.sep):
                relative = os.path.relpath(absolute, base)
                if not recursive and os.sep in relative:
                    continue
                found = os.path.join(root, relative)
                if not _wanted(found, root, pattern, wanted):
                    continue
            else:
                continue
            if part is None or found in part:
                return found
        return None

    return name


def parse_extensions(text: str) -> frozenset[str]:
    """``"mp4, .MKV"`` -> {"mp4", "mkv"}."""
    extensions = frozenset(part.strip().lower().lstrip(".") for part in text.split(",") if part.strip())
    if not extensions:
        raise UsageError(f"--ext {text!r}: expected a comma list of extensions, e.g. mp4,mkv")
    return extensions


def read_path_list(lines: Iterable[str], origin: str = "the path list") -> Iterator[str]:
    """Paths from a list file or stdin, as they come: one per line, exactly as written (blank
    lines skipped), or NUL-separated (``find -print0``) once a NUL byte shows.

    No path can hold a NUL byte, so one means the list is NUL-separated; from then on a newline
    is part of a path. A list that switches after newline-separated paths were read is refused
    (``UsageError`` naming ``origin``): those paths were split wrongly.
    """
    read = 0  # paths yielded while still newline-separated
    rest: str | None = None  # NUL mode: the unterminated tail so far
    for number, line in enumerate(lines, start=1):
        if rest is None and NUL in line:
            if read:
                raise UsageError(
                    f"{origin}: NUL-separated paths from line {number} on, after {read} newline-separated "
                    "ones: separate them all one way (find -print0, or one per line)"
                )
            rest = ""
        if rest is None:
            path = line.rstrip("\r\n")
            if path.strip():
                read += 1
                yield path
            continue
        *paths, rest = (rest + line).split(NUL)
        yield from (path for path in paths if path.strip())
    if rest is not None and rest.strip():
        yield rest


def collect_paths(
    folders: Iterable[str],
    listed: Iterable[str] = (),
    *,
    recursive: bool = True,
    pattern: str | None = None,
    extensions: str | None = None,
    shard: str | None = None,
) -> list[str]:
    """The videos found in ``folders``, then the ``listed`` paths (``read_path_list``'s), kept to
    ``shard`` (``"i/n"``), without repeats: a video named twice (two path forms, a symlink beside
    its target) is kept under the first name found; ``extensions`` as ``--ext`` takes them."""
    wanted = VIDEO_EXTENSIONS if extensions is None else parse_extensions(extensions)
    paths = [*find_videos(folders, recursive=recursive, pattern=pattern, extensions=wanted), *listed]
    if shard is not None:
        part = Shard.parse(shard)
        paths = [path for path in paths if path in part]
    first: dict[str, str] = {}
    for path in paths:
        first.setdefault(video_identity(path), path)
    return list(first.values())

"""Say in plain words why a file is not a video, before and after ffmpeg has tried it.

Before opening: a missing path, a folder, a pipe or device (ffmpeg would wait on it forever),
an empty file. After ffmpeg refuses a file: a look at its first bytes tells a text file or a
saved HTML error page from a damaged video, which ffmpeg reports alike as "invalid data".
"""

from __future__ import annotations

import os
import stat

from xclip_cli.errors import VideoError

SNIFF_BYTES = 4096
# Box types an MP4/MOV file starts with; such a file that ffmpeg cannot open is damaged,
# most often cut off before its index ("moov" box) was written.
MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def check_openable(name: str) -> None:
    """Raise ``VideoError`` unless ``name`` is a non-empty regular file (URLs pass unchecked)."""
    if "\0" in name:  # the OS refuses it (Python: ValueError); no file can be named so
        raise VideoError(name, "a path cannot contain a NUL byte")
    if "://" in name:
        return
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise VideoError(name, "no such file") from None
    except OSError as exc:
        raise VideoError(name, exc.strerror or str(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise VideoError(name, "a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise VideoError(name, "not a regular file (a pipe, device or socket)")
    if info.st_size == 0:
        raise VideoError(name, "empty file (0 bytes)")
    if not os.access(name, os.R_OK):
        raise VideoError(name, "permission denied")


def unreadable_reason(name: str) -> str:
    """Why ffmpeg found no video in ``name``, judged from its first bytes."""
    try:
        with open(name, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return "not a video file ffmpeg can read"
    if head[4:8] in MP4_BOXES:
        return "a damaged or truncated MP4/MOV file (its index is missing or unreadable)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML page, not a video (a failed download or an error page saved as video?)"
    if text.startswith((b"{", b"[")) and _looks_like_text(head):
        return "a JSON file, not a video"
    if _looks_like_text(head):
        return "a text file, not a video"
    if not head.strip(b"\0"):
        return "not a video file: only zero bytes at its start"
    return "not a video file ffmpeg can read (unknown or damaged format)"


def _looks_like_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut by the sniff window is still text.
        try:
            decoded = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in decoded)
    return bool(decoded) and printable / len(decoded) > 0.95

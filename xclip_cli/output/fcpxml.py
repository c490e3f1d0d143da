"""Final Cut Pro X XML (FCPXML 1.8, which Final Cut Pro 10.4 and later and DaVinci Resolve
import) for ``output.editing``, written with the standard library.

OpenTimelineIO's fcpx_xml adapter (1.0) looks elements up by name in XPath quoted with
apostrophes, so a clip named ``a dog's tail`` stops it, and it knows a frame rate only as an
integer, so 23.976 and 29.97 fps files get no frame duration. Here every time is an exact
fraction of a second on a frame boundary: the project (``sequence``) runs at the timeline's rate,
or the nearest standard rate, and each file keeps its own rate in its ``asset``; clips and
markers are placed on the project's frames. Files are ``file://`` URLs, percent-encoded.
The adapter reads these files back (tested, at whole rates).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from fractions import Fraction
from typing import TYPE_CHECKING, TextIO

from xclip_cli.media.rates import STANDARD_RATES
from xclip_cli.output.editing import GENERATOR, file_url, printable, regrid

if TYPE_CHECKING:
    from xclip_cli.output.editing import Edit

FCPXML_VERSION = "1.8"
EVENT_NAME = "xclip"
# The first lines of every file written here: holds_xclip_output tells ours by the comment.
PROLOGUE = f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n<!-- {GENERATOR} -->\n'


def write_fcpxml(edit: Edit, stream: TextIO) -> None:
    """``edit`` as an FCPXML document: resources (formats, one asset per file), then a library
    with one event and one project whose spine holds the clips, markers inside them."""
    rate = edit.rate if edit.rate in STANDARD_RATES else min(STANDARD_RATES, key=lambda r: abs(math.log(r / edit.rate)))
    root = ET.Element("fcpxml", version=FCPXML_VERSION)
    resources = ET.SubElement(root, "resources")
    ids: dict[object, str] = {}  # a format's rate or an asset's path: its resource id

    def format_id(rate: Fraction, width: int = 0, height: int = 0) -> str:
        if rate not in ids:
            ids[rate] = f"r{len(ids) + 1}"
            attributes = {"id": ids[rate], "frameDuration": _time(1, rate)}
            if width and height:
                attributes |= {"width": str(width), "height": str(height)}
            ET.SubElement(resources, "format", attributes)
        return ids[rate]

    for cut in edit.cuts:
        source = cut.source
        if source.path not in ids:
            asset_format = format_id(source.rate, source.probe.width, source.probe.height)
            ids[source.path] = f"r{len(ids) + 1}"
            ET.SubElement(resources, "asset", {
                "id": ids[source.path], "name": _text(os.path.basename(source.path)), "src": _url(source.location),
                "start": "0s", "duration": _time(source.frames, source.rate), "hasVideo": "1",
                "hasAudio": "1" if source.probe.audio else "0", "format": asset_format,
            })  # fmt: skip
    placed = regrid(edit, rate)
    length = sum(cut.end - cut.start for cut in placed.cuts)
    project = ET.SubElement(ET.SubElement(ET.SubElement(root, "library"), "event", name=EVENT_NAME), "project")
    project.set("name", _text(edit.name))
    sequence = ET.SubElement(project, "sequence", {
        "format": format_id(rate), "duration": _time(length, rate), "tcStart": "0s", "tcFormat": "NDF",
    })  # fmt: skip
    spine = ET.SubElement(sequence, "spine")
    offset = 0
    for cut in placed.cuts:
        clip = ET.SubElement(spine, "asset-clip", {
            "name": _text(cut.name), "ref": ids[cut.source.path], "offset": _time(offset, rate),
            "start": _time(cut.start, rate), "duration": _time(cut.end - cut.start, rate), "tcFormat": "NDF",
        })  # fmt: skip
        for mark in cut.marks:
            ET.SubElement(clip, "marker", {
                "start": _time(mark.start, rate), "duration": _time(mark.end - mark.start, rate),
                "value": _text(mark.name), "note": _text(mark.comment),
            })  # fmt: skip
        offset += cut.end - cut.start
    ET.indent(root, space="    ")
    stream.write(PROLOGUE + ET.tostring(root, encoding="unicode") + "\n")
    stream.flush()


def _time(frames: int, rate: Fraction) -> str:
    """``frames`` at ``rate`` as FCPXML writes time: exact seconds, ``0s``, ``2s`` or ``1001/30000s``."""
    seconds = Fraction(frames) / rate
    if seconds == 0:
        return "0s"
    return f"{seconds.numerator}s" if seconds.denominator == 1 else f"{seconds.numerator}/{seconds.denominator}s"


def _text(text: str) -> str:
    """Text XML 1.0 can hold, line breaks kept (ElementTree escapes them, ``&``, ``<`` and quotes)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _url(location: str) -> str:
    return location if "://" in location else file_url(location)

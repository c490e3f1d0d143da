"""The HTML report, rendered by a real headless Chromium (Debian's `chromium`; `.ci/run`
installs it). Outside CI the browser tests skip, saying why, when Chromium is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke, write_video

from xclip_cli.errors import ExitCode
from xclip_cli.preprocess import PreprocessConfig
from xclip_cli.report import scan_report, write_report
from xclip_cli.results import Prediction, VideoResult
from xclip_cli.thumbnails import ThumbnailStore, read_thumbnails, store_path, thumbnail

CONFIG = PreprocessConfig(None, None, None, 3, 1 / 255, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))

LABELS = "cooking, dancing, skateboarding"
# Screenshots of the rendered pages, kept for people to look at (the path is printed too).
SHOTS = Path(os.environ.get("XCLIP_TEST_ARTIFACTS", Path(__file__).parent.parent / "build" / "test-artifacts"))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it")
        pytest.skip("headless Chromium is not installed here (sudo apt install chromium); CI runs this test")
    return found


class Dom(HTMLParser):
    """The rendered DOM, as Chromium dumps it: elements with their attributes and text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.open: list[tuple[str, dict[str, str], list[str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = (tag, {key: value or "" for key, value in attrs}, [])
        self.elements.append(element)
        if tag not in ("img", "meta", "input", "br"):
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element[2].append(data)

    def find(self, tag: str, cls: str | None = None) -> list[tuple[str, dict[str, str], list[str]]]:
        return [e for e in self.elements if e[0] == tag and (cls is None or cls in e[1].get("class", "").split())]

    def text(self, element: tuple[str, dict[str, str], list[str]]) -> str:
        return "".join(element[2])


def render(page: Path, tmp_path: Path, fragment: str = "", shot: str | None = None) -> Dom:
    """Load the page in headless Chromium, let its script run, and return the DOM it built."""
    base = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=10000",
        "--window-size=1280,1600",
        "--enable-logging=stderr",
        "--v=0",
    ]
    url = page.resolve().as_uri() + fragment
    dumped = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    console = [line for line in dumped.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not [line for line in console if "rror" in line or "Uncaught" in line], console
    if shot is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        picture = SHOTS / shot
        subprocess.run([*base, f"--screenshot={picture}", url], capture_output=True, timeout=180, check=True)
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshot: {picture}")
    dom = Dom(dumped.stdout)
    (body,) = dom.find("body")
    assert body[1].get("data-ready") == "1" and body[1].get("data-errors") == "0", body[1]
    return dom


def loaded_images(dom: Dom) -> list[dict[str, str]]:
    return [attrs for tag, attrs, _ in dom.elements if tag == "img" and attrs.get("data-loaded") == "1"]


def test_a_scan_report_shows_every_video_and_survives_a_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    write_video(folder / "a.mp4", num_frames=24)
    write_video(folder / "b.mp4", num_frames=30, size=(48, 64))
    (folder / "broken.mp4").write_text("<html>not a video</html>\n")
    results, page = tmp_path / "results.csv", tmp_path / "report.html"
    args = ["scan", str(folder), "-o", str(results), "--report", str(page), "-m", str(tiny_model_dir), "-l", LABELS]
    args.append("--multi-label")  # the cards show tags too
    first = invoke([*args, "-q"])
    assert first.exit_code == ExitCode.PARTIAL, first.stderr
    dom = render(page, tmp_path, "#all", shot="scan-report.png")
    cards = dom.find("article", "card")
    assert len(cards) == 3 and len(dom.find("article", "error")) == 1
    assert {dom.text(h) for h in dom.find("h2")} == {str(folder / name) for name in ("a.mp4", "b.mp4", "broken.mp4")}
    assert {dom.text(name) for name in dom.find("span", "name")} <= {"cooking", "dancing", "skateboarding"}
    assert len(loaded_images(dom)) == 16  # 8 frames the model saw, for each video that decoded
    assert "an HTML page, not a video" in "".join(dom.text(p) for p in dom.find("p", "problem"))
    assert len(dom.find("p", "tags")) == 2 and all(dom.text(p).startswith("tags: ") for p in dom.find("p", "tags"))
    # A resumed scan: the page still shows the earlier videos, with their thumbnails.
    write_video(folder / "c.mp4", num_frames=24)
    again = invoke([*args, "-q"])
    assert again.exit_code == ExitCode.PARTIAL, again.stderr  # only c.mp4 was left to do; broken.mp4's row stays
    assert set(read_thumbnails(store_path(page))) == {str(folder / n) for n in ("a.mp4", "b.mp4", "c.mp4")}
    dom = render(page, tmp_path, "#all")
    assert len(dom.find("article", "card")) == 4 and len(loaded_images(dom)) == 24
    assert len(dom.find("p", "tags")) == 3  # read back from the CSV for the earlier videos
    # The filter, preset from the address: only the cards whose labels or path match stay visible.
    dom = render(page, tmp_path, "#q=broken")
    visible = [card for card in dom.find("article", "card") if "hidden" not in card[1]]
    assert len(visible) == 1 and "broken.mp4" in dom.text(visible[0])


def test_a_timeline_report_puts_segments_on_a_time_axis(tiny_model_dir: Path, tmp_path: Path) -> None:
    video, page = write_video(tmp_path / "clip.mp4", num_frames=96), tmp_path / "timeline.html"
    args = ["timeline", str(video), "-m", str(tiny_model_dir), "-l", LABELS, "--window", "2", "--no-merge"]
    result = invoke([*args, "-f", "json", "--report", str(page)])
    assert result.exit_code == ExitCode.OK, result.stderr
    import json

    segments = json.loads(result.stdout)["segments"]
    dom = render(page, tmp_path, "#all", shot="timeline-report.png")
    blocks = dom.find("div", "block")
    assert [dom.text(block) for block in blocks] == [segment["label"] for segment in segments]
    lefts = [float(block[1]["style"].split("left:")[1].split("%")[0]) for block in blocks]
    assert lefts == pytest.approx([100 * s["start"] / 8.0 for s in segments], abs=0.01)  # 96 frames at 12 fps
    assert len(dom.find("article", "card")) == len(segments) == len(loaded_images(dom))


def frame_jpegs(seed: int) -> tuple[bytes, ...]:
    """Eight real-sized thumbnails (96 px, from the model's input) of a gradient with noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-1.5, 1.5, 224, dtype=np.float32)
    frames = []
    for shift in range(8):
        pixels = np.stack([np.add.outer(ramp, np.roll(ramp, 20 * shift))] * 3) / 2
        frames.append(thumbnail(pixels + rng.normal(0, 0.1, pixels.shape).astype(np.float32), CONFIG))
    return tuple(frames)


def many_results(count: int, thumbs: list[tuple[bytes, ...]]) -> list[VideoResult]:
    hostile = '<!-- <script>document.body.dataset.errors="pwned"</script><img src=x onerror=alert(1)>'
    not_utf8 = "videos/caf\udce9.mp4"  # a Latin-1 file name, as Python holds it (surrogateescape)
    return [
        VideoResult(
            path={0: hostile, 1: not_utf8}.get(index, f"videos/{index:05d}.mp4"),
            predictions=(Prediction("cooking" if index % 2 else "</script><!--dancing", 0.7, None),),
            model="m",
            labelset="s",
            duration=10.0,
            width=64,
            height=48,
            thumbnails=thumbs[index % len(thumbs)] if thumbs else (),
        )
        for index in range(count)
    ]


def test_thousands_of_videos_render_and_text_stays_text(tmp_path: Path) -> None:
    page = tmp_path / "many.html"
    write_report(scan_report(many_results(3000, []), {}, "xclip scan: <!-- many"), page)
    dom = render(page, tmp_path)
    assert len(dom.find("article", "card")) == 3000
    titles = {dom.text(h) for h in dom.find("h2")}
    assert many_results(1, [])[0].path in titles  # text, never markup
    assert "videos/caf\ufffd.mp4" in titles  # the byte that is not UTF-8 shown as such
    assert "</script><!--dancing" in {dom.text(name) for name in dom.find("span", "name")}
    assert len(dom.find("script")) == 2  # the page's own data and script, nothing injected
    # A chip's filter (=label): only the videos whose top label it is.
    dom = render(page, tmp_path, "#q=%3Dcooking")
    assert sum("hidden" not in card[1] for card in dom.find("article", "card")) == 1500


def test_images_load_only_near_the_viewport(tmp_path: Path) -> None:
    thumbs = [frame_jpegs(seed) for seed in range(8)]
    page = tmp_path / "lazy.html"
    write_report(scan_report(many_results(300, thumbs), {}, "xclip scan: lazy"), page)
    per_video = page.stat().st_size / 300
    print(f"report page: {per_video / 1e3:.1f} KB per video")
    assert per_video < 20_000  # 8 thumbnails of 96 px, base64: about 14 KB per video
    shown = len(loaded_images(render(page, tmp_path)))
    assert 0 < shown < 300 * 8 / 4  # only the cards near the viewport have loaded their images
    assert len(loaded_images(render(page, tmp_path, "#all"))) == 300 * 8


def test_a_report_name_that_is_not_html_is_refused(tmp_path: Path) -> None:
    result = invoke(["scan", str(tmp_path), "--report", str(tmp_path / "report.csv")])
    assert result.exit_code == ExitCode.USAGE and "--report" in result.stderr and ".html" in result.stderr
    same = invoke(
        ["scan", str(tmp_path), "-f", "csv", "-o", str(tmp_path / "r.html"), "--report", str(tmp_path / "r.html")]
    )
    assert same.exit_code == ExitCode.USAGE and "is also another output" in same.stderr
    store = tmp_path / "r.thumbs.jsonl"  # where the page keeps its thumbnails
    clash = invoke(["scan", str(tmp_path), "-f", "jsonl", "-o", str(store), "--report", str(tmp_path / "r.html")])
    assert clash.exit_code == ExitCode.USAGE and "keeps its thumbnails" in clash.stderr


def test_the_thumbnail_store_keeps_odd_file_names_and_survives_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "r.thumbs.jsonl"
    store = ThumbnailStore(path)
    store.add("caf\udce9.mp4", [b"\xff\xd8jpeg"])
    store.close()
    with open(path, "a", encoding="ascii") as handle:
        handle.write('{"path": "cut.mp4", "jpe')  # a kill mid-line
    store = ThumbnailStore(path)
    store.add("next.mp4", [b"\xff\xd8more"])
    store.close()
    assert set(read_thumbnails(path)) == {"caf\udce9.mp4", "next.mp4"}


def test_a_report_is_readable_like_any_output(tmp_path: Path) -> None:
    page = tmp_path / "shared.html"
    umask = os.umask(0o022)
    try:
        write_report(scan_report(many_results(2, []), {}, "xclip scan"), page)
    finally:
        os.umask(umask)
    assert page.stat().st_mode & 0o777 == 0o644  # not the temporary file's 0600

"""The HTML report, rendered by a real headless Chromium (Debian's `chromium`; `.ci/run`
installs it). Outside CI the browser tests skip, saying why, when Chromium is absent."""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import LABELS_TEXT, VIDEOS, invoke, write_video

from xclip_cli.errors import ExitCode
from xclip_cli.media.decode import sample_video
from xclip_cli.media.preprocess import PreprocessConfig, preprocess_frame
from xclip_cli.media.thumbnails import ThumbnailStore, read_thumbnails, store_path, video_thumbnails
from xclip_cli.output.report import scan_report, timeline_report, write_report
from xclip_cli.results import Prediction, Tag, Timeline, VideoResult, Window

# A base X-CLIP checkpoint's image processor: short side to 224, centre crop 224, CLIP's mean and std.
FULL_SIZE = PreprocessConfig(
    224, None, (224, 224), 3, 1 / 255, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
)

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
        if tag not in ("img", "meta", "input", "br", "wbr"):
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


def render(page: Path, tmp_path: Path, fragment: str = "", shot: str | None = None, width: int = 1280) -> Dom:
    """Load the page in headless Chromium, ``width`` CSS pixels wide, let its script run, and
    return the DOM it built."""
    base = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=10000",
        f"--window-size={width},1600",
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


@pytest.mark.heavy
def test_a_scan_report_shows_every_video_and_survives_a_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    write_video(folder / "a.mp4", num_frames=24)
    write_video(folder / "b.mp4", num_frames=30, size=(48, 64))
    (folder / "broken.mp4").write_text("<html>not a video</html>\n")
    results, page = tmp_path / "results.csv", tmp_path / "report.html"
    args = [
        "scan",
        str(folder),
        "-o",
        str(results),
        "--report",
        str(page),
        "-m",
        str(tiny_model_dir),
        "-l",
        LABELS_TEXT,
    ]
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
    args = ["timeline", str(video), "-m", str(tiny_model_dir), "-l", LABELS_TEXT, "--window", "2", "--no-merge"]
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


@functools.cache
def real_thumbnails() -> list[tuple[bytes, ...]]:
    """The thumbnails a scan with a full-size model makes of the three real sample clips: 8
    frames each, preprocessed to its 224 px input, then shrunk as the report's."""
    videos = sorted(VIDEOS.glob("*.mp4")) + sorted(VIDEOS.glob("*.webm"))
    sampled = [sample_video(video, 8, transform=lambda rgb: preprocess_frame(rgb, FULL_SIZE)) for video in videos]
    return [video_thumbnails(video, FULL_SIZE) for video in sampled]


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


@pytest.mark.heavy
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


@pytest.mark.heavy
def test_images_load_only_near_the_viewport(tmp_path: Path) -> None:
    page = tmp_path / "lazy.html"
    write_report(scan_report(many_results(300, real_thumbnails()), {}, "xclip scan: lazy"), page)
    per_video = page.stat().st_size / 300
    print(f"report page: {per_video / 1e3:.1f} KB per video")
    assert 26_000 < per_video < 34_000  # 8 thumbnails of 96 px of real footage, base64: about 30 KB (README)
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


# Added to a copy of a page by the layout tests (the page itself has no test hooks): once every
# image has loaded, it measures what a person would see and posts it to the frame around it.
MEASURE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const root = document.documentElement, name = (n) => n.tagName + "." + n.className;
  const layout = {
    scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, innerWidth: window.innerWidth,
    cards: [], percents: [], breaks: [], statusMenu: !document.getElementById("status").hidden,
    blocks: [...document.querySelectorAll(".block")].map((b) => [b.textContent, getComputedStyle(b).backgroundColor]),
  };
  for (const card of document.querySelectorAll("article.card")) {
    const box = card.getBoundingClientRect(), inside = [...card.querySelectorAll("*")];
    const out = (r) => r.width > 0 && (r.left < box.left - 0.5 || r.right > box.right + 0.5);
    const scrolls = (n) => n.scrollWidth > n.clientWidth && ["auto", "scroll"].includes(getComputedStyle(n).overflowX);
    layout.cards.push({
      sticksOut: inside.filter((n) => out(n.getBoundingClientRect())).map(name),
      scrollers: [card, ...inside].filter(scrolls).map(name),
      frames: [...card.querySelectorAll(".strip img")].map((n) => [n.getBoundingClientRect().top, n.width]),
    });
  }
  for (const p of document.querySelectorAll(".p")) layout.percents.push([p.textContent, p.scrollWidth, p.clientWidth]);
  // The characters after which each heading's lines break, read from where each character lies.
  for (const heading of document.querySelectorAll("h1, article h2")) {
    let top = null;
    const walker = document.createTreeWalker(heading, NodeFilter.SHOW_TEXT), range = document.createRange();
    let previous = "";
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (let i = 0; i < node.data.length; i++) {
        range.setStart(node, i); range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        if (rect && top !== null && rect.top > top + 2 && node.data[i] !== " ") layout.breaks.push(previous);
        if (rect) top = rect.top;
        previous = node.data[i];
      }
    }
  }
  const body = document.body.dataset;
  parent.postMessage(JSON.stringify({ ready: body.ready, errors: body.errors, layout: layout }), "*");
}, 0));
</script>
"""


# Headless Chromium's window is at least 500 px wide: a phone's width is a frame that wide, in
# which the page sees that width (its viewport, media queries and all).
FRAME = """<!DOCTYPE html><html><head><style>body { margin: 0; } iframe { border: 0; display: block; }</style></head>
<body><iframe src="PAGE#all" width="WIDTH" height="1600"></iframe><script>
addEventListener("message", (event) => {
  const seen = JSON.parse(event.data);
  Object.assign(document.body.dataset, { ready: seen.ready, errors: seen.errors, layout: JSON.stringify(seen.layout) });
});
</script></body></html>"""


def layout(page: Path, tmp_path: Path, width: int, shot: str) -> dict:
    """What ``page`` looks like ``width`` CSS pixels wide, every image loaded (see MEASURE);
    a screenshot is kept in the test artifacts."""
    measured, frame = page.with_name(f"{page.stem}-measured.html"), page.with_name(f"{page.stem}-{width}.html")
    measured.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    frame.write_text(FRAME.replace("PAGE", measured.name).replace("WIDTH", str(width)), encoding="utf-8")
    (body,) = render(frame, tmp_path, shot=shot, width=max(width, 500)).find("body")
    return json.loads(body[1]["data-layout"])


LONG_NAME = "/media/phone/DCIM/Camera/VID_20240501_102030_HDR-stabilised.final-export_2.mp4"
LONG_LABEL = "a person playing the didgeridoo on a beach at sunset"


def layout_scan_page(tmp_path: Path) -> Path:
    """A scan page with what makes cards wide: long names and labels, 100.0% and 0.0%, an error."""
    thumbs = real_thumbnails()
    labels = (Prediction("surfing", 1.0, None), Prediction(LONG_LABEL, 0.0004, None), Prediction("cooking", 0.0, None))
    common = {"model": "m", "labelset": "s", "duration": 3725.5, "width": 1920, "height": 1080}
    broken = "an HTML page, not a video (a failed download?)"
    results = [
        VideoResult(LONG_NAME, labels, thumbnails=thumbs[0], tags=(Tag("surfing", 0.91, 0.5),), **common),
        VideoResult("clips/b.mp4", labels[::-1], thumbnails=thumbs[1], warnings=("3 frames repeated",), **common),
        VideoResult(LONG_NAME.replace("VID", "BROKEN"), error=broken, model="m"),
        VideoResult("c.webm", labels, thumbnails=thumbs[2], **common),
    ]
    page = tmp_path / "layout-scan.html"
    write_report(scan_report(results, {}, f"xclip scan: {LONG_NAME}"), page)
    return page


def layout_timeline_page(tmp_path: Path) -> Path:
    """A timeline page: segments of five labels in turn, each with a real thumbnail."""
    labels = ("cooking", "dancing", "surfing", "juggling", LONG_LABEL)
    frames = [jpeg for thumbs in real_thumbnails() for jpeg in thumbs]
    windows = []
    for i in range(30):  # windows of 4 s every 2 s over 62 s
        probabilities = np.full(len(labels), 0.0)
        probabilities[(i // 2) % len(labels)] = 1.0  # runs of two windows; 100.0% and 0.0% in the cards
        owned = (2 * i + 1 if i else 0, 2 * i + 3 if i < 29 else 62)
        windows.append(Window(2 * i, 2 * i + 4, *owned, probabilities, thumbnail=frames[i % len(frames)]))
    timeline = Timeline(LONG_NAME, "m", "s", 62.0, 4.0, 2.0, tuple(windows), labels)
    page = tmp_path / "layout-timeline.html"
    write_report(timeline_report(timeline, timeline.segments(), merged=True), page)
    return page


@pytest.mark.parametrize("width", [360, 420, 1400])
@pytest.mark.parametrize("kind", ["scan", "timeline"])
def test_pages_fit_phones_and_wide_screens(kind: str, width: int, tmp_path: Path) -> None:
    page = (layout_scan_page if kind == "scan" else layout_timeline_page)(tmp_path)
    seen = layout(page, tmp_path, width, shot=f"layout-{kind}-{width}.png")
    # No sideways scrolling of the page, and nothing sticking out of a card or scrolling inside one.
    assert seen["innerWidth"] == width and seen["scrollWidth"] <= seen["clientWidth"] <= width, seen
    assert all(not card["sticksOut"] and not card["scrollers"] for card in seen["cards"]), seen["cards"]
    # Every frame a card has, in one row that fits it.
    for card in seen["cards"]:
        assert len({top for top, _ in card["frames"]}) <= 1 and all(w >= 30 for _, w in card["frames"]), card
    assert sum(len(card["frames"]) for card in seen["cards"]) == (24 if kind == "scan" else 15)
    # Percentages in full, never clipped.
    assert seen["percents"] and all(re.fullmatch(r"\d{1,3}\.\d%", text) for text, _, _ in seen["percents"])
    assert all(scroll <= client for _, scroll, client in seen["percents"]), seen["percents"]
    assert {"100.0%", "0.0%"} <= {text for text, _, _ in seen["percents"]}
    # Long names wrap after a separator, not inside a word.
    assert set(seen["breaks"]) <= set("/_-. "), seen["breaks"]
    if width == 360:
        assert seen["breaks"]  # the long name did need to wrap
    # The status menu (classified, failed, with warnings) only where it can pick something.
    assert seen["statusMenu"] == (kind == "scan")


def test_neighbouring_segments_differ_in_colour(tmp_path: Path) -> None:
    seen = layout(layout_timeline_page(tmp_path), tmp_path, 1400, shot="layout-timeline-colours.png")
    labels = [label for label, _ in seen["blocks"]]
    assert labels[:6] == ["cooking", "dancing", "surfing", "juggling", LONG_LABEL, "cooking"]
    # Matplotlib's tab10 in order of first appearance, as `--plot` colours the same segments.
    tab10 = ["rgb(31, 119, 180)", "rgb(255, 127, 14)", "rgb(44, 160, 44)", "rgb(214, 39, 40)", "rgb(148, 103, 189)"]
    colour = dict(seen["blocks"])
    assert [colour[label] for label in labels[:5]] == tab10
    assert all(a[1] != b[1] for a, b in itertools.pairwise(seen["blocks"]))

"""``xclip search INDEX QUERY... --report hits.html``: a card per moment, with the frames of its
best window and a link that opens the video there, rendered by headless Chromium as
``test_report.py`` renders the scan's page."""

from __future__ import annotations

import io
import json
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from helpers import invoke, write_video
from test_moments import _archive, _embed
from test_report import LONG_LABEL, LONG_NAME, Dom, layout, loaded_images, real_thumbnails, render

from xclip_cli.errors import ExitCode, VideoError
from xclip_cli.jobs.classify import load_frames
from xclip_cli.jobs.moments import moment_thumbnails
from xclip_cli.media.thumbnails import video_thumbnails
from xclip_cli.model.open import open_backend
from xclip_cli.options import ClassifyOptions
from xclip_cli.output.report import moments_report, video_link, write_report
from xclip_cli.results import Moment

# A file name and a query that would be markup, a comment, a second fragment or a query string
# if they ever reached the page or a link as anything but text.
HOSTILE_NAME = "café <!-- \"q\" 'x' <script>alert(1)<\\script> #t=9?x=%41.mp4"
HOSTILE_QUERY = "</script><!-- \"a\" 'b' <img src=x onerror=alert(1)> über"


@pytest.fixture(scope="module")
def archive(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder, index): footage/ with the three-section archive, a short clip with a hostile name
    and one deleted after embedding (its moment has no frames to show), windowed."""
    folder = tmp_path_factory.mktemp("moments-report")
    _archive(folder / "footage")
    write_video(folder / "footage" / HOSTILE_NAME, num_frames=12, rate=4)
    gone = write_video(folder / "footage" / "gone.mp4", num_frames=12, rate=4)
    _embed(tiny_model_dir, folder / "footage", folder / "index")
    gone.unlink()
    return folder, folder / "index"


def clock(seconds: float) -> str:
    """The page's clock (page.js ``clock``) for times under an hour."""
    tenths = round(seconds * 10)
    return f"{tenths // 600}:{tenths % 600 / 10:04.1f}"


Element = tuple[str, dict[str, str], list[str]]
Block = tuple[Element, list[Element]]  # an element and those inside it


def groups_on_page(dom: Dom) -> list[tuple[Block, list[Block]]]:
    """(a query's heading, its cards), each with the elements inside it, in page order: the
    page's <main> holds the headings and cards side by side, their insides follow each in
    ``dom.elements``."""
    found: list[tuple[Block, list[Block]]] = []
    current: list[Element] = []
    for element in dom.elements:
        tag, attrs, _ = element
        if tag == "div" and "group" in attrs.get("class", "").split():
            current = []
            found.append(((element, current), []))
        elif tag == "article":
            current = []
            found[-1][1].append((element, current))
        elif tag == "script":
            break
        elif found:
            current.append(element)
    return found


def only(elements: list[Element], tag: str, cls: str | None = None) -> list[Element]:
    return [e for e in elements if e[0] == tag and (cls is None or cls in e[1].get("class", "").split())]


def test_a_search_report_shows_each_moment_with_its_frames_and_a_link(
    archive: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, index = archive
    page = folder / "hits.html"  # the videos lie below the page's folder: links relative to it
    queries = ["a red screen", HOSTILE_QUERY]
    result = invoke(["search", str(index), *queries, "-k", "10", "-f", "json", "--report", str(page)])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert f"xclip: wrote {page}" in result.stderr
    grouped = json.loads(result.stdout)
    assert any(moment["windows"] > 1 for group in grouped for moment in group["moments"])  # merged ones too
    dom = render(page, tmp_path, "#all", shot="moments-report.png")
    shown = groups_on_page(dom)
    # A heading per query, in order, text only (the hostile one too); its cards in rank order.
    headings = [[dom.text(e) for e in only(inside, "h2", "query")] for (_, inside), _ in shown]
    assert headings == [[query] for query in queries] == [[group["query"]] for group in grouped]
    names = {"archive.mp4", HOSTILE_NAME, "gone.mp4"}
    images = 0
    for (_, cards), group in zip(shown, grouped, strict=True):
        assert len(cards) == len(group["moments"]) and {Path(m["path"]).name for m in group["moments"]} == names
        for rank, ((card, inner), moment) in enumerate(zip(cards, group["moments"], strict=True), start=1):
            name = Path(moment["path"]).name
            assert [dom.text(h) for h in only(inner, "h2")] == [f"footage/{name}"]  # text, never markup
            (meta,) = only(inner, "div", "meta")
            times = f"#{rank} · {clock(moment['start'])} - {clock(moment['end'])} · score {moment['score']:.2f}"
            assert dom.text(meta).startswith(times), dom.text(meta)
            (link,) = only(inner, "a", "play")
            fragment = f"#t={moment['start']:g},{moment['end']:g}"
            assert link[1]["href"] == f"./footage/{quote(name)}{fragment}" and link[1]["target"] == "_blank"
            frames = only(inner, "img")
            if name == "gone.mp4":  # deleted since the index was built: said so, no frames
                assert not frames and "error" in card[1]["class"].split()
                assert [dom.text(p) for p in only(inner, "p", "problem")] == ["no such file"]
            else:  # the frames of the best window, every one decoded
                assert 1 <= len(frames) <= 8 and all(attrs.get("data-loaded") == "1" for _, attrs, _ in frames)
            images += len(frames)
    assert len(loaded_images(dom)) == images > 0
    assert len(dom.find("script")) == 2  # the page's own data and script, nothing injected
    assert [dom.text(h) for h in dom.find("h1")] == [f"xclip search: {index}"]
    # Filtered on the hostile query (as its chip does): the other query's heading and cards hide.
    dom = render(page, tmp_path, "#q=" + quote("=" + HOSTILE_QUERY.lower()))
    visible = [
        ("hidden" not in head[1], sum("hidden" not in card[1] for card, _ in cards))
        for (head, _), cards in groups_on_page(dom)
    ]
    assert visible == [(False, 0), (True, len(grouped[1]["moments"]))]


def test_the_frames_are_those_classify_takes_from_the_best_window(
    archive: tuple[Path, Path], tiny_model_dir: Path
) -> None:
    folder, _ = archive
    clip = str(folder / "footage" / "archive.mp4")
    runner = open_backend(str(tiny_model_dir), "cpu", "fp32", "torch")
    red = Moment("q", clip, 4, 16, 1.0, (8, 16), 2)  # the red section is the best window, 8-16 s
    moments = [red, Moment("q", clip, 16, 24, 0.5, (16, 24)), Moment("other", clip, 8, 16, 0.2, (8, 16))]
    missing = Moment("q", str(folder / "nowhere.mp4"), 0, 8, 0.1, (0, 8))
    found = moment_thumbnails(runner, [*moments, missing])
    assert list(found) == [(clip, (8, 16)), (clip, (16, 24)), (missing.path, (0, 8))]  # each window decoded once
    classify = load_frames(runner, clip, ClassifyOptions(start=8, end=16))
    assert found[clip, (8, 16)] == video_thumbnails(classify, runner.preprocess)
    colours = {best: [_mean_colour(jpeg) for jpeg in found[clip, best]] for best in [(8, 16), (16, 24)]}  # type: ignore[union-attr]
    assert len(colours[8, 16]) == 8 and all(np.abs(c - (200, 30, 30)).max() < 25 for c in colours[8, 16])
    assert all(np.abs(c - (200, 30, 30)).max() > 60 for c in colours[16, 24])  # stripes, not red
    assert isinstance(found[missing.path, (0, 8)], VideoError)
    data = moments_report([*moments, missing], ["q", "other", "unanswered"], found, folder / "hits.html", "t")
    assert [(g["query"], len(g["moments"])) for g in data["queries"]] == [("q", 3), ("other", 1), ("unanswered", 0)]
    twice = moments_report(
        [*moments, *moments, missing], ["q", "q", "other", "unanswered"], found, folder / "hits.html", "t"
    )
    assert twice == data  # a query given twice: once on the page
    (gone,) = [m for m in data["queries"][0]["moments"] if m["problem"]]
    assert gone["thumbs"] == [] and gone["href"] == "./nowhere.mp4#t=0,8"


def _mean_colour(jpeg: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)


def test_a_link_is_relative_below_the_page_and_a_file_address_elsewhere(tmp_path: Path) -> None:
    page = tmp_path / "pages" / "hits.html"
    below = tmp_path / "pages" / "clips" / "a b#c?d%e:f.mp4"
    assert video_link(str(below), page, 1.5, 9.0) == (
        "clips/a b#c?d%e:f.mp4",
        "./clips/a%20b%23c%3Fd%25e%3Af.mp4#t=1.5,9",
    )
    elsewhere = tmp_path / "footage" / "café.mp4"
    shown, href = video_link(str(elsewhere), page, 0, 8.25)
    assert shown == str(elsewhere) and href == elsewhere.as_uri() + "#t=0,8.25" and "caf%C3%A9.mp4" in href
    # A name that starts like an address stays a path; a byte that is not UTF-8 is encoded as that byte.
    assert video_link(str(tmp_path / "pages" / "javascript:alert(1)"), page, 0, 1)[1].startswith("./javascript%3A")
    assert video_link(str(tmp_path / "pages" / "caf\udce9.mp4"), page, 0, 1) == ("caf\ufffd.mp4", "./caf%E9.mp4#t=0,1")
    # A sibling whose name starts with ".." still lies below.
    assert video_link(str(tmp_path / "pages" / "..x.mp4"), page, 0, 1)[1] == "./..x.mp4#t=0,1"
    assert video_link(str(tmp_path / "x.mp4"), page, 0, 1)[1].startswith("file:///")


def test_a_report_is_refused_in_one_line_before_any_work(archive: tuple[Path, Path], tiny_model_dir: Path) -> None:
    folder, index = archive
    wrong = invoke(["search", str(index), "a", "--report", str(folder / "hits.csv")])
    assert wrong.exit_code == ExitCode.USAGE and "--report" in wrong.stderr and wrong.stderr.count("\n") == 1
    same = invoke(["search", str(index), "a", "-o", str(folder / "x.html"), "--report", str(folder / "x.html")])
    assert same.exit_code == ExitCode.USAGE
    whole = folder / "whole"
    built = invoke(
        ["embed", str(folder / "footage" / "archive.mp4"), "-o", str(whole), "-m", str(tiny_model_dir), "-q"]
    )
    assert built.exit_code == ExitCode.OK, built.stderr
    refused = invoke(["search", str(whole), "a", "--report", str(folder / "whole.html")])
    assert (
        refused.exit_code == ExitCode.USAGE and "holds whole videos" in refused.stderr and "--report" in refused.stderr
    )
    assert refused.stderr.count("\n") == 1 and not (folder / "whole.html").exists()


def test_a_moments_page_fits_a_phone(tmp_path: Path) -> None:
    thumbs = real_thumbnails()
    moments = [
        Moment(LONG_LABEL, LONG_NAME, 3600.5, 3725.25, 21.5, (3700, 3708), 12),
        Moment(LONG_LABEL, "clips/b.mp4", 0, 8, 19.25, (0, 8)),
        Moment("x" * 80, LONG_NAME.replace("VID", "GONE"), 16, 24, -3.0, (16, 24)),
    ]
    frames = {(m.path, m.best): thumbs[i] for i, m in enumerate(moments[:2])}
    frames[moments[2].path, moments[2].best] = VideoError(moments[2].path, "no such file")
    page = tmp_path / "layout-moments.html"
    write_report(moments_report(moments, [LONG_LABEL, "x" * 80], frames, page, f"xclip search: {LONG_NAME}"), page)
    seen = layout(page, tmp_path, 360, shot="layout-moments-360.png")
    # No sideways scrolling, nothing sticking out of a card, each card's frames in one row.
    assert seen["innerWidth"] == 360 and seen["scrollWidth"] <= seen["clientWidth"] <= 360, seen
    assert all(not card["sticksOut"] and not card["scrollers"] for card in seen["cards"]), seen["cards"]
    assert [len(card["frames"]) for card in seen["cards"]] == [8, 8, 0]
    assert all(len({top for top, _ in card["frames"]}) <= 1 for card in seen["cards"])
    assert seen["breaks"] and set(seen["breaks"]) <= set("/_-. ") and not seen["statusMenu"]

"""`xclip eval`: metrics checked by hand, class matching, manifests, and an end-to-end run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from catalogue import _flat
from helpers import COLOURS_TEXT, encode_video, invoke

from xclip_cli.errors import ExitCode, UsageError
from xclip_cli.jobs.classify import classify_videos
from xclip_cli.jobs.evaluate import (
    compute_metrics,
    evaluate,
    load_dataset,
    match_classes,
    normalise,
    write_confusion_csv,
)
from xclip_cli.labels import inline_labelset
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.output.plot import plot_confusion

COLOURS = [(0, 255, 0), (255, 255, 0), (255, 255, 255), (255, 0, 0), (0, 0, 255), (0, 255, 255), (128, 128, 128)]


def test_metrics_by_hand() -> None:
    names = ["a", "b", "c", "d", "e", "f"]
    truth = np.array([0, 0, 1, 2])
    ranked = [[0, 1], [1, 0], [1, 2], [0, 1, 3, 4, 5, 2]]  # the last has the truth 6th: not in the top 5
    report = compute_metrics(truth, ranked, names, failed=1)
    assert (report.videos, report.failed) == (4, 1)
    assert report.top1 == 0.5  # videos 1 and 3
    assert report.top5 == 0.75  # all but the last
    assert [(s.label, s.videos, s.top1, s.top5) for s in report.per_class] == [
        ("a", 2, 0.5, 1.0),
        ("b", 1, 1.0, 1.0),
        ("c", 1, 0.0, 0.0),
    ]
    assert report.mean_class_top1 == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert report.confusion_labels == ("a", "b", "c")
    assert report.confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_a_class_only_ever_predicted_is_a_column_and_no_row(tmp_path: Path) -> None:
    labelset = inline_labelset("cooking, dancing, juggling, surfing")

    def row(path: str, label: str, top5: list[str]) -> dict[str, str]:
        return {"path": path, "label": label, "status": "ok", "top5": json.dumps(top5)}

    rows = [
        row("1.mp4", "dancing", ["dancing", "cooking"]),
        row("2.mp4", "dancing", ["surfing", "dancing"]),  # surfing: predicted, never true
        row("3.mp4", "cooking", ["cooking", "dancing"]),
        row("4.mp4", "cooking", ["juggling", "cooking"]),  # juggling: likewise
        {"path": "5.mp4", "label": "surfing", "status": "error", "top5": ""},  # failed: not a true class here
    ]
    report = evaluate(rows, labelset)
    write_confusion_csv(report, tmp_path / "c.csv")
    with open(tmp_path / "c.csv", newline="", encoding="utf-8") as handle:
        matrix = list(csv.reader(handle))
    assert matrix == [
        ["true \\ predicted", "cooking", "dancing", "juggling", "surfing"],
        ["cooking", "1", "0", "1", "0"],
        ["dancing", "0", "1", "0", "1"],
    ]
    plot_confusion(report, tmp_path / "c.png")  # two rows of four columns: the heatmap draws them too
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_class_names_match_whatever_the_spelling() -> None:
    labelset = inline_labelset("apply eye makeup, playing daf, yo yo")
    assert normalise("ApplyEyeMakeup") == normalise("apply_eye makeup") == normalise("Apply-Eye-Makeup")
    assert match_classes(["ApplyEyeMakeup", "playing_daf", "YoYo"], labelset) == {
        "ApplyEyeMakeup": 0,
        "playing_daf": 1,
        "YoYo": 2,
    }
    with pytest.raises(UsageError, match=r"2 dataset classes match no label .*'Juggling', 'Surfing'"):
        match_classes(["YoYo", "Surfing", "Juggling"], labelset)
    with pytest.raises(UsageError, match=r"match no label .*: 'ApplyEyeMakup' \(did you mean 'apply eye makeup'\?\)"):
        match_classes(["ApplyEyeMakup", "YoYo"], labelset)


def test_manifests(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\nclips/a.mp4,YoYo\n/abs/b.mp4,playing daf\n\n", encoding="utf-8")
    videos = load_dataset(tmp_path / "m.csv")
    assert [(v.path, v.label) for v in videos] == [
        (str(tmp_path / "clips/a.mp4"), "YoYo"),
        ("/abs/b.mp4", "playing daf"),
    ]
    (tmp_path / "m.tsv").write_text("a.mp4\tYoYo\nb.mp4\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"m.tsv: row 2: expected"):
        load_dataset(tmp_path / "m.tsv")
    with pytest.raises(UsageError, match="no class folders"):
        load_dataset(tmp_path)


def test_eval_end_to_end_with_accuracy_known_by_construction(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Colours go into the folder of the label the tiny model gives them, but one, which goes astray."""
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    labelset = inline_labelset(COLOURS_TEXT)
    probe = tmp_path / "probe"
    probe.mkdir()
    top = {}
    for colour in COLOURS:
        encode_video(probe / f"{colour}.mp4", _flat(colour, 8))
        top[colour] = next(iter(classify_videos(runner, [str(probe / f"{colour}.mp4")], labelset))).predictions[0].label
    data = tmp_path / "data"
    for number, colour in enumerate(COLOURS[:4]):
        folder = data / top[colour].title().replace(" ", "")  # CamelCase folder names
        folder.mkdir(parents=True, exist_ok=True)
        encode_video(folder / f"right{number}.mp4", _flat(colour, 8))
    wrong_colour = COLOURS[4]
    wrong_label = next(name for name in labelset.names if name != top[wrong_colour])
    (data / wrong_label).mkdir(exist_ok=True)
    encode_video(data / wrong_label / "astray.mp4", _flat(wrong_colour, 8))
    args = ["eval", str(data), "--labels", COLOURS_TEXT, "--model", str(tiny_model_dir), "-f", "json", "--quiet"]
    out = tmp_path / "predictions.csv"
    result = invoke([*args, "-o", str(out), "--confusion", str(tmp_path / "c.csv"), "--plot", str(tmp_path / "c.png")])
    assert result.exit_code == ExitCode.OK, result.stderr
    report = json.loads(result.stdout)
    assert report["videos"] == 5 and report["top1"] == pytest.approx(4 / 5)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "c.csv", newline="", encoding="utf-8") as handle:
        matrix = list(csv.reader(handle))
    assert sum(int(cell) for row in matrix[1:] for cell in row[1:]) == 5
    # A rerun resumes from the predictions: nothing is classified again, same report.
    again = invoke([*args, "-o", str(out)])
    assert again.exit_code == ExitCode.OK and json.loads(again.stdout) == report
    with open(out, newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 5


def test_unmatched_classes_stop_before_the_model_loads(tmp_path: Path) -> None:
    (tmp_path / "data" / "Juggling").mkdir(parents=True)
    (tmp_path / "data" / "Juggling" / "x.mp4").write_bytes(b"")
    result = invoke(["eval", str(tmp_path / "data"), "--labels", COLOURS_TEXT, "--model", "/nonexistent/model"])
    assert result.exit_code == ExitCode.USAGE and "'Juggling'" in result.stderr


def test_protocols(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "data" / "Red").mkdir(parents=True)
    encode_video(tmp_path / "data" / "Red" / "x.mp4", _flat((255, 0, 0), 8, size=(80, 48)))
    args = [
        "eval",
        str(tmp_path / "data"),
        "--labels",
        COLOURS_TEXT,
        "--model",
        str(tiny_model_dir),
        "-f",
        "json",
        "-q",
    ]
    result = invoke([*args, "--protocol", "xclip"])  # 4 clips x 3 crops
    assert result.exit_code == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["videos"] == 1
    bad = invoke([*args, "--protocol", "paper"])
    assert bad.exit_code == ExitCode.USAGE and "--protocol paper" in bad.stderr


def test_non_latin_class_names_and_spreadsheet_manifests(tmp_path: Path) -> None:
    assert match_classes(["狗", "猫"], inline_labelset("猫, 狗")) == {"狗": 1, "猫": 0}
    assert normalise("Café au lait") == "caféaulait"
    (tmp_path / "m.csv").write_bytes("path,label\na.mp4,YoYo\n".encode("utf-8-sig"))  # Excel's BOM
    assert [(v.path, v.label) for v in load_dataset(tmp_path / "m.csv")] == [(str(tmp_path / "a.mp4"), "YoYo")]


def test_resuming_never_mixes_two_experiments(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name, colour in (("red", (255, 0, 0)), ("green", (0, 255, 0))):
        (data / name).mkdir(parents=True)
        encode_video(data / name / f"{name}.mp4", _flat(colour, 8))
    out = tmp_path / "p.csv"
    args = ["eval", str(data), "--model", str(tiny_model_dir), "-o", str(out), "-f", "json", "-q"]
    assert invoke([*args, "--labels", "red, green, blue"]).exit_code == ExitCode.OK
    other = invoke([*args, "--labels", "red, green, blue, cyan"])  # same name "inline", other prompts
    assert other.exit_code == ExitCode.USAGE and "made with --labels 'inline#" in other.stderr
    views = invoke([*args, "--labels", "red, green, blue", "--clips", "2"])
    assert views.exit_code == ExitCode.USAGE and "made with 1 view(s) per video" in views.stderr
    keyed = invoke([*args, "--labels", "red, green, blue", "--sampling", "keyframes"])
    assert keyed.exit_code == ExitCode.USAGE, keyed.stderr
    assert "made with --sampling exact, this run uses keyframes" in keyed.stderr
    precision = invoke([*args, "--labels", "red, green, blue", "--precision", "bf16"])
    assert (
        precision.exit_code == ExitCode.USAGE and "made with --precision fp32, this run uses bf16" in precision.stderr
    )
    # A predictions file of xclip-cli 0.3 (no precision or sampling columns) is refused in one line.
    older = tmp_path / "older.csv"
    header = "path,label,status,top1_label,correct_top1,correct_top5,top5,error,labelset,model,views"
    older.write_text(header + "\n", encoding="utf-8")
    refused = invoke(["eval", str(data), "--model", str(tiny_model_dir), "-o", str(older), "-l", "red, green, blue"])
    assert refused.exit_code == ExitCode.USAGE and "written by an older xclip-cli" in refused.stderr
    # A video moved to another class is redone, not scored under its old label.
    (data / "blue").mkdir()
    (data / "green" / "green.mp4").rename(data / "blue" / "green.mp4")
    moved = invoke([*args, "--labels", "red, green, blue"])
    assert moved.exit_code == ExitCode.OK, moved.stderr
    assert {c["label"] for c in json.loads(moved.stdout)["per_class"]} == {"red", "blue"}


def test_a_video_listed_under_two_classes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("a.mp4,YoYo\nb.mp4,Archery\na.mp4,YoYo\n", encoding="utf-8")
    assert [v.label for v in load_dataset(tmp_path / "m.csv")] == ["YoYo", "Archery"]
    (tmp_path / "m.csv").write_text("a.mp4,YoYo\na.mp4,Archery\n", encoding="utf-8")
    with pytest.raises(UsageError, match="listed as 'YoYo' and as 'Archery'"):
        load_dataset(tmp_path / "m.csv")

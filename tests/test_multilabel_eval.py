"""`xclip eval --multi-label`: AP, mAP, P/R/F1 at thresholds, fitted thresholds, against hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke, write_video

from xclip_cli.errors import ExitCode, UsageError
from xclip_cli.jobs.evaluate_tags import (
    average_precision,
    compute_multilabel_metrics,
    fit_thresholds,
    fitted_labelset_yaml,
    load_multilabel_manifest,
)
from xclip_cli.jobs.tagging import thresholds
from xclip_cli.labels import inline_labelset, load_labelset_file


def test_average_precision_by_hand() -> None:
    # Ranked: hit, miss, hit, miss -> precision 1 at the first hit, 2/3 at the second.
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0], bool)) == pytest.approx(5 / 6)
    # Tied scores count together: at 0.9 one hit of two (P 1/2, R 1/2), at 0.1 two of three.
    tied = average_precision(np.array([0.9, 0.9, 0.1]), np.array([1, 0, 1], bool))
    assert tied == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert average_precision(np.array([0.3, 0.2]), np.array([0, 0], bool)) is None  # no positive: no AP
    assert average_precision(np.array([0.1, 0.9]), np.array([1, 1], bool)) == 1.0


def test_metrics_at_thresholds_and_map_over_labels_with_positives() -> None:
    scores = np.array([[0.9, 0.2, 0.6], [0.8, 0.7, 0.1], [0.3, 0.6, 0.2], [0.2, 0.1, 0.3]])
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]], dtype=bool)
    report = compute_multilabel_metrics(scores, truth, ["a", "b", "c"], [0.5, 0.5, 0.5], failed=1)
    a, b, c = report.per_label
    assert (a.true_positives, a.false_positives, a.false_negatives, a.f1) == (2, 0, 0, 1.0)
    assert (b.true_positives, b.false_positives, b.false_negatives) == (1, 1, 1)
    assert (b.precision, b.recall, b.f1) == (0.5, 0.5, 0.5)
    assert b.ap == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)  # b's positives ranked 1st and 4th: (1 + 2/4) / 2
    assert c.ap is None and c.positives == 0 and c.false_positives == 1
    assert report.mean_ap == pytest.approx((1.0 + 0.75) / 2)  # c, with no positives, is left out
    assert report.to_record("s")["labels_without_positives"] == ["c"] and report.failed == 1


def test_fitted_thresholds_are_the_known_best_and_reproduce_their_f1(tmp_path: Path) -> None:
    scores = np.array([[0.9, 0.4], [0.8, 0.35], [0.3, 0.5], [0.2, 0.1], [0.25, 0.45]])
    truth = np.array([[1, 1], [1, 0], [0, 1], [0, 0], [0, 1]], dtype=bool)
    fits = fit_thresholds(scores, truth, ["cooking", "dancing"])
    # cooking: 0.8 separates perfectly (F1 1), the next lower score is 0.3: threshold halfway, 0.55;
    # dancing: >= 0.4 finds its three positives and no other; the next lower is 0.35: 0.375.
    assert [(fit.threshold, fit.f1, fit.positives) for fit in fits] == [
        (pytest.approx(0.55), 1.0, 2),
        (pytest.approx(0.375), 1.0, 3),
    ]
    labelset = inline_labelset("cooking, dancing")
    path = tmp_path / "fitted.yaml"
    path.write_text(fitted_labelset_yaml(labelset, fits, "manifest.csv"), encoding="utf-8")
    fitted = load_labelset_file(path)
    assert fitted.names == labelset.names and thresholds(fitted) == [fit.threshold for fit in fits]
    again = compute_multilabel_metrics(scores, truth, fitted.names, thresholds(fitted))
    assert [m.f1 for m in again.per_label] == [fit.f1 for fit in fits]
    assert "F1 1.000 (2 positive of 5 videos)" in path.read_text()


def test_a_tie_in_f1_takes_the_higher_threshold() -> None:
    scores = np.array([[0.9], [0.6], [0.5]])
    truth = np.array([[1], [0], [0]], dtype=bool)
    (fit,) = fit_thresholds(scores, truth, ["a"])
    assert (fit.threshold, fit.f1) == (pytest.approx(0.75), 1.0)  # halfway between 0.9 and 0.6
    (everything,) = fit_thresholds(np.array([[0.2], [0.1]]), np.array([[1], [1]], bool), ["a"])
    assert everything.threshold == pytest.approx(0.05)  # below the lowest score: halfway to 0
    (none,) = fit_thresholds(scores, np.zeros((3, 1), bool), ["a"])
    assert none.threshold is None  # nothing to fit without a positive


def test_manifests_are_checked_before_any_work(tmp_path: Path) -> None:
    labelset = inline_labelset("cooking, dancing, surfing")
    good = tmp_path / "m.csv"
    good.write_text("path,labels\na.mp4,cooking;Dancing\nb.mp4,\nc.mp4,surfing\n", encoding="utf-8")
    videos = load_multilabel_manifest(good, labelset)
    assert [v.labels for v in videos] == [("cooking", "Dancing"), (), ("surfing",)]
    bad = tmp_path / "bad.csv"
    bad.write_text("a.mp4,cooking;juggling\n", encoding="utf-8")
    with pytest.raises(UsageError, match="match no label"):
        load_multilabel_manifest(bad, labelset)


def test_the_cli_reports_fits_and_resumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    names = ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    for number, name in enumerate(names):
        write_video(tmp_path / name, num_frames=12 + 4 * number, pattern="moving" if number % 2 else "flat")
    manifest = tmp_path / "tags.csv"
    manifest.write_text("path,labels\na.mp4,cooking;dancing\nb.mp4,dancing\nc.mp4,\nd.mp4,cooking\n")
    out, fitted = tmp_path / "predictions.csv", tmp_path / "fitted.yaml"
    args = ["eval", str(manifest), "--multi-label", "-m", str(tiny_model_dir), "-l", "cooking, dancing, surfing"]
    first = invoke([*args, "-f", "json", "-o", str(out), "--fit-thresholds", str(fitted), "-q"])
    assert first.exit_code == ExitCode.OK, first.stderr
    report = json.loads(first.stdout)
    assert report["videos"] == 4 and report["labels_without_positives"] == ["surfing"]
    assert [m["label"] for m in report["per_label"]] == ["cooking", "dancing", "surfing"]
    assert 0 <= report["mAP"] <= 1
    loaded = load_labelset_file(fitted)
    assert loaded.labels[2].threshold is None and loaded.labels[0].threshold is not None
    rows_before = out.read_text()
    again = invoke([*args, "-f", "json", "-o", str(out), "-q"])
    assert again.exit_code == ExitCode.OK and json.loads(again.stdout) == report
    assert out.read_text() == rows_before  # every video came from the predictions file
    # The fitted set reproduces the F1 the fit reported (nothing decoded: same predictions file).
    # The fitted set scores the same way (its thresholds change only the decisions): it resumes
    # from the same predictions file, decoding nothing, and reproduces the F1 the fit reported.
    refit = invoke([*args[:-2], "-l", str(fitted), "-f", "json", "-q", "-o", str(out)])
    assert refit.exit_code == ExitCode.OK, refit.stderr
    assert out.read_text() == rows_before
    reported = {line.split('"')[1]: float(line.split("F1 ")[1].split()[0]) for line in fitted.read_text().splitlines()
                if line.startswith("#   ") and "F1 " in line}  # fmt: skip
    refitted = {m["label"]: m["f1"] for m in json.loads(refit.stdout)["per_label"]}
    assert set(reported) == {"cooking", "dancing"}
    assert all(refitted[label] == pytest.approx(f1, abs=5e-4) for label, f1 in reported.items())
    table = invoke([*args, "-q"])
    assert "mAP" in table.stdout and "no positives" in table.stdout
    folder = invoke(["eval", str(tmp_path), "--multi-label", "-m", str(tiny_model_dir), "-l", "cooking,"])
    assert folder.exit_code == ExitCode.USAGE and "manifest" in folder.stderr
    fit_alone = invoke(["eval", str(manifest), "--fit-thresholds", str(fitted), "-l", "cooking, dancing"])
    assert fit_alone.exit_code == ExitCode.USAGE and "needs --multi-label" in fit_alone.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.mp4,cooking\na.mp4,dancing\n", "row 2: a.mp4 is listed twice"),
        ("a.mp4,cooking,dancing\n", "row 1: expected 'path,label;label;...'"),
        ("path,labels\n", "the manifest lists no videos"),
    ],
)
def test_a_bad_manifest_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text, encoding="utf-8")
    result = invoke(["eval", str(manifest), "--multi-label", "-l", "cooking, dancing"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith(f"xclip: error: {manifest}: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_multi_label_options_that_cannot_apply_are_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("a.mp4,cooking\n", encoding="utf-8")
    base = ["eval", str(manifest), "--multi-label", "-l", "cooking, dancing"]
    confusion = invoke([*base, "--confusion", str(tmp_path / "c.csv")])
    assert confusion.exit_code == ExitCode.USAGE and "--confusion and --plot are for single-label" in confusion.stderr
    wrong = invoke([*base, "--fit-thresholds", str(tmp_path / "fitted.txt")])
    assert wrong.exit_code == ExitCode.USAGE and "--fit-thresholds" in wrong.stderr and ".yaml" in wrong.stderr
    # A predictions file made with other settings is not mixed into.
    out = tmp_path / "p.csv"
    out.write_text(
        "path,labels,status,scores,error,labelset,model,views,precision,sampling,background\n"
        f'{tmp_path / "a.mp4"},cooking,ok,"[0.5, 0.5]",,x,m,1,fp32,keyframes,b\n',
        encoding="utf-8",
    )
    mixed = invoke([*base, "-o", str(out)])
    assert mixed.exit_code == ExitCode.USAGE and f"{out}: made with --labels 'x'" in mixed.stderr

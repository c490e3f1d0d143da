"""The one settings comparison every resumable file and the server client use."""

from __future__ import annotations

from pathlib import Path

import pytest

from xclip_cli.errors import UsageError
from xclip_cli.store.settings import SKIPPED, Setting, difference, refuse_other_settings
from xclip_cli.store.table import Schema

SETTINGS = (
    Setting("model", "--model"),
    Setting("sampling", "--sampling", old="exact"),
    Setting("views", "--clips x --crops", of_results_only=True),
    Setting("reported", "--top-k", old=SKIPPED),
)
RUN = {"model": "m", "sampling": "exact", "views": "1", "reported": "5"}


def test_the_first_setting_that_differs_is_named_with_its_option() -> None:
    assert difference(SETTINGS, {"model": "m", "sampling": "exact", "views": "1", "reported": "5"}, RUN) is None
    found = difference(SETTINGS, {"model": "other", "sampling": "keyframes"}, RUN)
    assert found is not None and str(found) == "--model other, this run uses m"


def test_keys_older_files_did_not_record_take_their_old_value_or_are_skipped_or_refused() -> None:
    assert difference(SETTINGS, {"model": "m", "views": "1"}, RUN) is None  # sampling: exact; reported: skipped
    assert str(difference(SETTINGS, {"model": "m", "views": "1"}, RUN | {"sampling": "keyframes"})) == (
        "--sampling exact, this run uses keyframes"
    )
    with pytest.raises(UsageError, match="older xclip-cli \\(no model recorded\\)"):
        difference(SETTINGS, {"sampling": "exact"}, RUN)


def test_error_rows_are_compared_only_on_what_they_record() -> None:
    error = {"status": "error", "model": "m", "views": ""}
    assert difference(SETTINGS, error | {"views": "3"}, RUN) is None
    assert difference(SETTINGS, {"status": "ok", "model": "m", "views": "3"}, RUN) is not None
    assert difference(SETTINGS, {"model": "m", "views": "3"}, {"model": "m"}) is None  # not asked: not compared


def test_an_eval_error_row_is_not_held_to_the_runs_views() -> None:
    from xclip_cli.jobs.evaluate import SETTINGS as EVAL

    run = {"labelset": "k#1", "model": "m", "views": "12", "precision": "fp32", "sampling": "exact"}
    assert difference(EVAL, run | {"status": "error", "views": "1"}, run) is None  # --protocol xclip, a bad video
    assert difference(EVAL, run | {"status": "ok", "views": "1"}, run) is not None


def test_a_schema_reads_its_rows_refuses_older_versions_and_other_settings(tmp_path: Path) -> None:
    schema = Schema("xclip test file", ("path", "model"), (Setting("model", "--model"),), older=(("path",),))
    assert schema.version == 2 and schema.records(tmp_path / "missing.csv") == []
    table = tmp_path / "t.csv"
    with schema.appender(table) as rows:
        rows.write_rows([schema.row({"path": "a.mp4", "model": "m"})])
    assert schema.resume(table, {"model": "m"}) == [{"path": "a.mp4", "model": "m"}]
    with pytest.raises(UsageError, match=f"^{table}: made with --model m, this run uses n; use --overwrite"):
        schema.resume(table, {"model": "n"})
    table.write_text("path\na.mp4\n", encoding="utf-8")
    with pytest.raises(UsageError, match="written by an older xclip-cli"):
        schema.records(table)
    table.write_text("name,size\n", encoding="utf-8")
    with pytest.raises(UsageError, match="not an xclip test file"):
        schema.records(table)
    with pytest.raises(UsageError, match=r"^x\.csv: rows written by an older xclip-cli"):
        refuse_other_settings("x.csv", [{}], schema.settings, {"model": "m"})

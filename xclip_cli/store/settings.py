"""What a file's rows were made with, compared in one place.

Every file a rerun continues (scan results, eval and multi-label eval predictions, an index)
records the settings its rows depend on, and a served model states the ones it runs with. A
run with other settings would mix two experiments in one file (or be answered by a model it
did not ask for), so it is refused in one line naming the option. Each check is a table of
``Setting`` rows (key, option, what files from before the key was recorded were made with, how
two values compare); ``difference`` walks it and ``refuse_other_settings`` raises.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from xclip_cli.errors import UsageError

REQUIRED = None  # ``Setting.old`` of a key every file records: a file without it is refused
SKIPPED = ""  # ``Setting.old`` of a key older files did not record and that cannot be assumed


def same_model(a: str, b: str) -> bool:
    """Two ``--model`` values name one checkpoint: equal ids, or one local folder written two ways."""
    if a == b:
        return True
    try:
        return os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b)
    except OSError:
        return False


@dataclass(frozen=True)
class Setting:
    """One thing rows depend on: the ``key`` they record it under, the ``option`` that sets it
    (as the user types it), the value files from before the key was recorded were made with
    (``old``: ``REQUIRED`` refuses them, ``SKIPPED`` does not compare), how two values compare,
    and how a difference reads after "made with" (``{option}``, ``{made}``, ``{run}``)."""

    key: str
    option: str
    old: str | None = REQUIRED
    same: Callable[[str, str], bool] = operator.eq
    says: str = "{option} {made}, this run uses {run}"
    of_results_only: bool = False  # compared on rows that hold a result (an error row has no views)


@dataclass(frozen=True)
class Difference:
    setting: Setting
    made: str
    run: str

    def __str__(self) -> str:
        return self.setting.says.format(option=self.setting.option, made=self.made, run=self.run)


def difference(settings: Sequence[Setting], made: Mapping[str, object], run: Mapping[str, str]) -> Difference | None:
    """The first of ``settings`` in which ``made`` (a row, record or manifest) differs from
    ``run``; keys ``run`` does not name are not compared. ``UsageError`` for a file from before a
    required key was recorded."""
    result = "status" not in made or made["status"] == "ok"
    for setting in settings:
        if setting.key not in run or (setting.of_results_only and not result):
            continue
        value = made.get(setting.key)
        if value is None or value == "":
            if setting.old is REQUIRED:
                raise UsageError(f"rows written by an older xclip-cli (no {setting.key} recorded)")
            if setting.old == SKIPPED:
                continue
            value = setting.old
        if not setting.same(str(value), run[setting.key]):
            return Difference(setting, str(value), run[setting.key])
    return None


def refuse_other_settings(
    source: Path | str,
    records: Iterable[Mapping[str, object]],
    settings: Sequence[Setting],
    run: Mapping[str, str],
    remedy: str = "use --overwrite or another -o",
) -> None:
    """``UsageError`` ("SOURCE: made with --OPTION X, this run uses Y; REMEDY") for the first
    record of ``source`` made otherwise than ``run``."""
    for record in records:
        try:
            found = difference(settings, record, run)
        except UsageError as older:
            raise UsageError(f"{source}: {older}; {remedy}") from None
        if found is not None:
            raise UsageError(f"{source}: made with {found}; {remedy}")

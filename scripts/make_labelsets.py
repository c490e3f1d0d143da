"""Generate the built-in label sets in ``labelsets/`` from upstream class lists.

Maintainers only. This script reads the upstream class-name files from
``../shared/data/labels`` (relative to the repository root, i.e. a sibling
checkout that is *not* part of this repository; override with ``--source``) and
writes the generated YAML files into ``labelsets/``. Nothing in ``xclip_cli``
imports or runs it: the generated YAML files are committed and the tool only
reads those.

Generated sets (see ``labelsets/SOURCES.md`` for provenance and licences):

* ``kinetics400``, ``kinetics600``: X-CLIP's own CSVs (microsoft/VideoX), verbatim.
* ``kinetics600-zeroshot``: the 220 new Kinetics-600 classes, ER-ZSAR order.
* ``kinetics600-zeroshot-split{1,2,3}``: ER-ZSAR test splits (160 classes each),
  cross-checked against ViFi-CLIP's ``ZS_split{1,2,3}_K600.csv``.
* ``ucf101``: X-CLIP's CSV order, readable names from ER-ZSAR matched by name.
* ``hmdb51``: X-CLIP's CSV, verbatim.

The hand-written sets (``HAND_WRITTEN`` below) are edited by hand; this script
never writes them, it only validates them together with the generated ones.

Usage::

    python scripts/make_labelsets.py            # regenerate + validate everything
    python scripts/make_labelsets.py --check    # validate only (no source data needed)
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELSETS_DIR = REPO_ROOT / "labelsets"
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "labels"

# Sets that are written by hand; the generator must never overwrite these.
HAND_WRITTEN = frozenset({"household", "sports", "pets-and-animals"})

EXPECTED_COUNTS: dict[str, int] = {
    "kinetics400": 400,
    "kinetics600": 600,
    "kinetics600-zeroshot": 220,
    "kinetics600-zeroshot-split1": 160,
    "kinetics600-zeroshot-split2": 160,
    "kinetics600-zeroshot-split3": 160,
    "ucf101": 101,
    "hmdb51": 51,
}


VIDEOX_REPO = "https://github.com/microsoft/VideoX"
VIDEOX_COMMIT = "1744b2159c3d11694f94dab4fcde8660c685e79a"
ERZSAR_REPO = "https://github.com/DeLightCMU/ElaborativeRehearsal"
ERZSAR_COMMIT = "e3130fd43badebe66a36d0b0db9a24bb742b5095"
VIFI_REPO = "https://github.com/muzairkhattak/ViFi-CLIP"
VIFI_COMMIT = "e2d1948307f582052078eb8a4afbeb50247166f1"


class SourceError(RuntimeError):
    """The upstream data does not look the way this script expects."""


# --------------------------------------------------------------------------- reading


def read_csv_names(path: Path) -> list[str]:
    """Read an ``id,name`` CSV (LF or CRLF); check ids are 0..N-1 in order."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    names: list[str] = []
    for expected_id, row in enumerate(rows):
        if set(row) != {"id", "name"}:
            raise SourceError(f"{path}: unexpected columns {sorted(row)}")
        if int(row["id"]) != expected_id:
            raise SourceError(f"{path}: id {row['id']} at row {expected_id}")
        names.append(row["name"])
    check_names(names, str(path))
    return names


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def check_names(names: Sequence[str], where: str) -> None:
    """Names must be non-empty, trimmed, free of CR/LF and unique."""
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name or name != name.strip():
            raise SourceError(f"{where}: bad name {name!r}")
        if "\r" in name or "\n" in name:
            raise SourceError(f"{where}: line break in name {name!r}")
        if name in seen:
            raise SourceError(f"{where}: duplicate name {name!r}")
        seen.add(name)


def norm(name: str) -> str:
    """Return the matching key: lower-case, no spaces, underscores or hyphens."""
    return re.sub(r"[\s_\-]", "", name.lower())


# --------------------------------------------------------------------------- building


def build_kinetics(src: Path) -> dict[str, list[str]]:
    k400 = read_csv_names(src / "kinetics_400_labels.csv")
    k600 = read_csv_names(src / "kinetics_600_labels.csv")
    zsl = src / "er_zsar" / "Kinetics" / "zsl220"
    k620 = [entry["word"] for entry in read_json(zsl / "classes620_label_defn.json")]
    check_names(k620, "classes620_label_defn.json")
    if len(k620) != 620:
        raise SourceError(f"classes620_label_defn.json has {len(k620)} entries, not 620")
    if k620[:400] != k400:
        raise SourceError("ER-ZSAR entries 0..399 differ from kinetics_400_labels.csv")
    new220 = k620[400:]
    missing = [n for n in new220 if n not in set(k600)]
    if missing:
        raise SourceError(f"ER-ZSAR new classes not in kinetics_600_labels.csv: {missing}")
    derived = read_csv_names(src / "derived" / "kinetics_600_new_220_labels.csv")
    if derived != new220:
        raise SourceError("derived/kinetics_600_new_220_labels.csv != ER-ZSAR entries 400..619")

    tst = read_json(zsl / "tst_class_idxs.json")
    val = read_json(zsl / "val_class_idxs.json")
    if len(tst) != 3 or len(val) != 3:
        raise SourceError("expected 3 test and 3 val splits")
    out = {"kinetics400": k400, "kinetics600": k600, "kinetics600-zeroshot": new220}
    for i, (tst_idx, val_idx) in enumerate(zip(tst, val, strict=True), start=1):
        if not all(400 <= j < 620 for j in tst_idx + val_idx):
            raise SourceError(f"split {i}: class index outside 400..619")
        if set(tst_idx) & set(val_idx) or set(tst_idx) | set(val_idx) != set(range(400, 620)):
            raise SourceError(f"split {i}: test and val are not a partition of the 220 classes")
        split = [k620[j] for j in tst_idx]
        vifi = read_csv_names(src / "vifi_clip" / f"ZS_split{i}_K600.csv")
        if vifi != split:
            raise SourceError(f"ViFi-CLIP ZS_split{i}_K600.csv differs from ER-ZSAR tst_class_idxs split {i}")
        out[f"kinetics600-zeroshot-split{i}"] = split
    return out


def build_ucf101(src: Path) -> list[str]:
    """X-CLIP's CSV order; readable names from ER-ZSAR matched by normalised name."""
    raw = read_csv_names(src / "ucf_101_labels.csv")
    readable = [e["word"] for e in read_json(src / "er_zsar" / "UCF101" / "classes_label_defn.json")]
    check_names(readable, "UCF101/classes_label_defn.json")
    by_key: dict[str, list[str]] = {}
    for word in readable:
        by_key.setdefault(norm(word), []).append(word)
    out: list[str] = []
    problems: list[str] = []
    for name in raw:
        matches = by_key.get(norm(name), [])
        if len(matches) != 1:
            problems.append(f"{name!r} -> {matches}")
            continue
        out.append(matches[0])
    unused = set(readable) - set(out)
    if problems or unused:
        for p in problems:
            print(f"ucf101: needs a manual fix: {p}", file=sys.stderr)
        raise SourceError(f"ucf101: {len(problems)} unmatched, unused ER-ZSAR names {sorted(unused)}")
    return out


def build_hmdb51(src: Path) -> list[str]:
    """X-CLIP's CSV, verbatim (already lower-case words separated by spaces)."""
    names = read_csv_names(src / "hmdb_51_labels.csv")
    odd = [n for n in names if not re.fullmatch(r"[a-z]+( [a-z]+)*", n)]
    if odd:
        raise SourceError(f"hmdb51: names that may need a readable form: {odd}")
    readable = [e["word"] for e in read_json(src / "er_zsar" / "HMDB51" / "classes_label_defn.json")]
    if sorted(readable) != sorted(names):
        print("hmdb51: note: ER-ZSAR names differ from VideoX names", file=sys.stderr)
    return names


# --------------------------------------------------------------------------- metadata

VIDEOX_SRC = f"{VIDEOX_REPO} (X-CLIP/labels/{{}}), commit {VIDEOX_COMMIT[:12]}, MIT"
ERZSAR_SRC = f"{ERZSAR_REPO} ({{}}), commit {ERZSAR_COMMIT[:12]}, MIT"
ZSL_DIR = "datasets/Kinetics/zsl220"

META: dict[str, dict[str, str]] = {
    "kinetics400": {
        "description": "Kinetics-400: the 400 action classes X-CLIP was trained on",
        "source": VIDEOX_SRC.format("kinetics_400_labels.csv"),
        "how": "Copied verbatim, in class-id order (X-CLIP's evaluation uses it).",
    },
    "kinetics600": {
        "description": "Kinetics-600: 600 action classes (K400 + 220 new)",
        "source": VIDEOX_SRC.format("kinetics_600_labels.csv"),
        "how": "Copied verbatim, in class-id order.",
    },
    "kinetics600-zeroshot": {
        "description": ("Kinetics-600 zero-shot set: the 220 classes new in K600 (X-CLIP paper)"),
        "source": ERZSAR_SRC.format(f"{ZSL_DIR}/classes620_label_defn.json, entries 400-619"),
        "how": (
            "The 'word' field of entries 400..619, in ER-ZSAR order (label i = ER-ZSAR "
            "class 400+i). Every name is verbatim a name of kinetics_600_labels.csv."
        ),
    },
    "ucf101": {
        "description": "UCF101: 101 action classes, with readable names",
        "source": (
            f"{VIDEOX_REPO} (X-CLIP/labels/ucf_101_labels.csv: order), "
            f"commit {VIDEOX_COMMIT[:12]}, MIT; "
            f"{ERZSAR_REPO} (datasets/UCF101/classes_label_defn.json: names), "
            f"commit {ERZSAR_COMMIT[:12]}, MIT"
        ),
        "how": (
            "Class order of X-CLIP's ucf_101_labels.csv; each CamelCase name "
            "(ApplyEyeMakeup) is replaced by the ER-ZSAR 'word' (apply eye makeup) "
            "with the same lower-cased name without spaces, underscores and hyphens. "
            "All 101 matched exactly once."
        ),
    },
    "hmdb51": {
        "description": "HMDB51: 51 action classes",
        "source": VIDEOX_SRC.format("hmdb_51_labels.csv"),
        "how": "Copied verbatim, in class-id order (the names are already readable).",
    },
}
for _i in (1, 2, 3):
    META[f"kinetics600-zeroshot-split{_i}"] = {
        "description": (
            f"Kinetics-600 zero-shot test split {_i}: 160 of the 220 new K600 classes "
            "(ER-ZSAR protocol, used by X-CLIP)"
        ),
        "source": ERZSAR_SRC.format(f"{ZSL_DIR}/tst_class_idxs.json split {_i}, names from classes620_label_defn.json"),
        "how": (
            f"Names of the class indices in tst_class_idxs.json[{_i - 1}], "
            "in that order. Checked identical (names and order) to ViFi-CLIP "
            f"labels/ZS_split{_i}_K600.csv "
            f"({VIFI_REPO}, commit {VIFI_COMMIT[:12]})."
        ),
    }


# --------------------------------------------------------------------------- writing


class _IndentDumper(yaml.SafeDumper):
    """SafeDumper that indents block sequences under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render(name: str, labels: list[str]) -> str:
    meta = META[name]
    header = [
        f"# Built-in label set '{name}' for xclip-cli.",
        "# GENERATED by scripts/make_labelsets.py; do not edit by hand.",
        f"# Class list from: {meta['source']}",
        *textwrap.wrap(
            f"Conversion: {meta['how']}",
            width=98,
            initial_indent="# ",
            subsequent_indent="#   ",
        ),
        "# Templates: ['{}'] = the bare class name, as X-CLIP's own evaluation does.",
        "# Provenance and licence texts: labelsets/SOURCES.md.",
    ]
    doc = {
        "name": name,
        "description": meta["description"],
        "source": meta["source"],
        "templates": ["{}"],
        "labels": labels,
    }
    body = yaml.dump(
        doc,
        Dumper=_IndentDumper,
        allow_unicode=True,
        sort_keys=False,
        width=10_000,
        default_flow_style=False,
    )
    return "\n".join(header) + "\n" + body


def write_set(out_dir: Path, name: str, labels: list[str]) -> Path:
    if name in HAND_WRITTEN:
        raise AssertionError(f"refusing to overwrite hand-written set {name}")
    if len(labels) != EXPECTED_COUNTS[name]:
        raise SourceError(f"{name}: {len(labels)} labels, expected {EXPECTED_COUNTS[name]}")
    text = render(name, labels)
    loaded = yaml.safe_load(text)
    if loaded["labels"] != labels or loaded["name"] != name:
        raise AssertionError(f"{name}: YAML round trip changed the labels")
    path = out_dir / f"{name}.yaml"
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


# --------------------------------------------------------------------------- validating


def validate_file(path: Path) -> list[str]:
    """Return the problems found in one label-set file (empty list if it is valid): the package's
    own schema (``xclip_cli.labels``: what the tool accepts, nothing more or less), then what a
    built-in set needs besides (its name is its file's, a description, the expected count)."""
    from xclip_cli.errors import LabelSetError
    from xclip_cli.labels import load_labelset_file

    where = path.name
    try:
        labelset = load_labelset_file(path)
    except LabelSetError as exc:
        return [str(exc)]
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    errs: list[str] = []
    if doc.get("name") != path.stem:
        errs.append(f"{where}: name {doc.get('name')!r} != file stem {path.stem!r}")
    if not (isinstance(doc.get("description"), str) and doc["description"].strip()):
        errs.append(f"{where}: built-in sets need a description")
    expected = EXPECTED_COUNTS.get(path.stem)
    if expected is not None and len(labelset) != expected:
        errs.append(f"{where}: {len(labelset)} labels, expected {expected}")
    return errs


def validate_dir(out_dir: Path) -> int:
    problems: list[str] = []
    files = sorted(out_dir.glob("*.yaml"))
    for path in files:
        errs = validate_file(path)
        problems.extend(errs)
        if not errs:
            count = len(yaml.safe_load(path.read_text(encoding="utf-8"))["labels"])
            print(f"ok  {path.name:36} {count:4d} labels")
    missing = (set(EXPECTED_COUNTS) | HAND_WRITTEN) - {p.stem for p in files}
    problems.extend(f"missing {m}.yaml" for m in sorted(missing))
    for p in problems:
        print(f"ERR {p}", file=sys.stderr)
    return 1 if problems else 0


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="upstream label data")
    parser.add_argument("--out", type=Path, default=LABELSETS_DIR, help="labelsets directory")
    parser.add_argument("--check", action="store_true", help="only validate the YAML files")
    args = parser.parse_args(argv)

    if not args.check:
        src: Path = args.source
        if not src.is_dir():
            parser.error(f"source directory not found: {src}")
        sets = build_kinetics(src)
        sets["ucf101"] = build_ucf101(src)
        sets["hmdb51"] = build_hmdb51(src)
        for name in EXPECTED_COUNTS:
            print(f"wrote {write_set(args.out, name, sets[name])}")
    return validate_dir(args.out)


if __name__ == "__main__":
    sys.exit(main())

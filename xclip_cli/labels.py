"""Label sets: validated YAML files, built-in sets and inline comma lists.

A label set is a list of labels, each with one or more prompt texts, plus prompt templates
such as ``"a video of {}"``. Every (prompt, template) pair becomes one text for the text
encoder; the runner averages a label's texts (see ``text_side.ensemble_text_embeddings``).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from xclip_cli.errors import LabelSetError, UsageError
from xclip_cli.store.digest import digest

PLACEHOLDER = "{}"
DEFAULT_TEMPLATES: tuple[str, ...] = (PLACEHOLDER,)  # X-CLIP's own evaluation uses the bare name


class _StrictSafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader (libyaml's when present: 10x faster) that rejects duplicate keys.

    Plain YAML keeps the last of two ``labels:`` keys and silently drops the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise yaml.constructor.ConstructorError(None, None, "a key must be plain text", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


TOP_LEVEL_KEYS = frozenset({"name", "description", "source", "templates", "labels", "background"})
LABEL_KEYS = frozenset({"name", "prompts", "threshold"})


@dataclass(frozen=True)
class Label:
    """One class: the name shown to users and the texts that describe it."""

    name: str
    prompts: tuple[str, ...]
    threshold: float | None = None  # --multi-label: the score at which the label applies (None: default)


@dataclass(frozen=True)
class LabelSet:
    """A named, ordered list of labels and the templates applied to every prompt."""

    name: str
    labels: tuple[Label, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    description: str = ""
    source: str = ""
    background: tuple[str, ...] = ()  # --multi-label: prompts every label is scored against (): default

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    def texts_per_label(self) -> list[list[str]]:
        """The text-encoder inputs of each label: every prompt through every template."""
        return [
            [template.replace(PLACEHOLDER, prompt) for prompt in label.prompts for template in self.templates]
            for label in self.labels
        ]

    @property
    def digest(self) -> str:
        """12 hex digits of the prompts' texts: two sets named alike but worded apart differ.
        (Tagging's thresholds and background have their own: ``tagging.tags_digest``.)"""
        return digest(self.texts_per_label())

    def __len__(self) -> int:
        return len(self.labels)


def builtin_dir() -> Path:
    """Folder of the shipped label sets: inside the wheel, or ``labelsets/`` of a source tree."""
    packaged = Path(str(resources.files("xclip_cli"))) / "labelsets"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "labelsets"


def builtin_names() -> list[str]:
    """Names of the built-in label sets, sorted."""
    return sorted(path.stem for path in builtin_dir().glob("*.yaml"))


def resolve_labels(spec: str) -> LabelSet:
    """Turn a ``--labels`` value into a label set.

    Accepted, in this order: a path that looks like one (``.yaml``/``.yml``, or a folder
    separator and no comma), a built-in set name (a file of that name in the current folder does not shadow
    it), an existing file, or an inline comma-separated list (``"cooking, dancing"``).
    """
    spec = spec.strip()
    path = Path(spec).expanduser()
    looks_like_path = spec.endswith((".yaml", ".yml")) or (os.sep in spec and "," not in spec)
    if looks_like_path:
        return load_labelset_file(path)
    if spec in builtin_names():
        return load_labelset_file(builtin_dir() / f"{spec}.yaml")
    if path.is_file():
        return load_labelset_file(path)
    if "," in spec:
        return inline_labelset(spec)
    files = [name for name in (f"{spec}.yaml", f"{spec}.yml") if Path(name).expanduser().is_file()]
    close = files or difflib.get_close_matches(spec.lower(), builtin_names(), n=1, cutoff=0.75)
    if close:
        raise LabelSetError(f"unknown label set {spec!r}: did you mean {close[0]!r}?")
    raise LabelSetError(
        f"unknown label set {spec!r}: not a file, not a built-in ({', '.join(builtin_names())}), "
        f"and not a comma list (to score {spec!r} against other labels: --labels '{spec}, other, ...'; "
        f"on its own, with --multi-label: --labels '{spec},')"
    )


def check_scorable(labelset: LabelSet, multi_label: bool, origin: str) -> None:
    """``LabelSetError`` for a set of one label unless ``multi_label``: a softmax over one label
    gives it probability 1 whatever the video shows. Tagging scores each label on its own (against
    background prompts), so one label is fine there. ``origin`` names the option: ``--labels x``."""
    if len(labelset) != 1 or multi_label:
        return
    (name,) = labelset.names
    hint = " (a YAML list indented unevenly?)" if " - " in name else ""
    raise LabelSetError(
        f"{origin}: only one label, {name!r}{hint}; ranking one label gives it probability 1 for every video: "
        "add labels to tell it from, or score it on its own with --multi-label"
    )


def resolve_labels_without_files(spec: str) -> LabelSet:
    """A built-in set or an inline comma list, never a file: what ``xclip serve`` takes from a
    request, whatever its own folder holds; ``UsageError`` otherwise."""
    spec = spec.strip()
    if spec in builtin_names():
        return load_labelset_file(builtin_dir() / f"{spec}.yaml")
    if "," in spec:
        return inline_labelset(spec)
    raise UsageError(
        f"labels {spec!r}: send a built-in name ({', '.join(builtin_names())}) or a comma list; "
        "the server reads no label files"
    )


def inline_labelset(text: str) -> LabelSet:
    """A label set from ``"a, b, c"``: each item is both the name and the prompt."""
    names = [item.strip() for item in text.split(",")]
    data = {"name": "inline", "labels": [name for name in names if name]}
    return parse_labelset(data, origin="--labels")


def load_labelset_file(path: Path) -> LabelSet:
    """Read and validate a label-set YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelSetError(f"{path}: label set file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelSetError(f"{path}: cannot read label set ({exc})") from None
    try:
        data = yaml.load(text, Loader=_StrictSafeLoader)  # a safe loader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        detail = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]  # one line, always
        raise LabelSetError(f"{path}: invalid YAML{where}: {detail}") from None
    return parse_labelset(data, origin=str(path), default_name=path.stem)


def parse_labelset(data: Any, origin: str, default_name: str = "inline") -> LabelSet:
    """Validate already-parsed YAML data; errors name ``origin`` and the offending key."""

    def fail(key: str, problem: str) -> LabelSetError:
        return LabelSetError(f"{origin}: {key}: {problem}")

    if not isinstance(data, dict):
        raise LabelSetError(f"{origin}: expected a mapping with a 'labels' key, got {_kind(data)}")
    unknown = sorted(set(map(str, data)) - TOP_LEVEL_KEYS)
    if unknown:
        raise fail(unknown[0], _unknown_key(unknown[0], TOP_LEVEL_KEYS))
    name = _string(data.get("name", default_name), "name", fail)
    description = _string(data.get("description", ""), "description", fail, allow_empty=True)
    source = _string(data.get("source", ""), "source", fail, allow_empty=True)
    templates = tuple(_string_list(data.get("templates", list(DEFAULT_TEMPLATES)), "templates", fail))
    for index, template in enumerate(templates):
        if template.count(PLACEHOLDER) != 1:
            raise fail(f"templates[{index}]", f"{template!r} must contain the placeholder {{}} exactly once")
    if "labels" not in data:
        raise fail("labels", "missing (a list of label names or mappings)")
    raw_labels = data["labels"]
    if not isinstance(raw_labels, list) or not raw_labels:
        raise fail("labels", f"expected a non-empty list, got {_kind(raw_labels)}")
    labels = tuple(_parse_label(item, f"labels[{index}]", fail) for index, item in enumerate(raw_labels))
    background = tuple(_string_list(data["background"], "background", fail)) if "background" in data else ()
    seen: dict[str, int] = {}
    for index, label in enumerate(labels):
        key = " ".join(label.name.split()).casefold()  # `Cooking` and `cooking  ` would be one class twice
        if key in seen:
            other = labels[seen[key]].name
            spelt = "" if other == label.name else f" {other!r}: labels that differ only in case or spacing are one"
            raise fail(f"labels[{index}]", f"duplicate label {label.name!r} (also labels[{seen[key]}]{spelt})")
        seen[key] = index
    return LabelSet(
        name=name, labels=labels, templates=templates, description=description, source=source, background=background
    )


def _parse_label(item: Any, key: str, fail: Any) -> Label:
    if isinstance(item, str):
        name = _string(item, key, fail)
        return Label(name=name, prompts=(name,))
    if isinstance(item, dict):
        unknown = sorted(set(map(str, item)) - LABEL_KEYS)
        if unknown:
            raise fail(f"{key}.{unknown[0]}", _unknown_key(unknown[0], LABEL_KEYS))
        if "name" not in item:
            raise fail(f"{key}.name", "missing")
        name = _string(item["name"], f"{key}.name", fail)
        prompts = item.get("prompts", [name])
        prompts = tuple(_string_list([prompts] if isinstance(prompts, str) else prompts, f"{key}.prompts", fail))
        threshold = item.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1
        ):
            raise fail(f"{key}.threshold", f"expected a number from 0 to 1 (a score), got {threshold!r}")
        return Label(name=name, prompts=prompts, threshold=None if threshold is None else float(threshold))
    raise fail(key, f"expected a label name or a mapping with 'name' and 'prompts', got {_kind(item)}")


def _unknown_key(key: str, allowed: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key ({hint}allowed: {', '.join(sorted(allowed))})"


def _string(value: Any, key: str, fail: Any, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise fail(key, f"expected a string, got {_kind(value)}")
    value = value.strip()
    if not value and not allow_empty:
        raise fail(key, "must not be empty")
    return value


def _string_list(value: Any, key: str, fail: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise fail(key, f"expected a non-empty list of strings, got {_kind(value)}")
    return [_string(item, f"{key}[{index}]", fail) for index, item in enumerate(value)]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    return {dict: "a mapping", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )

"""Label sets: the shipped built-ins, ``--labels`` resolution, validation messages, YAML safety.

Fast and offline: everything reads the shipped ``labelsets/`` folder or YAML written to tmp dirs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from xclip_cli.errors import ExitCode, LabelSetError
from xclip_cli.labels import (
    Label,
    LabelSet,
    builtin_dir,
    builtin_names,
    check_scorable,
    load_labelset_file,
    resolve_labels,
)

# --------------------------------------------------------------------------- built-in sets

GENERATED_COUNTS = {
    "kinetics400": 400,
    "kinetics600": 600,
    "kinetics600-zeroshot": 220,
    "kinetics600-zeroshot-split1": 160,
    "kinetics600-zeroshot-split2": 160,
    "kinetics600-zeroshot-split3": 160,
    "ucf101": 101,
    "hmdb51": 51,
}
HAND_WRITTEN = ("household", "sports", "pets-and-animals")


def test_builtin_names_are_exactly_the_shipped_sets() -> None:
    assert builtin_names() == sorted([*GENERATED_COUNTS, *HAND_WRITTEN])


@pytest.mark.parametrize("name", sorted(GENERATED_COUNTS))
def test_generated_builtin_has_expected_count(name: str) -> None:
    labelset = resolve_labels(name)
    assert len(labelset) == GENERATED_COUNTS[name]
    assert len(set(labelset.names)) == GENERATED_COUNTS[name]


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_hand_written_builtin_has_at_least_20_labels(name: str) -> None:
    labelset = resolve_labels(name)
    assert len(labelset) >= 20
    assert all(label.prompts for label in labelset.labels)


@pytest.mark.parametrize("name", [*sorted(GENERATED_COUNTS), *HAND_WRITTEN])
def test_builtin_name_matches_file_stem(name: str) -> None:
    path = builtin_dir() / f"{name}.yaml"
    assert path.is_file()
    assert load_labelset_file(path).name == name
    assert resolve_labels(name).name == name


def test_kinetics400_starts_with_xclip_class_order() -> None:
    assert resolve_labels("kinetics400").names[:2] == ["abseiling", "air drumming"]


def test_ucf101_names_are_readable() -> None:
    names = resolve_labels("ucf101").names
    assert names[0] == "apply eye makeup"
    assert "apply eye makeup" in names
    assert [name for name in names if re.search(r"[a-z][A-Z]", name)] == []


def test_zero_shot_sets_are_new_kinetics600_classes() -> None:
    # Checked against the data: the 220 zero-shot classes are all in Kinetics-600 and none of them
    # is a Kinetics-400 name. (Kinetics-400 is *not* a subset of Kinetics-600 by exact name: K600
    # renamed 32 K400 classes, e.g. "dying hair", so only these two relations are asserted.)
    k400 = set(resolve_labels("kinetics400").names)
    k600 = set(resolve_labels("kinetics600").names)
    zero_shot = set(resolve_labels("kinetics600-zeroshot").names)
    assert len(zero_shot) == 220
    assert zero_shot <= k600
    assert zero_shot.isdisjoint(k400)
    for split in (1, 2, 3):
        names = set(resolve_labels(f"kinetics600-zeroshot-split{split}").names)
        assert len(names) == 160
        assert names <= zero_shot


# --------------------------------------------------------------------------- resolve_labels


def test_resolve_labels_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("labels: [cooking, {name: dancing, prompts: [dancing, a dance]}]\n", encoding="utf-8")
    labelset = resolve_labels(str(path))
    assert labelset == LabelSet(
        name="mine",  # defaults to the file stem
        labels=(Label("cooking", ("cooking",)), Label("dancing", ("dancing", "a dance"))),
        templates=("{}",),
    )


def test_resolve_labels_builtin_name_equals_loading_its_file() -> None:
    assert resolve_labels("hmdb51") == load_labelset_file(builtin_dir() / "hmdb51.yaml")


def test_resolve_labels_inline_list() -> None:
    labelset = resolve_labels("cooking, dancing , skateboarding")
    assert labelset.name == "inline"
    assert labelset.names == ["cooking", "dancing", "skateboarding"]
    assert [label.prompts for label in labelset.labels] == [("cooking",), ("dancing",), ("skateboarding",)]
    assert labelset.templates == ("{}",)


def test_resolve_labels_inline_duplicate_is_rejected() -> None:
    with pytest.raises(LabelSetError, match=r"--labels: labels\[2\]: duplicate label 'a' \(also labels\[0\]\)"):
        resolve_labels("a, b, a")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cooking, Cooking", "--labels: labels[1]: duplicate label 'Cooking' (also labels[0] 'cooking': "),
        ("a  dog, cat, a dog", "--labels: labels[2]: duplicate label 'a dog' (also labels[0] 'a  dog': "),
    ],
)
def test_labels_differing_only_in_case_or_spacing_are_duplicates(spec: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(LabelSetError) as info:
        resolve_labels(spec)
    assert str(info.value) == message + "labels that differ only in case or spacing are one)"
    path = tmp_path / "mine.yaml"
    path.write_text("labels: [Running, {name: ' running', prompts: [jogging]}]\n", encoding="utf-8")
    with pytest.raises(LabelSetError, match=rf"^{re.escape(str(path))}: labels\[1\]: duplicate label 'running' \(also"):
        load_labelset_file(path)


def test_one_label_is_for_tagging_only() -> None:
    one = resolve_labels("cooking,")
    check_scorable(one, multi_label=True, origin="--labels cooking,")
    check_scorable(resolve_labels("a, b"), multi_label=False, origin="--labels a, b")
    with pytest.raises(LabelSetError, match=r"^--labels cooking,: only one label, 'cooking'; ranking one") as info:
        check_scorable(one, multi_label=False, origin="--labels cooking,")
    assert info.value.exit_code == ExitCode.LABELS


def test_resolve_labels_unknown_word() -> None:
    with pytest.raises(LabelSetError) as info:
        resolve_labels("cookingg")
    assert "cookingg" in str(info.value)
    assert "kinetics400" in str(info.value)  # lists the built-ins
    assert "--labels 'cookingg, other, ...'" in str(info.value)  # and says how to give labels inline
    assert "on its own, with --multi-label: --labels 'cookingg,')" in str(info.value)  # or one label
    assert resolve_labels("cookingg,").names == ["cookingg"]  # (which works)
    assert info.value.exit_code == ExitCode.LABELS


@pytest.mark.parametrize(
    ("typed", "meant"), [("sport", "sports"), ("kinetics-400", "kinetics400"), ("UCF101", "ucf101")]
)
def test_a_name_close_to_a_builtin_gets_did_you_mean(typed: str, meant: str) -> None:
    with pytest.raises(LabelSetError, match=f"unknown label set '{typed}': did you mean '{meant}'\\?$"):
        resolve_labels(typed)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: x\nlable: [a, b]\nlabels: [a, b]\n", "lable: unknown key (did you mean 'labels'? allowed:"),
        ("labels: [{name: a, promts: [b]}, c]\n", "labels[0].promts: unknown key (did you mean 'prompts'? allowed:"),
    ],
)
def test_unknown_yaml_keys_get_did_you_mean(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "set.yaml").write_text(content, encoding="utf-8")
    with pytest.raises(LabelSetError) as info:
        resolve_labels(str(tmp_path / "set.yaml"))
    assert str(info.value).startswith(f"{tmp_path / 'set.yaml'}: {message}")


def test_prompts_may_be_a_single_string(tmp_path: Path) -> None:
    (tmp_path / "set.yaml").write_text("labels: [{name: dog, prompts: a dog playing}, cat]\n", encoding="utf-8")
    labelset = resolve_labels(str(tmp_path / "set.yaml"))
    assert labelset.labels[0].prompts == ("a dog playing",)


def test_the_digest_tells_sets_named_alike_but_worded_apart() -> None:
    first, second = resolve_labels("a, b"), resolve_labels("a, c")
    assert first.name == second.name and first.digest != second.digest
    assert resolve_labels("a,b").digest == first.digest and len(first.digest) == 12


# --------------------------------------------------------------------------- texts_per_label


def test_texts_per_label_expands_every_prompt_through_every_template() -> None:
    labelset = LabelSet(
        name="t",
        labels=(Label("a", ("p1", "p2")), Label("b", ("q",))),
        templates=("a video of {}", "{} in action"),
    )
    assert labelset.texts_per_label() == [
        ["a video of p1", "p1 in action", "a video of p2", "p2 in action"],
        ["a video of q", "q in action"],
    ]


def test_texts_per_label_default_template_is_the_bare_prompt(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("labels: [x, {name: y, prompts: [y1, y2]}]\n", encoding="utf-8")
    assert load_labelset_file(path).texts_per_label() == [["x"], ["y1", "y2"]]


def test_texts_per_label_of_a_builtin_with_templates() -> None:
    household = resolve_labels("household")
    assert household.templates == ("a video of a person {}", "a person {}")
    texts = household.texts_per_label()[household.names.index("washing dishes")]
    assert texts == [
        "a video of a person washing dishes",
        "a person washing dishes",
        "a video of a person doing the dishes",
        "a person doing the dishes",
        "a video of a person washing dishes in a sink",
        "a person washing dishes in a sink",
    ]


# --------------------------------------------------------------------------- validation errors

INVALID_FILES = {
    "unknown top-level key": ("labels: [a]\ncolour: red\n", ["colour", "unknown key"]),
    "unknown label key": ("labels:\n  - a\n  - {name: b, colour: red}\n", ["labels[1].colour", "unknown key"]),
    "empty label string": ("labels: [a, '  ']\n", ["labels[1]", "must not be empty"]),
    "label mapping without name": ("labels: [{prompts: [x]}]\n", ["labels[0].name", "missing"]),
    "duplicate label": ("labels: [a, b, c, b]\n", ["labels[3]", "labels[1]", "duplicate label 'b'"]),
    "duplicate after stripping": ("labels: [cooking, ' cooking ']\n", ["labels[1]", "labels[0]", "duplicate"]),
    "template without placeholder": ("templates: ['a video']\nlabels: [a]\n", ["templates[0]", "exactly once"]),
    "template with two placeholders": ("templates: ['{} and {}']\nlabels: [a]\n", ["templates[0]", "exactly once"]),
    "second template bad": ("templates: ['{}', 'x']\nlabels: [a]\n", ["templates[1]", "exactly once"]),
    "labels missing": ("name: x\n", ["labels", "missing"]),
    "labels empty list": ("labels: []\n", ["labels", "non-empty list", "an empty list"]),
    "labels not a list": ("labels: cooking\n", ["labels", "non-empty list", "a string"]),
    "label is a number": ("labels: [42, b]\n", ["labels[0]", "a number"]),
    "label is a boolean": ("labels: [a, yes]\n", ["labels[1]", "a boolean"]),
    "prompts a mapping": ("labels: [{name: a, prompts: {x: y}}]\n", ["labels[0].prompts", "a mapping"]),
    "prompts empty list": ("labels: [{name: a, prompts: []}]\n", ["labels[0].prompts", "an empty list"]),
    "prompt not a string": ("labels: [a, {name: b, prompts: [b, 3]}]\n", ["labels[1].prompts[1]", "a number"]),
    "name not a string": ("name: [a]\nlabels: [a]\n", ["name", "expected a string", "a list"]),
    "templates not a list": ("templates: 'a {}'\nlabels: [a]\n", ["templates", "a string"]),
    "plain list document": ("- a\n- b\n", ["expected a mapping", "a list"]),
    "empty document": ("", ["expected a mapping", "nothing"]),
}


@pytest.mark.parametrize("content,expected", INVALID_FILES.values(), ids=list(INVALID_FILES))
def test_invalid_file_names_path_and_key(tmp_path: Path, content: str, expected: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabelSetError) as info:
        load_labelset_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message
    # the same error through the --labels entry point
    with pytest.raises(LabelSetError, match=re.escape(message)):
        resolve_labels(str(path))


def test_invalid_yaml_syntax_names_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nlabels: [a, b\nother: c\n", encoding="utf-8")
    with pytest.raises(LabelSetError) as info:
        load_labelset_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML at line ")
    assert "line 3" in message


@pytest.mark.parametrize(
    ("content", "key", "line"),
    [
        ("name: x\nlabels: [a, b]\nlabels: [c, d]\n", "labels", 3),
        ("labels:\n  - name: a\n    prompts: [x]\n    name: b\n", "name", 4),
    ],
)
def test_duplicate_keys_are_rejected_not_silently_dropped(tmp_path: Path, content: str, key: str, line: int) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabelSetError) as info:
        load_labelset_file(path)
    assert str(info.value) == f"{path}: invalid YAML at line {line}: duplicate key {key!r}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(LabelSetError) as info:
        resolve_labels(str(path))
    assert str(info.value) == f"{path}: label set file not found"


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("labels: [caf\xe9]\n".encode("latin-1"))
    with pytest.raises(LabelSetError) as info:
        load_labelset_file(path)
    assert str(info.value).startswith(f"{path}: cannot read label set (")
    assert "utf-8" in str(info.value)


def test_directory_named_like_yaml(tmp_path: Path) -> None:
    path = tmp_path / "dir.yaml"
    path.mkdir()
    with pytest.raises(LabelSetError, match=re.escape(f"{path}: cannot read label set")):
        resolve_labels(str(path))


# --------------------------------------------------------------------------- YAML safety


@pytest.mark.parametrize(
    "template",
    [
        "labels: [a]\nsource: !!python/object/apply:os.system ['touch {marker}']\n",
        "labels:\n  - !!python/object/apply:os.system ['touch {marker}']\n",
        "!!python/object/apply:os.system ['touch {marker}']\n",
    ],
)
def test_python_object_tags_are_rejected_not_executed(tmp_path: Path, template: str) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.yaml"
    path.write_text(template.replace("{marker}", str(marker)), encoding="utf-8")
    with pytest.raises(LabelSetError) as info:
        load_labelset_file(path)
    assert str(info.value).startswith(f"{path}: invalid YAML at line ")
    assert "python/object/apply:os.system" in str(info.value)
    assert not marker.exists()


# --------------------------------------------------------------------------- property-based

# Printable text without control/format/separator-line characters, no leading/trailing whitespace.
label_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("C", "Zl", "Zp")),
    min_size=1,
    max_size=20,
).filter(lambda text: text == text.strip() and text != "")
# Unique as labels are: names that differ only in case or spacing are one label.
unique_names = st.lists(label_text, min_size=1, max_size=12, unique_by=lambda name: " ".join(name.split()).casefold())


@settings(max_examples=50, deadline=None)
@given(set_name=label_text, names=unique_names, allow_unicode=st.booleans())
def test_round_trip_of_random_label_names(
    tmp_path_factory: pytest.TempPathFactory, set_name: str, names: list[str], allow_unicode: bool
) -> None:
    path = tmp_path_factory.mktemp("roundtrip") / "set.yaml"
    path.write_text(yaml.safe_dump({"name": set_name, "labels": names}, allow_unicode=allow_unicode), encoding="utf-8")
    labelset = load_labelset_file(path)
    assert labelset.name == set_name
    assert labelset.names == names
    assert [label.prompts for label in labelset.labels] == [(name,) for name in names]


@settings(max_examples=50, deadline=None)
@given(names=unique_names, data=st.data())
def test_inserted_duplicate_is_rejected(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], data: st.DataObject
) -> None:
    duplicate = data.draw(st.sampled_from(names), label="duplicate")
    position = data.draw(st.integers(min_value=0, max_value=len(names)), label="position")
    with_duplicate = [*names[:position], duplicate, *names[position:]]
    first, second = [index for index, name in enumerate(with_duplicate) if name == duplicate]
    path = tmp_path_factory.mktemp("duplicate") / "set.yaml"
    path.write_text(yaml.safe_dump({"name": "dup", "labels": with_duplicate}), encoding="utf-8")
    with pytest.raises(LabelSetError) as info:
        load_labelset_file(path)
    assert str(info.value) == f"{path}: labels[{second}]: duplicate label {duplicate!r} (also labels[{first}])"


def test_a_non_text_key_is_a_label_set_error(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text("? [a]\n: 1\nlabels: [x, y]\n", encoding="utf-8")
    with pytest.raises(LabelSetError, match=r"invalid YAML at line 1: a key must be plain text"):
        load_labelset_file(path)


yaml_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | label_text
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(label_text | st.integers(), children, max_size=4),
    max_leaves=12,
)
# Documents near the schema, so the fuzzing reaches the validation of every key.
near_schema = st.fixed_dictionaries(
    {},
    optional={
        "name": yaml_values,
        "description": yaml_values,
        "templates": yaml_values | st.lists(label_text, max_size=3),
        "labels": yaml_values | unique_names | st.lists(st.fixed_dictionaries({"name": yaml_values}), max_size=3),
        "source": yaml_values,
    },
)


@settings(max_examples=150, deadline=None)
@given(document=near_schema | yaml_values)
def test_any_yaml_document_loads_or_names_file_and_problem(
    tmp_path_factory: pytest.TempPathFactory, document: object
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "set.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    try:
        labelset = load_labelset_file(path)
    except LabelSetError as exc:
        message = str(exc)
        assert message.startswith(str(path)) and "\n" not in message
        return
    assert len(labelset) >= 1 and all(label.name.strip() for label in labelset.labels)


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_as_a_label_file_give_a_label_error(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "set.yaml"
    path.write_bytes(content)
    try:
        labelset = load_labelset_file(path)
    except LabelSetError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    assert len(labelset) >= 1 and all(label.name.strip() and label.prompts for label in labelset.labels)


def test_a_word_naming_a_yaml_file_here_gets_did_you_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kitchen.yaml").write_text("labels: [a, b]\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LabelSetError, match=r"unknown label set 'kitchen': did you mean 'kitchen.yaml'\?$"):
        resolve_labels("kitchen")


def test_the_label_set_script_validates_with_the_packages_own_schema(tmp_path: Path) -> None:
    """scripts/make_labelsets.py --check accepts what the tool accepts (per-label thresholds, a
    background list) and refuses what it refuses, in the tool's words."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_labelsets", Path(__file__).parent.parent / "scripts" / "make_labelsets.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    good = tmp_path / "tagged.yaml"
    good.write_text(
        "name: tagged\ndescription: a set for tagging\nbackground: [a video]\n"
        "labels:\n  - {name: cooking, threshold: 0.6}\n  - dancing\n",
        encoding="utf-8",
    )
    assert script.validate_file(good) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: x\nlabels: [cooking, Cooking]\n", encoding="utf-8")
    (problem,) = script.validate_file(bad)
    assert problem.startswith(str(bad)) and "Cooking" in problem
    assert script.validate_dir(Path(__file__).parent.parent / "labelsets") == 0  # every shipped set

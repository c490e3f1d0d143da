"""The docs cannot rot: their command lines and links are checked against the real thing.

Every ``xclip ...`` (or ``python -m xclip_cli ...``) command line in a fenced shell block of
README.md, CONTRIBUTING.md and docs/*.md must name commands and subcommands that exist and
options that the (sub)command accepts: the typer app itself is walked, so a renamed option
fails here. Every relative link in those files must lead to a file, and its ``#anchor`` to a
heading there (GitHub's slugs). Nothing loads a model; the whole file runs in about a second.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from xclip_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])
SHELL_BLOCKS = {"", "sh", "bash", "shell", "console", "zsh", "fish"}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
# Words that may stand before a command in a shell line (`for ...; do xclip ...; done`).
SHELL_PREFIXES = {"do", "then", "else", "time", "!", "{", "(", "exec", "command", "nohup"}
COMMAND_SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")", ";;", "|&"}
REDIRECTIONS = {">", ">>", "<", "<<", "<<<", ">&", "&>", ">|", "<>", "&>>"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def fenced_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """Each fenced code block: its info string, the line number of its first line, its lines."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match.group(2), match.group(3).lower()
        start, i = i + 1, i + 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        yield info, start + 1, lines[start:i]
        i += 1


def logical_lines(lines: list[str], first: int) -> Iterator[tuple[int, str]]:
    """Shell lines with their `\\` continuations joined, each with the number of its first line."""
    pending, number = "", first
    for offset, line in enumerate(lines):
        if not pending:
            number = first + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield number, pending + line
        pending = ""
    if pending:
        yield number, pending


def substitutions(line: str) -> tuple[str, list[str]]:
    """The line with each `$(...)` replaced by a plain word, and the commands they held."""
    inner: list[str] = []
    out, i = [], 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            inner.append(line[i + 2 : j - 1])
            out.append("SUBSTITUTION")
            i = j
        else:
            out.append(line[i])
            i += 1
    return "".join(out), inner


def simple_commands(line: str) -> Iterator[list[str]]:
    """The words of each simple command of a shell line: pipelines, `&&`, `;`, `$(...)` split,
    comments, redirections and leading `VAR=value` assignments dropped."""
    line, inner = substitutions(line)
    for command in inner:
        yield from simple_commands(command)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    tokens = list(lexer)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in COMMAND_SEPARATORS:
            if words:
                yield words
            words = []
        elif token in REDIRECTIONS:
            i += 1  # and its target
        elif not words and (ASSIGNMENT.match(token) or token in SHELL_PREFIXES):
            pass
        else:
            words.append(token)
        i += 1
    if words:
        yield words


def xclip_arguments(words: list[str]) -> list[str] | None:
    """The arguments after `xclip` (any path to it) or `python -m xclip_cli`; None for others."""
    if Path(words[0]).name == "xclip":
        return words[1:]
    if re.fullmatch(r"python[\d.]*", Path(words[0]).name) and words[1:3] == ["-m", "xclip_cli"]:
        return words[3:]
    return None


def command_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    for info, first, lines in fenced_blocks(path.read_text(encoding="utf-8")):
        if info not in SHELL_BLOCKS:
            continue
        for number, line in logical_lines(lines, first):
            for words in simple_commands(line):
                arguments = xclip_arguments(words)
                if arguments is not None:
                    yield number, arguments


ROOT_COMMAND = typer.main.get_command(app)
HELP_NAMES = ROOT_COMMAND.context_settings.get("help_option_names", ["--help"])


def check_arguments(command: Any, arguments: list[str], name: str = "xclip") -> str | None:
    """What is wrong with `arguments` for the click command `command`, or None."""
    takes_value: dict[str, bool] = {name: False for name in HELP_NAMES}
    for param in command.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                takes_value[opt] = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
    subcommands = getattr(command, "commands", None)
    i = 0
    while i < len(arguments):
        word = arguments[i]
        if word == "--":
            break
        if word.startswith("-") and word != "-":
            option = word.split("=", 1)[0]
            if option not in takes_value:
                return f"{name} has no option {option}"
            if takes_value[option] and "=" not in word:
                i += 1
        elif subcommands is not None:
            if word not in subcommands:
                return f"{name} has no command {word!r}"
            return check_arguments(subcommands[word], arguments[i + 1 :], f"{name} {word}")
        i += 1
    return None


def test_command_lines_name_real_commands_and_options() -> None:
    problems, checked = [], 0
    for path in DOCS:
        for number, arguments in command_lines(path):
            checked += 1
            problem = check_arguments(ROOT_COMMAND, arguments)
            if problem:
                problems.append(f"{relative(path)}:{number}: {problem}: xclip {shlex.join(arguments)}")
    assert not problems, "\n".join(problems)
    assert checked > 50  # the parsing found the examples


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("xclip scan ./a -o x.csv  # a comment --nope", [["scan", "./a", "-o", "x.csv"]]),
        ("find . | xclip classify - -f jsonl | jq .", [["classify", "-", "-f", "jsonl"]]),
        ('eval "$(xclip completion bash)"', [["completion", "bash"]]),
        ("XCLIP_BACKEND=torch python -m xclip_cli classify a.mp4", [["classify", "a.mp4"]]),
        ("make install && .venv/bin/xclip models > m.txt", [["models"]]),
        ('for f in *.mp4; do xclip classify "$f" --top-k 3; done', [["classify", "$f", "--top-k", "3"]]),
    ],
)
def test_command_line_parsing(line: str, expected: list[list[str]]) -> None:
    found = [xclip_arguments(words) for words in simple_commands(line)]
    assert [arguments for arguments in found if arguments is not None] == expected


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["scan", "./a", "--made-up-option"], "xclip scan has no option --made-up-option"),
        (["frobnicate"], "xclip has no command 'frobnicate'"),
        (["models", "frobnicate"], "xclip models has no command 'frobnicate'"),
        (["classify", "a.mp4", "--labels", "--x", "-k", "3"], None),  # a value is not an option
        (["models", "prepare", "-m", "m", "--precision", "int8"], None),
        (["scan", "./a", "--no-recursive", "--top-k=3", "-h"], None),
    ],
)
def test_check_arguments(arguments: list[str], problem: str | None) -> None:
    assert check_arguments(ROOT_COMMAND, arguments) == problem


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation removed."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    inside = {number for _, first, lines in fenced_blocks(text) for number in range(first - 1, first + len(lines) + 1)}
    seen: dict[str, int] = {}
    found = set()
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match and number not in inside:
            slug = github_slug(match.group(1))
            found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return found


def links(path: Path) -> Iterator[str]:
    """The targets of the Markdown links of a file, outside code."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for _, first, block in fenced_blocks(text):
        for number in range(first - 2, first + len(block)):
            if 0 <= number < len(lines):
                lines[number] = ""
    prose = re.sub(r"`[^`\n]*`", "", "\n".join(lines))
    yield from re.findall(r"\]\(([^)\s]+)\)", prose)


def test_relative_links_lead_somewhere() -> None:
    problems, checked = [], 0
    for path in DOCS:
        for target in links(path):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            checked += 1
            file, _, anchor = target.partition("#")
            destination = (path.parent / file).resolve() if file else path
            if not destination.exists():
                problems.append(f"{relative(path)}: {target}: no such file")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                problems.append(f"{relative(path)}: {target}: no heading with that anchor")
    assert not problems, "\n".join(problems)
    assert checked > 20


def test_github_slugs() -> None:
    assert github_slug("ONNX Runtime on the CPU (the default)") == "onnx-runtime-on-the-cpu-the-default"
    assert github_slug("Stay warm: `xclip serve`") == "stay-warm-xclip-serve"
    tagging = "Tagging: does each label apply? (`--multi-label`)"
    assert github_slug(tagging) == "tagging-does-each-label-apply---multi-label"

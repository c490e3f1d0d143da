"""Shell completion: a script for bash, zsh and fish, run by the real shells where they are
installed (`.ci/run` installs them), completing commands and the built-in label sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import invoke

from xclip_cli.errors import ExitCode

BIN = Path(sys.executable).parent  # this environment's `xclip` console script lives here
MARKERS = {
    "bash": "complete -o default -F _xclip_completion xclip",
    "zsh": "#compdef xclip",
    "fish": "complete --command xclip",
}
SYNTAX_CHECK = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}


def need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{shell} is not installed: .ci/run installs it")
        pytest.skip(f"{shell} is not installed here (apt install {shell}); CI runs this test")
    return path


def script(shell: str, tmp_path: Path) -> Path:
    result = invoke(["completion", shell])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert MARKERS[shell] in result.stdout and "_XCLIP_COMPLETE" in result.stdout
    path = tmp_path / f"xclip.{shell}"
    path.write_text(result.stdout, encoding="utf-8")
    return path


def in_shell(command: list[str]) -> str:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_gets_a_script_it_can_parse(shell: str, tmp_path: Path) -> None:
    path = script(shell, tmp_path)
    need(shell)
    in_shell([*SYNTAX_CHECK[shell], str(path)])


def test_an_unknown_shell_is_one_line() -> None:
    result = invoke(["completion", "tcsh"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == "xclip: error: completion 'tcsh': expected one of bash, zsh, fish\n"


def test_bash_completes_commands_and_label_sets(tmp_path: Path) -> None:
    path = script("bash", tmp_path)
    need("bash")
    ask = 'source "$1"; COMP_WORDS=(%s); COMP_CWORD=%d; _xclip_completion xclip; printf "%%s\\n" "${COMPREPLY[@]}"'
    commands = in_shell(["bash", "-c", ask % ("xclip cl", 1), "bash", str(path)]).split()
    assert commands == ["classify"]
    labels = in_shell(["bash", "-c", ask % ("xclip scan ./footage --labels kinetics6", 4), "bash", str(path)]).split()
    assert labels == [
        "kinetics600",
        "kinetics600-zeroshot",
        "kinetics600-zeroshot-split1",
        "kinetics600-zeroshot-split2",
        "kinetics600-zeroshot-split3",
    ]


def test_fish_completes_label_sets(tmp_path: Path) -> None:
    path = script("fish", tmp_path)
    need("fish")
    found = in_shell(["fish", "-c", f"source {path}; complete -C 'xclip timeline v.mp4 --labels hm'"])
    assert [line.split("\t")[0] for line in found.splitlines()] == ["hmdb51"]


def test_zsh_is_answered_in_its_own_protocol() -> None:
    # zsh completes only inside its line editor; the script asks `xclip` like this.
    env = os.environ | {"_XCLIP_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "xclip eval data --labels uc"}
    completed = subprocess.run([str(BIN / "xclip")], capture_output=True, text=True, env=env, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert '"ucf101"' in completed.stdout and "kinetics" not in completed.stdout


def test_help_stays_light() -> None:
    # Completion and `--help` run a fresh interpreter on every key press: no numpy, torch or
    # PyAV behind them (numpy alone is 0.1 s of a 0.2 s `xclip --help` here).
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from xclip_cli.cli import app\n"
        "for args in (['--help'], ['completion', 'bash'], ['timeline', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "heavy = [m for m in ('numpy', 'torch', 'transformers', 'av', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr

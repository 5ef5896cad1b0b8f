"""README.md and docs/ stay true to the tree: every relative link resolves, and every command they show (in
code blocks and inline code) names a `sweeper` command and options that exist, and files that exist."""

import re
import shlex
from pathlib import Path

import pytest
import typer

from sweeper.cli import app

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = typer.main.get_command(app)
PLACEHOLDER = re.compile(r"[<>|]|\.\.\.|^[A-Z_]+$|\*")


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_lines(text: str) -> list[str]:
    """The lines of fenced code blocks (not Python or YAML ones) and every inline code span."""
    lines = []
    for language, block in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if language in ("", "bash", "sh", "console"):
            lines += [line.strip() for line in block.splitlines() if line.strip()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return lines + re.findall(r"`([^`\n]+)`", prose)


def commands(text: str) -> list[list[str]]:
    """Each `sweeper ...`, `python bench/...` or `pytest ...` command, as tokens (after `&&` splits)."""
    found = []
    for line in code_lines(text):
        for part in line.split("&&"):
            try:
                tokens = shlex.split(part.strip().rstrip(";,."), comments=True)
            except ValueError:
                continue
            while tokens and "=" in tokens[0] and not tokens[0].startswith("-"):  # COLUMNS=100 sweeper ...
                tokens = tokens[1:]
            if tokens and (tokens[0].endswith("sweeper") or tokens[0].endswith("python")):
                found.append(tokens)
    return found


def is_repo_path(token: str) -> bool:
    return (
        "/" in token
        and not token.startswith(("-", "http", "sqlite:", "/"))
        and token.endswith((".yaml", ".py", ".md", ".txt"))
        and not PLACEHOLDER.search(token)
    )


def test_the_pages_show_commands_to_check():
    assert sum(len(commands(page.read_text())) for page in PAGES) > 30


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_resolves(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page_id(page)} links to {target}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_command_names_what_exists(page):
    for tokens in commands(page.read_text()):
        shown = " ".join(tokens)
        for token in tokens:
            if is_repo_path(token) and not token.startswith(("sweeps/", "doctor-", "out/")):
                assert (ROOT / token).exists(), f"{page_id(page)}: `{shown}` names {token}, which does not exist"
        if tokens[0].endswith("sweeper"):
            words = tokens[1:]
            options = {opt for param in COMMAND.params for opt in param.opts}
            while words and words[0].startswith("-"):
                assert words[0].split("=")[0] in options, f"{page_id(page)}: `{shown}`: no global option {words[0]}"
                words = words[1:]
            if not words or PLACEHOLDER.search(words[0]):
                continue
            assert words[0] in COMMAND.commands, f"{page_id(page)}: `{shown}`: no command {words[0]}"
            command = COMMAND.commands[words[0]]
            options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
            for word in words[1:]:
                if word.startswith("--"):
                    assert word.split("=")[0] in options, f"{page_id(page)}: `{shown}`: {words[0]} has no {word}"
        elif len(tokens) > 1 and tokens[1].startswith("bench/"):
            script = (ROOT / tokens[1]).read_text()
            for word in tokens[2:]:
                if word.startswith("--"):
                    assert f'"{word.split("=")[0]}"' in script, f"{page_id(page)}: `{shown}`: {tokens[1]} has no {word}"

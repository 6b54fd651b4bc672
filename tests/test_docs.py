"""Every command printed in README.md and docs/ composes as printed, every relative link leads to a file, and
no page names a path outside the repository: a renamed key cannot leave a stale example behind."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import run_in_process

pytestmark = pytest.mark.slow  # every README and docs command composed: the docs, not the edit-test loop

REPOSITORY = Path(__file__).resolve().parent.parent
PAGES = [REPOSITORY / "README.md", REPOSITORY / "CONTRIBUTING.md", *sorted((REPOSITORY / "docs").glob("*.md"))]

#: A command line in a fenced block: python -m skinclf.<command> and its arguments, continued by a backslash.
COMMAND = re.compile(r"^(?:time )?python -m skinclf\.(\w+)(.*)$")


def printed_lines(page: Path) -> list[str]:
    """The lines of the page's fenced code blocks (continuations and quotes open across lines joined) and the code
    cells of its tables."""
    lines, fenced, quote_open = [], False, False
    for line in page.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            fenced, quote_open = not fenced, False
        elif fenced:
            if quote_open:
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.strip())
            quote_open = lines[-1].split("#")[0].count("'") % 2 == 1
        elif line.startswith("|"):
            lines += [cell.strip()[1:-1] for cell in line.split("|") if cell.strip().startswith("`")]
    return lines


def printed_commands(page: Path) -> list[tuple[str, list[str]]]:
    """(command, arguments) of every ``python -m skinclf.<command>`` the page prints, placeholders filled in."""
    found = []
    for line in printed_lines(page):
        match = COMMAND.match(re.sub(r"<[^>]*>", "placeholder", line))
        if match:
            found.append((match.group(1), shlex.split(match.group(2).split("#")[0])))
    return found


def as_composable(arguments: list[str]) -> list[str]:
    """The arguments for --cfg job: a sweep's first value (--cfg takes no -m)."""
    composable = []
    for argument in arguments:
        if argument in ("-m", "--cfg", "job", "--resolve"):
            continue
        key, equals, value = argument.partition("=")
        if equals and not value.startswith(("[", "{", "'", '"')) and "," in value:
            value = value.split(",")[0]
        composable.append(f"{key}{equals}{value}")
    return composable


COMMANDS = [(page, command, arguments) for page in PAGES for command, arguments in printed_commands(page)]


def test_the_pages_print_every_command() -> None:
    printed = {command for _, command, _ in COMMANDS}
    assert printed == {"train", "split", "evaluate", "predict", "export", "serve", "ensemble", "report", "bench"}


@pytest.mark.parametrize(
    ("page", "command", "arguments"),
    COMMANDS,
    ids=[f"{page.name}:{command} {' '.join(arguments)[:60]}" for page, command, arguments in COMMANDS],
)
def test_a_printed_command_composes(page: Path, command: str, arguments: list[str], tmp_path: Path) -> None:
    arguments = as_composable(arguments)
    if any(a.startswith("rerun=") for a in arguments):  # a run folder to re-run: one made for the purpose
        run = tmp_path / "run" / ".hydra"
        run.mkdir(parents=True)
        composed = run_in_process("train", "data.root=placeholder", "--cfg", "job").stdout
        (run / "config.yaml").write_text(composed)
        arguments = [a if not a.startswith("rerun=") else f"rerun={run.parent}" for a in arguments]
    run_in_process(command, *arguments, "--cfg", "job")


def test_relative_links_lead_to_files_within_the_repository() -> None:
    for page in PAGES:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
            assert resolved.is_relative_to(REPOSITORY), f"{page.name} links outside the repository: {target}"
        assert "../shared" not in text and "/work/" not in text, f"{page.name} names a path outside the repository"

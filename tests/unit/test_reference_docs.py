"""docs/reference is what `python -m clrk.reference docs/reference` makes of the code now:
a field, default, constraint, description, command or option that changed without the
reference being regenerated fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from clrk import reference
from clrk.api import all_kinds

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "reference"
HINT = f"run `{reference.REGENERATE}` (from the repository root) and commit the result"


def _stale(pages: dict[str, str]) -> list[str]:
    out = []
    for name, text in sorted(pages.items()):
        path = DOCS / name
        if not path.exists():
            out.append(f"{name} is missing")
        elif path.read_text() != text:
            out.append(f"{name} differs from the code")
    return out


def test_kind_pages_are_current() -> None:
    stale = _stale(reference.kind_pages())
    assert not stale, f"docs/reference is stale ({'; '.join(stale)}): {HINT}"


def test_cli_page_is_current() -> None:
    stale = _stale({"cli.md": reference.cli_page()})
    assert not stale, f"docs/reference is stale ({'; '.join(stale)}): {HINT}"


def test_no_page_is_left_over() -> None:
    made = set(reference.render())
    extra = sorted(p.name for p in DOCS.glob("*.md") if p.name not in made)
    assert not extra, f"docs/reference has pages the code no longer makes ({extra}): {HINT}"


def test_every_kind_and_field_is_in_the_reference() -> None:
    pages = reference.kind_pages()
    index = pages["README.md"]
    for cls in all_kinds():
        page = pages[reference.kind_file(cls)]
        assert f"({reference.kind_file(cls)})" in index
        assert f"# {cls.kind_info.kind}\n" in page
        for path in ("`apiVersion`", "`kind`", "`metadata`"):
            assert f"| {path} |" in page
    taskagent = pages["taskagent.md"]
    assert "| `spec.template.spec.resources.pids` | integer | `256` | >= 1; <= 512 |" \
        in taskagent
    assert "| `spec.delivery.mode` | string | `Stdin` | one of `Stdin`, `Metadata` |" \
        in taskagent


def test_cli_page_names_every_command_and_option() -> None:
    import typer

    from clrk.cli.main import app

    page = reference.cli_page()
    root = typer.main.get_command(app)

    def walk(command: object, path: str) -> None:
        assert f"\n## {path}\n" in page, path
        for param in getattr(command, "params", []):
            if getattr(param, "hidden", False):
                continue
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert f"`{opt}`" in page, f"{path} {opt}"
        for name, sub in (getattr(command, "commands", None) or {}).items():
            if not getattr(sub, "hidden", False):
                walk(sub, f"{path} {name}")

    walk(root, "clrk")


@pytest.mark.parametrize(("text", "cell"), [
    ("a | b", "a \\| b"), ("'@every <duration>'", "'@every &lt;duration&gt;'"),
    ("claude-*", "claude-\\*"), ("two\n  lines", "two lines")])
def test_cells_keep_text_literal(text: str, cell: str) -> None:
    assert reference._cell(text) == cell

"""The reference docs stay complete: every filter step and option, every config section and key, every probe kind,
every command and flag is documented, and the README and docs link only to files inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from audit.probes.options import DATASET_KINDS
from curate.filter.steps import STEP_TYPES
from pipelines.cli import app
from pipelines.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _sections(text: str, level: str) -> dict[str, str]:
    """`## `name`` heading -> the text under it, up to the next heading of the same level."""
    parts = re.split(rf"^{level} `([^`]+)`.*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_filter_step_and_option_is_documented():
    sections = _sections((DOCS / "filters.md").read_text(), "###")
    for step in STEP_TYPES:
        name = step.model_fields["name"].default
        assert name in sections, f"docs/filters.md has no section for step {name}"
        for option in step.model_fields:
            if option != "name":
                assert f"`{option}`" in sections[name], f"docs/filters.md: {name}.{option} is not documented"


def test_every_config_section_and_key_is_documented():
    text = (DOCS / "config.md").read_text()
    sections = _sections(text, "##")
    for key, field in RunConfig.model_fields.items():
        models = [a for a in (field.annotation, *getattr(field.annotation, "__args__", ())) if hasattr(a, "model_fields")]
        if models:
            assert key in sections, f"docs/config.md has no section for `{key}`"
            assert "```yaml" in sections[key], f"docs/config.md: section `{key}` has no example"
            for sub in models[0].model_fields:
                assert f"`{sub}`" in sections[key], f"docs/config.md: {key}.{sub} is not documented"
        elif key == "filter":
            assert key in sections and "`steps`" in sections[key]
        else:
            assert f"| `{key}` |" in text, f"docs/config.md: top-level key `{key}` is not documented"


def test_probe_dataset_kinds_are_documented():
    text = (DOCS / "probes.md").read_text()
    for kind in DATASET_KINDS:
        assert f"## `{kind}:" in text


def test_every_command_and_flag_is_in_the_cli_reference():
    text = (DOCS / "cli.md").read_text()
    for name, command in typer.main.get_command(app).commands.items():
        assert f"fairsift {name}" in text, f"docs/cli.md does not show `fairsift {name}`"
        for param in command.params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("--") and flag != "--help":
                    assert flag in text, f"docs/cli.md: `fairsift {name} {flag}` is not documented"


def test_links_stay_inside_the_repository():
    for doc in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
            assert path.exists(), f"{doc.name} links to a missing file: {target}"

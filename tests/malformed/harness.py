"""Runs one malformed-input case through fairsift's public interface and checks what must hold for every input:
no crash (a clear error, exit code 2 naming the file or field, is fine where the case says so), a valid pairs table
(contract columns, one row per uid, uid = hash(url, caption), no stray index column, http(s) URLs, captions without
NUL or other control characters), the expected pairs, and every expected counter in the manifest and printed in the
stage summary. A failed check raises AssertionError with the case's folder, so it can be rerun by hand.
"""

from __future__ import annotations

import json
import re
import traceback
from pathlib import Path

from typer.testing import CliRunner

from curate.schemas import PAIRS
from curate.sources.pair_rows import is_http_url
from curate.tables import compute_uid, read_table
from pipelines.cli import app
from tests.malformed.corpus import Case, Expect

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def write_case(case: Case, root: Path) -> Path:
    folder = root / case.category / case.name
    for rel, data in case.build().items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def load_expect(folder: Path) -> Expect:
    return Expect.from_json(json.loads((folder / "expect.json").read_text()))


def cli_args(case: Case, folder: Path, run: Path) -> list[str]:
    if case.interface == "crawl":
        sources = case.sources or sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                         if p.is_file() and p.name != "expect.json")
        return ["crawl", *[str(folder / s) for s in sources], "--run", str(run), *case.flags]
    if case.interface == "ingest":
        (list_file,) = case.sources
        return ["ingest", str(folder / list_file), "--run", str(run), *case.flags]
    if case.interface == "config":
        (config,) = case.sources
        return ["run", str(folder / config), "--run", str(run)]
    raise ValueError(f"unknown interface {case.interface}")


def _flat_output(output: str) -> str:
    return re.sub(r"\s+", " ", output)


def _counter(counts: dict, dotted: str):
    value = counts
    for key in dotted.split("."):
        assert isinstance(value, dict) and key in value, f"counter {dotted!r} missing from the stage counts {counts}"
        value = value[key]
    return value


def check_counters(counts: dict, expect: Expect, output: str, where: str) -> None:
    flat = _flat_output(output)
    for name, wanted in expect.counters.items():
        got = _counter(counts, name)
        assert got == wanted, f"{where}: counter {name} = {got}, expected {wanted} (counts: {counts})"
    for name, least in expect.counters_min.items():
        got = _counter(counts, name)
        assert got >= least, f"{where}: counter {name} = {got}, expected at least {least} (counts: {counts})"
    for name in [*expect.counters, *expect.counters_min]:
        leaf, value = name.split(".")[-1], _counter(counts, name)
        # the summary shows "name value" on a terminal or in a log, "name=value" in older one-line summaries
        assert re.search(rf"(?<![\w]){re.escape(leaf)}(=|\s+){value}(?![\d.])", flat), \
            f"{where}: counter {name}={value} not shown in the stage summary: {flat[-1500:]}"


def check_pairs_table(run: Path, expect: Expect, where: str) -> None:
    table = read_table(run, "pairs")
    names = table.column_names
    assert names[: len(PAIRS.names)] == PAIRS.names, f"{where}: pairs columns {names}"
    assert all(n and n.strip() and not n.startswith("Unnamed") and not n.startswith("__index") for n in names), \
        f"{where}: a column without a name (an index?) in pairs: {names}"
    rows = table.select(["uid", "url", "caption", "caption_truncated"]).to_pylist()
    uids = [r["uid"] for r in rows]
    assert len(uids) == len(set(uids)), f"{where}: duplicate uids in pairs"
    for r in rows:
        assert r["uid"] == compute_uid(r["url"], r["caption"]), f"{where}: uid is not hash(url, caption): {r}"
        assert is_http_url(r["url"]), f"{where}: not an http(s) URL in pairs: {r['url']!r}"
        # a URL-only list or an empty caption cell gives a null caption (as img2dataset's caption_col=None)
        assert r["caption"] is None or isinstance(r["caption"], str), f"{where}: caption neither text nor null: {r}"
        assert not _CONTROL.search(r["caption"] or ""), f"{where}: control character in caption {r['caption'][:200]!r}"
        if expect.caption_truncated is not None:
            assert r["caption_truncated"] == expect.caption_truncated, f"{where}: caption_truncated {r}"
    got = [(r["url"], r["caption"] or "") for r in rows]  # the cases write no caption as ""
    if expect.pairs is not None:
        assert got == expect.pairs, f"{where}: pairs differ\n got      {_short(got)}\n expected {_short(expect.pairs)}"
    if expect.pairs_include:
        position = 0
        for pair in expect.pairs_include:
            assert pair in got[position:], f"{where}: pair {pair} missing (or out of order) in {_short(got)}"
            position = got.index(pair, position) + 1


def _short(pairs: list) -> str:
    text = repr(pairs)
    return text if len(text) < 2000 else text[:2000] + f"... ({len(pairs)} pairs)"


def run_cli_case(case: Case, folder: Path, run: Path) -> None:
    expect = case.expect
    where = f"case {case.key} (files in {folder})"
    stage = "crawl" if case.interface == "crawl" else "ingest"
    result = CliRunner().invoke(app, cli_args(case, folder, run), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        detail = "".join(traceback.format_exception(result.exception))[-4000:]
        raise AssertionError(f"{where}: CRASH {type(result.exception).__name__}: {result.exception}\n{detail}")
    output = result.output
    if expect.outcome == "error" or (expect.outcome == "either" and result.exit_code == 2):
        assert result.exit_code == 2, f"{where}: expected a clear error (exit 2), got exit {result.exit_code}: {output[-2000:]}"
        flat = _flat_output(output)
        assert "error:" in flat, f"{where}: exit 2 without an error message: {flat[-2000:]}"
        for text in expect.error_contains:
            assert _flat_output(text) in flat, f"{where}: the error does not say {text!r}: {flat[-2000:]}"
        return
    assert result.exit_code == 0, f"{where}: exit {result.exit_code}: {output[-3000:]}"
    counts = json.loads((run / "manifest.json").read_text())["stages"][stage]["counts"]
    check_counters(counts, expect, output, where)
    check_pairs_table(run, expect, where)


def run_config_case(case: Case, folder: Path, run: Path) -> None:
    from pipelines.config import ConfigError, load_config

    expect = case.expect
    where = f"case {case.key} (files in {folder})"
    (config,) = case.sources
    try:
        load_config(folder / config)
        outcome, message = "ok", ""
    except ConfigError as exc:
        outcome, message = "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - anything else is the crash this corpus looks for
        detail = "".join(traceback.format_exception(exc))[-4000:]
        raise AssertionError(f"{where}: CRASH in load_config: {type(exc).__name__}: {exc}\n{detail}") from exc
    if expect.outcome != "either":
        assert outcome == expect.outcome, f"{where}: load_config gave {outcome!r}, expected {expect.outcome!r} {message}"
    if outcome == "ok":
        return
    for text in expect.error_contains:
        assert text in message, f"{where}: the config error does not say {text!r}: {message}"
    # the command a user runs gives the same message and exit code 2, before any stage runs
    result = CliRunner().invoke(app, cli_args(case, folder, run), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{where}: CRASH in `fairsift run`: {type(result.exception).__name__}: {result.exception}")
    assert result.exit_code == 2 and "error:" in result.output, f"{where}: fairsift run: {result.output[-2000:]}"
    assert not (run / "pairs").exists(), f"{where}: a stage ran although the config is invalid"


def run_case(case: Case, folder: Path, run: Path) -> None:
    if case.interface == "config":
        run_config_case(case, folder, run)
    else:
        run_cli_case(case, folder, run)

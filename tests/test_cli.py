"""The CLI as a new user meets it: --version, help in the user's words, summaries, warnings that name the fix,
errors with the closest valid names, config paths relative to the config file, report's missing tables, busy ports."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from curate import schemas, tables
from pipelines import summary
from pipelines.cli import app
from pipelines.config import ConfigError, load_config
from tests.run_builder import planted_rows, sample_rows, write_run

runner = CliRunner()
PYTHON_TYPES = re.compile(r"<(int|str|bool|float|path|list\[[^\]]*\]|Path)>|\{[A-Z_]+\}")


def _commands() -> dict:
    return typer.main.get_command(app).commands


def test_version():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"fairsift {version('fairsift')}"


def test_help_starts_with_a_user_sentence_and_names_no_python_types():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = [line.strip(" │") for line in result.stdout.splitlines() if line.strip(" │")]
    assert text[1].startswith("fairsift builds filtered image-text training corpora")  # right after Usage
    assert "public interface" not in result.stdout
    for name in _commands():
        out = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).stdout
        assert not PYTHON_TYPES.search(out), (name, PYTHON_TYPES.search(out).group(0))


def test_every_option_and_argument_has_help():
    for name, command in _commands().items():
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"fairsift {name}: {param.name} has no help"


# ---- errors with the closest valid names ----

def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    ("ingest: {path: x.csv}\ndownlaod: {image_size: 128}\n",
     ["downlaod: unknown key (did you mean download?)", "valid keys of the top level:", "ingest", "report"]),
    ("ingest: {path: x.csv}\ndownload: {image_sise: 128}\n",
     ["download.image_sise: unknown key (did you mean image_size?)", "valid keys of download: image_size, resize_mode"]),
    ("ingest: {path: x.csv}\ningest_x: 1\n", ["ingest_x: unknown key (did you mean ingest?)"]),
    ("ingest: {path: x.csv}\nfilter: {steps: [dedup, basci]}\n",
     ["unknown filter step 'basci' (did you mean basic?)", "clip_top_fraction"]),
    ("ingest: {path: x.csv}\nfilter: {steps: [{clip_top_fraction: {fractoin: 0.3}}]}\n",
     ["fractoin: unknown key (did you mean fraction?)", "valid keys of filter.steps.clip_top_fraction:",
      "group_parity"]),
    ("ingest: {path: x.csv}\nscore: {model: ViT-B-33}\n", ["did you mean ViT-B-32?"]),
    ("ingest: {path: x.csv}\nscore: {model: ViT-B-32, pretrained: laion2b_s34b_b78k}\n",
     ["unknown pretrained tag 'laion2b_s34b_b78k'", "did you mean laion2b_s34b_b79k?"]),
])
def test_config_errors_suggest_the_closest_key_and_list_the_valid_ones(tmp_path, text, expected):
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    for part in expected:
        assert part in str(err.value), str(err.value)
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and expected[0] in result.output and "Traceback" not in result.output


def test_model_and_tag_typos_on_the_command_line(tmp_path):
    result = runner.invoke(app, ["score", str(tmp_path), "--model", "ViT-B-33"])
    assert result.exit_code == 2 and "did you mean ViT-B-32?" in result.output
    result = runner.invoke(app, ["score", str(tmp_path), "--model", "vit-b-32", "--pretrained", "laion2b_s34b_b79k"])
    assert result.exit_code == 2 and "did you mean ViT-B-32?" in result.output
    result = runner.invoke(app, ["probe", "--dataset", "fairface:x", "--out", str(tmp_path), "--model", "ViT-B-32",
                                 "--pretrained", "opnai"])
    assert result.exit_code == 2 and "did you mean openai?" in result.output


def test_filter_step_typo_in_a_filter_file(tmp_path):
    path = tmp_path / "filters.yaml"
    path.write_text("steps:\n  - dedup\n  - clip_top_fractoin: {fraction: 0.3}\n")
    result = runner.invoke(app, ["filter", str(tmp_path), "--config", str(path)])
    assert result.exit_code == 2 and "did you mean clip_top_fraction?" in result.output


def test_every_relative_path_in_a_config_is_relative_to_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "words.txt").write_text("badword\n")
    _config(folder, """
name: paths
run_dir: runs/here
ingest: {path: lists/urls.csv}
dedup: {eval_set: eval_images}
score: {model: ViT-B-32, checkpoint: weights/model.pt}
probe: {datasets: ["fairface:data/fairface", "country:data/country.csv"]}
filter: {steps: [{nsfw_caption: {words_file: words.txt}}]}
""")
    monkeypatch.chdir(tmp_path)  # anywhere but the config's folder
    cfg = load_config(Path("configs/run.yaml"))
    base = folder.resolve()
    assert Path(cfg.run_dir) == base / "runs/here"
    assert Path(cfg.ingest.path) == base / "lists/urls.csv"
    assert Path(cfg.dedup.eval_set) == base / "eval_images"
    assert Path(cfg.score.checkpoint) == base / "weights/model.pt"
    assert cfg.probe.datasets == [f"fairface:{base / 'data/fairface'}", f"country:{base / 'data/country.csv'}"]
    assert Path(cfg.filter["steps"][0]["words_file"]) == base / "words.txt"


# ---- report says what is missing ----

def _pairs_only_run(run_dir: Path) -> Path:
    rows = sample_rows(3)
    tables.write_part(run_dir, "pairs", 0, pa.Table.from_pylist(
        [{"uid": r.uid, "url": r.url, "caption": r.caption, "page_url": None, "source": "ingest",
          "caption_source": "list", "caption_truncated": False} for r in rows], schema=schemas.PAIRS))
    return run_dir


def test_report_names_the_missing_tables_and_the_commands_that_make_them(tmp_path):
    run_dir = _pairs_only_run(tmp_path / "run")
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 2
    for part in ("decisions.parquet (fairsift filter RUN)", "audit/composition.parquet (fairsift audit RUN)"):
        assert part in result.output
    assert not (run_dir / "report").exists()


# ---- summaries and warnings ----

def test_summary_in_a_log_is_plain_text_never_wrapped(capsys):
    long_value = "fairsift sql runs/demo \"select dropped_by, count(*) from decisions group by 1\" " * 3
    summary.set_json_output(False)
    summary.print_stage_summary("export", {"rows": 3, "note": long_value, "status": {"a": 1, "b": 2}}, 1.25)
    err = capsys.readouterr().err
    assert "\x1b[" not in err  # no colour codes in a log
    lines = err.splitlines()
    assert lines[0] == "export done in 1.2 s"
    assert any(line.strip().startswith("note") and line.rstrip().endswith(long_value.strip()) for line in lines)
    assert any(re.fullmatch(r"\s+status\s+a=1, b=2", line) for line in lines)


def test_json_output_is_one_object_per_stage(capsys):
    summary.set_json_output(True)
    try:
        summary.print_stage_summary("download", {"rows": 2, "status": {"blocked_private_network": 2}}, 0.5)
        summary.print_stage_skipped("dedup", "unchanged", {"rows": 2})
    finally:
        summary.set_json_output(False)
    out = capsys.readouterr().out.splitlines()
    first, second = (json.loads(line) for line in out)
    assert first["stage"] == "download" and first["counts"]["status"] == {"blocked_private_network": 2}
    assert "--allow-private-network" in first["warnings"][0]
    assert second == {"stage": "dedup", "status": "skipped", "why": "unchanged", "counts": {"rows": 2},
                      "warnings": []}


def test_warnings_name_the_fix():
    blocked = summary.stage_warnings("download", {"rows": 40, "status": {"blocked_private_network": 40}})
    assert len(blocked) == 1 and "all 40 downloads" in blocked[0] and "--allow-private-network" in blocked[0]
    assert not summary.stage_warnings("download", {"rows": 40, "status": {"success": 40}})
    nothing = summary.stage_warnings("score", {"rows": 0, "scored": 0, "mean_clip_score": None})
    assert "nothing was scored" in nothing[0]
    none_kept = summary.stage_warnings("filter", {"rows": 10, "kept": 0, "steps": {
        "download": {"pass": 10, "dropped_first": 0}, "clip_threshold": {"pass": 0, "dropped_first": 10}}})
    assert "kept 0 of 10 rows" in none_kept[0] and "`clip_threshold` (10 of 10)" in none_kept[0]
    parity = summary.stage_warnings("filter", {"rows": 9, "kept": 4, "group_parity": {
        "attribute": "gender_terms", "min_ratio": 1.0, "parity_met": False, "groups": {
            "female": {"ratio_parity": 0.75}, "male": {"ratio_parity": 1.5}, "none": {"ratio_parity": 0.75}}}})
    assert len(parity) == 1
    assert "gender_terms=female ratio 0.750" in parity[0] and "gender_terms=none ratio 0.750" in parity[0]
    assert "male ratio" not in parity[0].replace("female ratio", "") and "min_ratio 1.0" in parity[0]


def _captioned_run(run_dir: Path) -> Path:
    """Nine rows in three gender-term groups of three, with pairs/ so group signals can be computed."""
    captions = ["a woman reading a book", "a smiling woman outdoors", "portrait of a woman at work",
                "a man reading a book", "a smiling man outdoors", "portrait of a man at work",
                "a red bicycle by a wall", "a bowl of fresh fruit", "a mountain lake at dawn"]
    rows = sample_rows(9)
    for i, (row, caption) in enumerate(zip(rows, captions)):
        row.caption, row.clip_score = caption, round(0.1 + 0.02 * i, 3)
    write_run(run_dir, rows, dedup=False)
    tables.write_part(run_dir, "pairs", 0, pa.Table.from_pylist(
        [{"uid": r.uid, "url": r.url, "caption": r.caption, "page_url": None, "source": "ingest",
          "caption_source": "list", "caption_truncated": False} for r in rows], schema=schemas.PAIRS))
    return run_dir


def test_filter_computes_group_signals_and_warns_when_parity_is_unmet(tmp_path):
    run_dir = _captioned_run(tmp_path / "run")
    config = tmp_path / "parity.yaml"
    # 3 groups of 3 and k = 5 (the top-fraction rule: 4.5 rounds up): equal rates would need k divisible by 3,
    # so parity at min_ratio 1.0 cannot be met (min_count 1: the tiny groups are constrained, not left out)
    config.write_text("steps:\n  - clip_top_fraction: {fraction: 0.5, group_parity: {attribute: gender_terms, "
                      "min_ratio: 1.0, min_count: 1}}\n")
    result = runner.invoke(app, ["filter", str(run_dir), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert tables.table_exists(run_dir, "groups")  # computed by `filter` itself, as `fairsift run` does
    assert "group parity unmet" in result.stderr and "min_ratio 1.0" in result.stderr
    assert re.search(r"gender_terms=\w+ ratio \d\.\d{3}", result.stderr)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["groups"]["status"] == "done" and manifest["stages"]["filter"]["status"] == "done"

    as_json = runner.invoke(app, ["filter", str(run_dir), "--config", str(config), "--json"])
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["stage"] for r in records] == ["filter"]  # groups are current now
    assert records[0]["counts"]["group_parity"]["parity_met"] is False
    assert any("group parity unmet" in w for w in records[0]["warnings"])


def test_a_filter_that_keeps_nothing_says_which_step_and_how_to_look(tmp_path):
    run_dir = write_run(tmp_path / "run", list(planted_rows().values()))
    config = tmp_path / "strict.yaml"
    config.write_text("steps:\n  - {clip_threshold: {min_score: 2.0}}\n")
    result = runner.invoke(app, ["filter", str(run_dir), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "the filter kept 0 of" in result.stderr and "`clip_threshold`" in result.stderr
    assert "reason_code" in result.stderr


def test_all_blocked_downloads_say_pass_allow_private_network(tmp_path):
    run_dir = tmp_path / "run"
    listing = tmp_path / "urls.csv"
    listing.write_text("url,caption\n" + "".join(f"http://127.0.0.1:9/{i}.jpg,a photo of a dog {i}\n" for i in range(3)))
    assert runner.invoke(app, ["ingest", str(listing), "--run", str(run_dir)]).exit_code == 0
    result = runner.invoke(app, ["download", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "all 3 downloads were refused" in result.stderr and "--allow-private-network" in result.stderr
    entry = json.loads((run_dir / "manifest.json").read_text())["stages"]["download"]
    assert entry["counts"]["status"] == {"blocked_private_network": 3}  # the raw counts stay in the manifest
    assert "--allow-private-network" in entry["warnings"][0]


# ---- dashboard port ----

def test_busy_port_is_an_error_before_any_url(tmp_path, monkeypatch):
    import dashboards.launch

    def must_not_launch(*_a, **_k):
        raise AssertionError("launch must not be reached on a busy port")

    monkeypatch.setattr(dashboards.launch, "launch", must_not_launch)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["dashboard", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 2
    assert f"port {port}" in result.output and "in use" in result.output and "http://" not in result.output


def test_demo_log_keeps_long_commands_on_one_line(demo_run):
    """The demo's closing command, read from a log (stderr not a terminal), can be copied whole."""
    run_dir, proc = demo_run
    line = next(l for l in proc.stderr.splitlines() if l.startswith("explore: fairsift sql"))
    assert line.endswith('group by 1"') and str(run_dir) in line

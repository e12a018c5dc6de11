"""Console output: library code logs (CLIs print the lines plainly; --quiet / -v), progress bars only on a
terminal and periodic one-line status otherwise."""

import io
import logging
import os
import time

import src.progress
from src.cli import setup_logging
from src.progress import progress_bar


def test_off_a_terminal_a_bar_is_a_few_status_lines(monkeypatch, caplog):
    monkeypatch.setattr(src.progress, "STATUS_SECONDS", 0.05)
    caplog.set_level(logging.INFO, logger="src.progress")
    bar = progress_bar(range(6), desc="epoch 1/3", file=io.StringIO())  # a file, not a terminal
    for _ in bar:
        time.sleep(0.03)
    lines = [r.getMessage() for r in caplog.records if r.name == "src.progress"]
    assert 2 <= len(lines) <= 4  # every ~0.05 s, plus the last one; not 6
    assert all("\r" not in line and "\n" not in line for line in lines)
    assert lines[-1].startswith("epoch 1/3: 100%") and "6/6" in lines[-1]
    # on a terminal: tqdm's own bar
    terminal = io.StringIO()
    terminal.isatty = lambda: True
    bar = progress_bar(range(2), desc="x", file=terminal)
    assert type(bar).__name__ != "StatusBar"
    list(bar)
    assert "\r" in terminal.getvalue()


def test_manual_updates_and_postfix_work_off_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="src.progress")
    with progress_bar(total=1000, unit="B", unit_scale=True, desc="file.json", file=io.StringIO()) as bar:
        bar.update(400)
        bar.set_postfix(loss="1.234")
        bar.update(600)
    assert "file.json: 100%" in caplog.records[-1].getMessage() and "loss=1.234" in caplog.records[-1].getMessage()


def test_cli_console_lines_quiet_and_verbose(capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    log = logging.getLogger("src.something")
    setup_logging()
    log.info("converting")
    log.debug("details")
    log.warning("careful")
    assert tuple(capsys.readouterr()) == ("converting\n", "warning: careful\n")
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"  # not a terminal: the HF libraries' bars off
    setup_logging(quiet=True)
    log.info("converting")
    log.error("broken")
    assert tuple(capsys.readouterr()) == ("", "error: broken\n")
    assert progress_bar(range(3), file=io.StringIO()).disable  # --quiet: no bars at all
    setup_logging(verbose=True)
    log.debug("details")
    assert capsys.readouterr().out == "details\n"
    setup_logging()


def test_a_cli_off_a_terminal_prints_no_carriage_returns(tmp_path, capsys):
    from src.data.conversion import main
    from tests.tiny_data import write_tiny_raw

    root = write_tiny_raw(tmp_path, n=12, size=32)
    assert main(["--data-root", str(root), "--image-size", "32", "--min-area", "10", "--stats"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err
    assert "image stats: 100%" in captured.out and "kept 12 of 12" in captured.out
    assert main(["--data-root", str(root), "--image-size", "32", "--min-area", "10", "--stats", "--quiet"]) == 0
    assert capsys.readouterr().out == ""

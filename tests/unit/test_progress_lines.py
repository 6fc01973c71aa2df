"""Progress a person can follow: without a terminal, a plain line per host at each phase and every
few seconds while bytes flow; with one, bars that name the phase; for programs, phase events."""

from __future__ import annotations

import io
import re

import pytest

from shipper.cli.progress import JSONLinesReporter, PlainLinesReporter


def test_plain_lines_say_each_phase_and_the_bytes_so_far_at_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr("shipper.cli.progress.time.monotonic", lambda: next(clock))
    log = io.StringIO()
    reporter = PlainLinesReporter(log, interval=6.0)

    reporter.start("b", 200_000_000)
    for done in range(1, 8):
        reporter.advance("b", done * 20_000_000)
    reporter.phase("b", "loading")
    reporter.phase("b", "checking")
    reporter.phase("b", "tagging")
    reporter.finish("b", "moved")

    lines = log.getvalue().splitlines()
    assert re.fullmatch(r"b: reading \(about 200.0 MB to send\) \[\d+s\]", lines[0])  # until the source's first byte
    assert re.match(r"b: sending 20.0 MB of about 200.0 MB at", lines[1])  # at once when bytes flow
    periodic = [line for line in lines if re.match(r"b: sending \d", line)]
    assert 2 <= len(periodic) < 7  # not a line per chunk: one per interval
    assert re.match(r"b: sending [\d.]+ MB of about 200.0 MB at [\d.]+ MB/s \[\d+s\]", periodic[0])
    assert [line.split(" [")[0].split(" (")[0] for line in lines[-4:]] == ["b: loading", "b: checking", "b: tagging", "b: moved, 140.0 MB of about 200.0 MB at " + lines[-1].split(" at ")[1].split(" [")[0]]


def test_the_interval_is_set_by_shipper_progress_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_PROGRESS_INTERVAL", "30")
    assert PlainLinesReporter(io.StringIO()).interval == 30.0
    monkeypatch.setenv("SHIPPER_PROGRESS_INTERVAL", "soon")
    assert PlainLinesReporter(io.StringIO()).interval == 5.0


def test_json_progress_names_each_phase() -> None:
    written: list[dict[str, object]] = []
    reporter = JSONLinesReporter(written.append)

    reporter.phase("b", "surveying")
    reporter.start("b", 10)
    reporter.advance("b", 0)
    reporter.advance("b", 4)
    reporter.phase("b", "loading")
    reporter.finish("b", "moved")

    phases = [e.get("phase") for e in written if e["event"] == "phase"]
    assert phases == ["surveying", "reading", "sending", "loading"]
    assert [e["event"] for e in written] == ["phase", "start", "phase", "phase", "progress", "phase", "finish"]  # no progress before a byte


def test_bars_on_a_terminal_show_each_targets_phase_and_end() -> None:
    from shipper.cli.bars import BarsReporter

    screen = io.StringIO()
    with BarsReporter(screen) as bars:
        bars.start("web1", 1000)
        bars.advance("web1", 500)
        bars.phase("web1", "loading")
        bars.finish("web1", "done")
    assert "web1 done" in screen.getvalue()

"""--limit-rate and --limit-total: a rate, held by every sink of a stream, without bursts after idling."""

from __future__ import annotations

import pytest

from shipper.archive import fanout
from shipper.archive.fanout import QueueSink, RateLimit, apply_limits
from shipper.cli.options import parse_rate
from shipper.errors import UsageError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(fanout.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(fanout.time, "sleep", fake.sleep)
    return fake


def test_a_limit_spaces_bytes_at_its_rate_and_idle_time_earns_no_burst(clock: Clock) -> None:
    limit = RateLimit(1 << 20)
    for _ in range(8):
        limit.take(1 << 18)  # 2 MiB in all
    assert clock.now - 100.0 == pytest.approx(1.75)  # the first piece goes at once, the rest at 1 MiB/s

    clock.now += 60  # idle
    started = clock.now
    limit.take(1 << 20)
    limit.take(1 << 20)
    assert clock.now - started == pytest.approx(1.0)


def test_time_spent_sending_each_piece_is_not_lost_from_the_rate(clock: Clock) -> None:
    # Each piece takes a while to hand on (a pipe, a busy peer) after its turn came: the limit must still
    # average its rate (it lost that time on every piece, 4% at 5M, measured by bench/link.py).
    limit = RateLimit(1 << 20)
    for _ in range(40):
        limit.take(1 << 18)
        clock.now += 0.005  # sending it
    assert clock.now - 100.0 == pytest.approx(40 * 0.25 - 0.25 + 0.005, abs=0.01)  # 10 MiB at 1 MiB/s, the first at once


def test_a_limited_sink_hands_out_pieces_held_by_its_own_and_the_shared_limit(clock: Clock) -> None:
    sinks = [QueueSink("b"), QueueSink("c")]
    apply_limits(sinks, per_target=4 << 20, total=2 << 20)
    assert sinks[0].limits[1] is sinks[1].limits[1]  # one total for both

    sinks[0]._queue.put(b"x" * (1 << 20))
    sinks[0]._queue.put(fanout._END)
    pieces = list(sinks[0].items())
    assert sum(len(p) for p in pieces) == 1 << 20 and max(len(p) for p in pieces) == (2 << 20) // 10  # a tenth of a second each
    assert clock.now - 100.0 == pytest.approx(0.5, abs=1e-3)  # the shared 2 MiB/s, the slower of the two, sets the pace


@pytest.mark.parametrize(("text", "rate"), [("20M", 20 << 20), ("500K", 500 << 10), ("1.5G", 1.5 * (1 << 30)), ("5MB/s", 5 << 20), ("2048", 2048)])
def test_rates_are_written_as_curl_takes_them(text: str, rate: float) -> None:
    assert parse_rate(text, "--limit-rate") == rate


@pytest.mark.parametrize("text", ["fast", "-5M", "10", "5 M"])
def test_a_rate_that_is_no_rate_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_rate(text, "--limit-rate")


def test_under_a_slow_limit_no_single_wait_is_long(clock: Clock) -> None:
    sink = QueueSink("b")
    apply_limits([sink], per_target=16 << 10, total=None)  # 16 KiB/s
    sink._queue.put(b"x" * (64 << 10))
    sink._queue.put(fanout._END)

    waits = []
    for _ in sink.items():
        before = clock.now
        waits.append(before)
    gaps = [b - a for a, b in zip(waits, waits[1:])]
    assert max(gaps) <= 0.3  # pieces of a tenth of a second (at least 4 KiB), so an abort is heard at once



def test_under_a_limit_progress_counts_the_bytes_that_passed_it_not_those_queued_before_it(clock: Clock) -> None:
    # The queue ahead of the limit holds 8 chunks: progress counted as they were queued ran 8 MiB ahead of the
    # target (1.6 s at 5M, 16 s at 500K), and said "loading" while the limit still held them back.
    sink = QueueSink("b")
    apply_limits([sink], per_target=1 << 20, total=None)
    for _ in range(3):
        assert sink.put(b"y" * (1 << 20))
    sink._queue.put(fanout._END)
    assert sink.sent == 3 << 20 and sink.passed == 0

    pieces = sink.items()
    next(pieces)
    assert sink.passed == (1 << 20) // 10  # one tenth of a second's worth has passed the limit
    for _ in pieces:
        pass
    assert sink.passed == sink.sent == 3 << 20


def test_without_a_limit_what_is_handed_to_the_target_is_what_passed() -> None:
    sink = QueueSink("b")
    sink.put(b"z" * 1000)
    sink.wait_passed()  # no limit holds them back: nothing to wait for (the end may be queued at once)
    sink._queue.put(fanout._END)
    assert list(sink.items()) == [b"z" * 1000] and sink.passed == 1000

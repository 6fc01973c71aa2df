"""The fleet model's floor (bench/fleet_model.py): what no tiered schedule can beat, whatever overlaps."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fleet_model import Calibration, flat_seconds, tiered_floor, tiered_seconds  # noqa: E402


def test_the_benchs_fleet_cannot_go_below_three_eighths_of_flat_with_four_layers() -> None:
    # 24 hosts, 3 sites of 8, 4 equal layers: the last cache holds its first layer after 1/4 + 3/4 of a copy's
    # time, then sends 8 copies: 9 copies' time against the flat fan-out's 24.
    assert tiered_floor(24, 8, 4) == pytest.approx(9 / 24)
    assert tiered_floor(24, 8, 4) > 0.35


def test_more_layers_lower_the_floor_towards_the_sites_own_copies() -> None:
    floors = [tiered_floor(24, 8, layers) for layers in (1, 4, 10, 100)]
    assert floors == sorted(floors, reverse=True)
    assert floors[0] == pytest.approx(12 / 24)  # one layer: the stages one after another
    assert floors[-1] == pytest.approx(8 / 24, abs=0.01)


def test_a_faster_central_uplink_lowers_the_floor() -> None:
    assert tiered_floor(24, 8, 4, central_factor=10) < tiered_floor(24, 8, 4)


def test_the_sequential_model_never_beats_the_floor() -> None:
    cal = Calibration(size=100 << 20, goodput=12.45e6, flat_fixed=0.0, tiered_fixed=0.0, reads_per_cache=1.0)
    for hosts in (24, 100, 500, 2000):
        assert tiered_seconds(cal, hosts, 8) / flat_seconds(cal, hosts) >= tiered_floor(hosts, 8, 1) - 1e-9

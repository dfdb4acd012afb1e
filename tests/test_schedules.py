"""Schedules of temperatures and Bop's γ/τ: start and end values, shapes by hand, progress counting."""
import math

import pytest

from nas.errors import ConfigError
from nas.estimators import build_estimator
from nas.estimators.schedules import KINDS, Schedule


@pytest.mark.parametrize("kind", KINDS)
def test_schedules_start_and_end_at_their_values(kind):
    s = Schedule(10.0, 0.1, kind)
    assert s.value(0.0) == pytest.approx(10.0)
    assert s.value(1.0) == pytest.approx(10.0 if kind == "constant" else 0.1)
    assert s.value(1.5) == s.value(1.0) and s.value(-1) == s.value(0.0)  # clamped


def test_schedule_shapes_by_hand():
    t = 0.3
    assert Schedule(10.0, 0.1, "linear").value(t) == pytest.approx(10.0 - 9.9 * t)
    assert Schedule(10.0, 0.1, "exponential").value(t) == pytest.approx(10.0 * 0.01 ** t)
    assert Schedule(10.0, 0.1, "cosine").value(t) == pytest.approx(0.1 + 0.5 * 9.9 * (1 + math.cos(math.pi * t)))
    assert Schedule(10.0, 0.1, "cosine").value(0.5) == pytest.approx(5.05)


def test_progress_per_epoch_and_per_step():
    ep, st = Schedule(1, 0, "linear", "epoch"), Schedule(1, 0, "linear", "step")
    # GDAS: τ = τ_max - (τ_max - τ_min)·epoch/(epochs-1), constant within an epoch
    assert [ep.progress(e, 5, 3, 10) for e in range(5)] == [0, 0.25, 0.5, 0.75, 1.0]
    assert st.progress(0, 2, 0, 4) == 0 and st.progress(1, 2, 3, 4) == 1  # first and last step
    assert st.progress(1, 2, 0, 4) == pytest.approx(4 / 7)
    assert ep.progress(0, 1, 0, 1) == 0  # a one-epoch run stays at the start value


@pytest.mark.parametrize("name,key,default_start,default_end", [
    ("gumbel_hard", "tau", 10.0, 0.1),  # GDAS
    ("gumbel", "tau", 1.0, 0.03),       # SNAS
    ("softmax", "tau", 1.0, 1.0),       # DARTS
    ("sigmoid", "tau", 1.0, 1.0),
    ("bop", "gamma", 1e-4, 1e-4),       # larq
    ("bop", "threshold", 1e-8, 1e-8),
])
def test_estimators_walk_their_schedules_over_a_run(name, key, default_start, default_end):
    est = build_estimator(name)
    seen = []
    for epoch in range(6):
        est.set_progress(epoch, 6, 0, 1)
        seen.append(est.scalars()[key])
    assert seen[0] == pytest.approx(default_start) and seen[-1] == pytest.approx(default_end)
    assert all(a >= b for a, b in zip(seen, seen[1:])) or all(a <= b for a, b in zip(seen, seen[1:]))


@pytest.mark.parametrize("kind", KINDS)
def test_configured_schedule_and_state_round_trip(kind):
    est = build_estimator("softmax", tau=5.0, tau_end=0.5, schedule=kind, per="step")
    for step in range(4):
        est.set_progress(0, 1, step, 4)
    assert est.values["tau"] == pytest.approx(5.0 if kind == "constant" else 0.5)
    est2 = build_estimator("softmax", tau=5.0, tau_end=0.5, schedule=kind, per="step")
    est2.load_state_dict(est.state_dict())
    assert est2.scalars() == est.scalars()


def test_an_end_value_without_a_kind_means_linear():
    assert Schedule.of(2.0, 1.0) == Schedule(2.0, 1.0, "linear", "epoch")
    assert Schedule.of(2.0) == Schedule(2.0, 2.0, "constant", "epoch")


def test_bad_schedules_are_config_errors():
    with pytest.raises(ConfigError, match="positive"):
        Schedule(1.0, 0.0, "exponential")
    with pytest.raises(ConfigError, match="per must be"):
        Schedule(1.0, 0.0, "linear", "batch")

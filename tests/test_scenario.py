"""Scenario files, presets, validation and randomisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from firmware_protocol._errors import ScenarioError
from firmware_protocol.virtual.scenario import EXERCISES, RestPause, Scenario, SetPlan

GOOD = """
name = "mine"
exercise = "hip_thrust"
disturbances = false

[[sets]]
reps = 6
load_kg = 80.0
rom_m = 0.24
concentric_s = 0.5
eccentric_s = 1.2
lockout_hold_s = 1.0
bottom_pause_s = 0.4
rest_pauses = [{ after_rep = 3, pause_s = 12.0 }]
partial_reps = [6]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_presets_are_the_four_exercises_and_the_demo() -> None:
    assert Scenario.presets() == sorted([*EXERCISES, "demo"])


@pytest.mark.parametrize("name", Scenario.presets())
def test_every_preset_loads_with_its_bodies(name: str) -> None:
    s = Scenario.preset(name)
    assert s.exercise == ("hip_thrust" if name == "demo" else name)
    expected = {
        "hip_thrust": ("bar", "pelvis"),
        "bodyweight_hip_thrust": ("pelvis",),
        "squat": ("bar",),
        "deadlift": ("bar",),
        "demo": ("bar", "pelvis"),
    }
    assert s.bodies == expected[name]
    assert s.disturbances == (name != "demo")  # the demo's rests are too short to walk
    # Presets promise a rest-pause clearly shorter than any rest between sets.
    rests = [p.rest_before_s for p in s.sets[1:]]
    pauses = [rp.pause_s for p in s.sets for rp in p.rest_pauses]
    assert not pauses or max(pauses) < 0.8 * min(rests)


def test_hip_thrust_preset_has_the_promised_sets() -> None:
    s = Scenario.preset("hip_thrust")
    assert len(s.sets) == 3
    assert any(p.rest_pauses for p in s.sets)
    assert any(p.tilt == "anterior_tip" for p in s.sets)


def test_load_good_file(tmp_path: Path) -> None:
    s = Scenario.load(write(tmp_path, GOOD))
    assert s.sets[0].rest_pauses == (RestPause(3, 12.0),)
    assert s.sets[0].partial_reps == (6,)
    assert s.sets[0].tilt == "posterior_hold"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("reps = 6", "reps = -2", "sets[0].reps"),
        ('exercise = "hip_thrust"', 'exercise = "bench_press"', "exercise"),
        ("rom_m = 0.24", "rom_m = 24.0", "sets[0].rom_m"),
        ("rom_m = 0.24", "rom_m = 0.24\ntempo = 3", "tempo"),
        ("after_rep = 3", "after_rep = 6", "rest_pauses[0].after_rep"),
        ("partial_reps = [6]", "partial_reps = [9]", "partial_reps"),
        ("concentric_s = 0.5", "concentric_s = 0.05", "concentric_s"),
        ("load_kg = 80.0", 'load_kg = "heavy"', "load_kg"),
        ("eccentric_s = 1.2\n", "", "eccentric_s"),
        ("disturbances = false", "disturbances = 1", "disturbances"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in GOOD
    with pytest.raises(ScenarioError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Scenario.load(write(tmp_path, GOOD.replace(old, new, 1)))


def test_out_of_range_message_states_the_range(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"allowed 0\.1\.\.0\.4 m"):
        Scenario.load(write(tmp_path, GOOD.replace("rom_m = 0.24", "rom_m = 0.5")))


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="TOML"):
        Scenario.load(write(tmp_path, "name = "))
    with pytest.raises(ScenarioError, match="cannot read"):
        Scenario.load(tmp_path / "absent.toml")


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ScenarioError, match="hip_thrust") as info:
        Scenario.preset("bench")
    assert all(name in str(info.value) for name in Scenario.presets())


def test_from_name_or_path(tmp_path: Path) -> None:
    assert Scenario.from_name_or_path("squat").exercise == "squat"
    assert Scenario.from_name_or_path(str(write(tmp_path, GOOD))).name == "mine"
    with pytest.raises(ScenarioError, match="neither"):
        Scenario.from_name_or_path("nonsense")


def test_direct_construction_is_validated() -> None:
    plan = SetPlan(5, 60.0, 0.5, 1.0, 1.0, 0.3, 1.5)
    with pytest.raises(ScenarioError, match=r"sets\[0\]\.rom_m"):
        Scenario("x", "squat", (plan,), disturbances=False)


@pytest.mark.parametrize("exercise", EXERCISES)
def test_random_is_reproducible_and_varied(exercise: str) -> None:
    a = Scenario.random(exercise, np.random.default_rng(7))  # type: ignore[arg-type]
    b = Scenario.random(exercise, np.random.default_rng(7))  # type: ignore[arg-type]
    assert a == b
    others = [Scenario.random(exercise, np.random.default_rng(s)) for s in range(8)]  # type: ignore[arg-type]
    assert len({o.sets for o in others}) == 8
    assert len({p.rom_m for o in others for p in o.sets}) > 8


def test_random_covers_the_interesting_cases() -> None:
    rng = np.random.default_rng(3)
    plans = [p for _ in range(40) for p in Scenario.random("hip_thrust", rng, sets=3).sets]
    assert any(p.rest_pauses for p in plans)
    assert any(p.partial_reps for p in plans)
    assert any(p.tilt == "anterior_tip" for p in plans)
    assert any(p.bottom_anterior_deg > 0 for p in plans)
    assert all(60 <= p.rest_before_s <= 180 for p in plans if p.rest_before_s > 30)
    with pytest.raises(ScenarioError, match="sets"):
        Scenario.random("squat", rng, sets=0)


@pytest.mark.parametrize("name", Scenario.presets())
def test_to_dict_round_trips_through_json(name: str) -> None:
    s = Scenario.preset(name)
    d = json.loads(json.dumps(s.to_dict()))
    assert Scenario.from_dict(d) == s
    r = Scenario.random("deadlift", np.random.default_rng(1))
    assert Scenario.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_touch_and_go_is_a_set_style_of_squats_and_deadlifts(tmp_path: Path) -> None:
    def plan(**changes: object) -> SetPlan:
        base: dict[str, object] = {
            "reps": 5,
            "load_kg": 100.0,
            "concentric_s": 0.8,
            "eccentric_s": 1.0,
            "lockout_hold_s": 0.0,
            "bottom_pause_s": 0.05,
            "rom_m": 0.5,
            "touch_and_go": True,
        }
        return SetPlan(**(base | changes))  # type: ignore[arg-type]

    Scenario("s", "squat", (plan(),), disturbances=False)
    Scenario("d", "deadlift", (plan(lockout_hold_s=0.5),), disturbances=False)
    with pytest.raises(ScenarioError, match=r"sets\[0\]\.bottom_pause_s = 0\.5 .*0\.\.0\.1 s"):
        Scenario("d", "deadlift", (plan(bottom_pause_s=0.5),), disturbances=False)
    with pytest.raises(ScenarioError, match=r"lockout_hold_s = 1\.0 in a touch-and-go squat"):
        Scenario("s", "squat", (plan(lockout_hold_s=1.0),), disturbances=False)
    with pytest.raises(ScenarioError, match="touch_and_go is for squat and deadlift"):
        Scenario("h", "hip_thrust", (plan(rom_m=0.2),), disturbances=False)
    path = tmp_path / "tng.toml"
    path.write_text(
        'name = "tng"\nexercise = "squat"\n[[sets]]\nreps = 3\nload_kg = 80\n'
        "concentric_s = 0.8\neccentric_s = 1.0\nlockout_hold_s = 0\nbottom_pause_s = 0\n"
        "rom_m = 0.5\ntouch_and_go = true\n"
    )
    assert Scenario.load(path).sets[0].touch_and_go
    path.write_text(path.read_text().replace("touch_and_go = true", 'touch_and_go = "yes"'))
    with pytest.raises(ScenarioError, match=r"sets\[0\]\.touch_and_go must be bool"):
        Scenario.load(path)


def test_random_sets_mix_touch_and_go_with_paused_ones() -> None:
    # Without a share no draw is spent on the style: the old corpora come out the same.
    assert Scenario.random("squat", np.random.default_rng(2)) == Scenario.random(
        "squat", np.random.default_rng(2), touch_and_go=0.0
    )
    rng = np.random.default_rng(6)
    for exercise in ("squat", "deadlift"):
        plans = [
            p
            for _ in range(30)
            for p in Scenario.random(exercise, rng, sets=3, touch_and_go=0.4).sets  # type: ignore[arg-type]
        ]
        bouncing = [p for p in plans if p.touch_and_go]
        assert 0.25 < len(bouncing) / len(plans) < 0.55
        assert all(p.bottom_pause_s <= 0.1 for p in bouncing)
        assert any(p.bottom_pause_s > 0.1 for p in plans if not p.touch_and_go)
        if exercise == "squat":
            assert all(p.lockout_hold_s == 0.0 for p in bouncing)
    hips = Scenario.random("hip_thrust", rng, sets=4, touch_and_go=1.0)
    assert not any(p.touch_and_go for p in hips.sets)
    with pytest.raises(ScenarioError, match="touch_and_go = 2"):
        Scenario.random("squat", rng, touch_and_go=2)

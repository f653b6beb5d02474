"""The terminal views show what the records say: reps, sets, alerts, sensors, the tilt gauge."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.text import Text

from sensorhub.live import LiveView, PlainView, tilt_gauge


def rep(index: int, mcv: float, *, set_index: int = 1, tilt: float = 3.0) -> dict[str, Any]:
    return {
        "type": "rep",
        "athlete": "Ada",
        "exercise": "hip_thrust",
        "set_index": set_index,
        "rep_in_set": index,
        "mcv_mps": mcv,
        "peak_velocity_mps": mcv * 1.6,
        "rom_m": 0.241,
        "partial": False,
        "tilt_lockout_deg": tilt,
        "tilt_verdict": "ok" if tilt > -5 else "anterior_tilt",
    }


SENSOR = {
    "type": "sensor_status",
    "address": "C0:FF:EE:00:00:01",
    "role": "pelvis",
    "athlete": "Ada",
    "state": "streaming",
    "online": True,
    "battery_pct": 87,
    "sample_rate_hz": 199.6,
    "samples_lost": 12,
    "reconnects": 1,
}


def render(view: LiveView) -> str:
    console = Console(file=io.StringIO(), width=110, record=True, color_system=None)
    console.print(view)
    return console.export_text()


def test_live_view_shows_sensors_reps_loss_and_tilt() -> None:
    view = LiveView(title="test")
    view.on_sensor(SENSOR)
    view.on_record({"type": "tilt", "athlete": "Ada", "tilt_deg": -9.5})
    view.on_record({"type": "velocity", "athlete": "Ada", "velocity_mps": 0.61})
    view.on_record(rep(1, 0.80))
    view.on_record(rep(2, 0.60, tilt=-9.0))
    view.on_record(
        {"type": "alert", "athlete": "Ada", "message": "velocity loss 25 % (threshold 20 %)"}
    )
    text = render(view)
    assert "C0:FF:EE:00:00:01" in text
    assert "87 %" in text
    assert "200 Hz" in text
    assert "0.80" in text
    assert "0.60" in text
    assert "anterior_tilt" in text
    assert "velocity loss 25 %" in text  # the set's loss: 1 - 0.60 / 0.80
    assert "-9.5°" in text
    assert "+0.61 m/s" in text


def test_a_finished_set_starts_a_fresh_rep_list() -> None:
    view = LiveView()
    view.on_record(rep(1, 0.7))
    view.on_record(
        {
            "type": "set",
            "athlete": "Ada",
            "set_index": 1,
            "rep_count": 1,
            "best_mcv_mps": 0.7,
            "velocity_loss_pct": 0.0,
        }
    )
    text = render(view)
    assert "set 2 · 0 reps" in text
    assert "Ada set 1: 1 reps, best 0.70 m/s" in text


def test_tilt_gauge_marks_the_side_and_clips() -> None:
    assert tilt_gauge(None).plain.endswith("--.-°")
    left = tilt_gauge(-40.0).plain
    right = tilt_gauge(40.0).plain
    assert left.index("●") < right.index("●")
    assert "-40.0°" in left
    assert "+40.0°" in right


def dot_style(gauge: Text) -> str:
    (span,) = [s for s in gauge.spans if gauge.plain[s.start : s.end] == "●"]
    return str(span.style)


def test_tilt_gauge_fits_a_hip_thrust_and_judges_only_the_lockout() -> None:
    # Through every bottom and rest the pelvis is some 25° anterior: on the scale, not
    # pinned to its end, and not red (the gauge used to sit red at "anterior" all set).
    bottom, rest = tilt_gauge(-20.0), tilt_gauge(-26.0)
    assert 0 < rest.plain.index("●") < bottom.plain.index("●")
    for tilt in (-26.0, -8.0, 0.0, 6.0):
        assert "red" not in dot_style(tilt_gauge(tilt))
    # The lockout limit is marked between neutral and the anterior end.
    plain = tilt_gauge(0.0).plain
    assert rest.plain.index("●") < plain.index("╎") < plain.index("●")
    assert tilt_gauge(-20.0).plain.index("╎") == plain.index("╎")
    # The last rep's lockout carries the verdict and its colour.
    bad = tilt_gauge(-20.0, lockout_deg=-7.2, verdict="anterior_tilt")
    good = tilt_gauge(-20.0, lockout_deg=1.2, verdict="ok")
    assert "last lockout -7.2° anterior_tilt (limit -5°)" in bad.plain
    assert "last lockout +1.2° ok" in good.plain
    assert any("red" in str(s.style) for s in bad.spans)
    assert not any("red" in str(s.style) for s in good.spans)


def test_the_live_view_shows_the_last_judged_lockout() -> None:
    view = LiveView()
    view.on_record({"type": "tilt", "athlete": "Ada", "tilt_deg": -22.0})
    assert "last lockout" not in render(view)
    view.on_record(rep(1, 0.8, tilt=-6.5))
    view.on_record(rep(2, 0.7, tilt=2.0))
    assert "last lockout +2.0° ok" in render(view)


def test_plain_view_prints_one_line_per_event() -> None:
    out = io.StringIO()
    view = PlainView(out)
    view.on_sensor(SENSOR)
    view.on_sensor(SENSOR)  # unchanged: not printed again
    view.on_record({"type": "tilt", "athlete": "Ada", "tilt_deg": 1.0})  # streams are skipped
    view.on_record(rep(1, 0.75))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("sensor pelvis C0:FF:EE:00:00:01")
    assert "MCV 0.75 m/s" in lines[1]

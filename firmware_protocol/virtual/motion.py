"""True kinematics of the bar and the pelvis, built from a scenario; exact to machine precision.

Frames and units
    World: x from the bench (or rack side) towards the athlete's feet, y to the athlete's
    left, z up; gravity is (0, 0, -9.80665) m/s². SI units throughout: m, m/s, m/s², rad.
    Pelvis body frame (sensor on the sacrum): x anterior, y left (mediolateral), z superior.
    Bar body frame (sensor clipped to the shaft): x forward, y along the bar to the left,
    z up when the bar lies level. Orientation quaternions are (w, x, y, z) and rotate body
    vectors into the world frame; angular velocity is expressed in the body frame.

How the motion is made
    Every body has six channels (x, y, z, yaw, pitch, roll); orientation is
    ``Rz(yaw) Ry(pitch) Rx(roll)``. A channel is a constant plus smooth moves and windowed
    oscillations. A move over [t0, t0+T] follows the regularised incomplete beta function
    I_u(a+1, b+1), so its velocity is proportional to u^a (1-u)^b: zero velocity and zero
    acceleration at both ends, the peak at u = a/(a+b) (later than the middle for a > b, as
    in real concentric lifts). Velocity, acceleration and angular velocity are the exact
    analytic derivatives; nothing is differentiated numerically. Touch-and-go sets use an
    exponent of 1 where the bar turns round: the velocity passes through zero at a finite
    acceleration, without the rest a paused rep has.

The person
    A :class:`~firmware_protocol.virtual.physiology.Lifter` lays tremor and sway over
    every channel of what the person holds or wears (a gain follows who holds the bar:
    none while it lies on the floor or the hooks untouched) and rings the bar where its
    plates meet the floor or it meets the rack. Without one the holds are exactly still.

Pelvic tilt (the one convention the analysis must share)
    Tilt is the sagittal-plane rotation of the pelvis segment about its mediolateral axis,
    relative to the neutral calibration pose, in degrees, POSITIVE = POSTERIOR (tail tucked).
    Precisely: with q_n the neutral orientation and q(t) the current one, let
    z' = rotate(conj(q_n) * q(t), (0, 0, 1)) be the pelvis's superior axis seen in the neutral
    pelvis frame; then ``tilt = -degrees(atan2(z'_x, z'_z))``. It is a global segment angle:
    in a hip thrust it includes the rotation of the trunk with hip extension (the pelvis at
    the bottom sits tens of degrees "anterior" of the lockout) on top of the pelvis's own
    posterior or anterior tilt.

Calibration
    Every pelvis scenario opens with ``scenario.calibration_s`` seconds (3 s by default) in
    the neutral lockout bridge: shoulders on the bench, hips extended, trunk horizontal,
    pelvis neither tucked nor arched. The neutral orientation is the mean over the bridge:
    without a lifter the bridge is completely still and tilt exactly 0 there; a lifter sways
    about it by a fraction of a degree. In a
    barbell hip thrust without disturbances the bar already rests on the hips; with
    disturbances it lies on the floor in front and is rolled on afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from firmware_protocol.virtual._channels import Channel, CompiledChannel
from firmware_protocol.virtual.physiology import (
    GRIP_RAMP_S,
    GainProfile,
    Lifter,
    oscillations,
    ring,
)
from firmware_protocol.virtual.scenario import HIP_LEVER_M, Scenario, SetPlan
from firmware_protocol.virtual.truth import (
    DisturbanceTruth,
    GroundTruth,
    RepTiming,
    build_truth,
)

__all__ = [
    "GRAVITY",
    "Body",
    "BodyState",
    "Trajectory",
    "quat_conjugate",
    "quat_multiply",
    "quat_rotate",
]

Body = Literal["bar", "pelvis"]
FloatArray = NDArray[np.float64]
GRAVITY = 9.80665  # m/s², standard gravity

_CHANNELS = ("x", "y", "z", "yaw", "pitch", "roll")
PLATE_RADIUS_M = 0.225  # 450 mm bumper plates: the bar's height when the plates rest on the floor
_PELVIS_FLOOR_Z = 0.13  # sacrum height sitting on the floor, back against the bench
_PELVIS_STAND_Z = 0.95  # sacrum height standing
_PELVIS_RISE = 0.92  # sacrum rise per metre of bar rise in a hip thrust
_SQUAT_TOP_Z = 1.45  # bar on the upper back, standing
_RACK_X = 0.6  # squat rack hooks: this far in front of the lifting spot
_LIFTER_STREAM = 0x11F7  # second seed word of the lifter's random stream
# Bar vibration at a contact, as a share of the lifter's touch-and-go deadlift touchdown.
_CONTACT = {"bounce": 1.0, "set_down": 0.4, "hips_bottom": 0.2, "rack": 0.8, "unrack": 0.15}


@dataclass(frozen=True, slots=True)
class BodyState:
    """Kinematics of one body at n times; world frame, z up, SI units."""

    position: FloatArray  # (n, 3) m
    velocity: FloatArray  # (n, 3) m/s
    acceleration: FloatArray  # (n, 3) m/s², kinematic (gravity not included)
    orientation: FloatArray  # (n, 4) quaternion w, x, y, z: body frame -> world frame
    angular_velocity: FloatArray  # (n, 3) rad/s in the body frame


# --- quaternions (w, x, y, z), broadcasting over leading axes --------------------------------


def quat_multiply(p: FloatArray, q: FloatArray) -> FloatArray:
    """Hamilton product p ⊗ q of quaternion arrays shaped (..., 4)."""
    pw, px, py, pz = np.moveaxis(np.asarray(p, dtype=np.float64), -1, 0)
    qw, qx, qy, qz = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack(
        [
            pw * qw - px * qx - py * qy - pz * qz,
            pw * qx + px * qw + py * qz - pz * qy,
            pw * qy - px * qz + py * qw + pz * qx,
            pw * qz + px * qy - py * qx + pz * qw,
        ],
        axis=-1,
    )


def quat_conjugate(q: FloatArray) -> FloatArray:
    """Conjugate (the inverse, for unit quaternions) of quaternions shaped (..., 4)."""
    out: FloatArray = np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])
    return out


def quat_rotate(q: FloatArray, v: FloatArray) -> FloatArray:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4): q v q*."""
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def _euler_to_quat(yaw: FloatArray, pitch: FloatArray, roll: FloatArray) -> FloatArray:
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    return np.stack(
        [
            cr * cp * cy + sr * sp * sy,
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
        ],
        axis=-1,
    )


# --- the trajectory --------------------------------------------------------------------------


class Trajectory:
    """True motion of every sensor-carrying body over a scenario, with its ground truth.

    Deterministic given (scenario, seed, lifter). Outside [0, duration_s] every body rests
    in its start or end pose (a lifter's tremor and sway go on there).
    """

    scenario: Scenario
    seed: int
    lifter: Lifter | None
    duration_s: float
    bodies: tuple[Body, ...]
    lift_body: Body
    truth: GroundTruth
    neutral_orientation: FloatArray | None

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        channels: dict[Body, dict[str, Channel]],
        duration_s: float,
        lifter: Lifter | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.lifter = lifter
        self.duration_s = duration_s
        self.bodies = scenario.bodies
        self.lift_body = "bar" if "bar" in self.bodies else "pelvis"
        self._channels = {
            body: tuple(CompiledChannel(channels[body][c]) for c in _CHANNELS)
            for body in self.bodies
        }
        self.neutral_orientation = None
        if "pelvis" in self.bodies:
            # The mean pose over the bridge: a person holding it sways about it.
            q = self.state("pelvis", np.linspace(0.0, scenario.calibration_s, 301)).orientation
            mean = np.mean(q * np.sign(q @ q[0])[:, None], axis=0)
            self.neutral_orientation = mean / np.linalg.norm(mean)

    @classmethod
    def from_scenario(
        cls, scenario: Scenario, seed: int, *, lifter: Lifter | None = None
    ) -> Trajectory:
        """Choreograph the scenario with randomness drawn from ``seed`` and compute the truth.

        ``lifter`` adds a person's tremor and sway to every hold and the bar's ringing at
        floor and rack contacts (:mod:`firmware_protocol.virtual.physiology`); without
        one (or with a still one) the holds are exact. The lifter's draws come from a
        stream of their own, so the choreography is the same with and without.
        """
        rng = np.random.default_rng(seed)
        chor = _Choreographer(scenario, rng)
        chor.run()
        if lifter is not None and not lifter.still:
            chor.unsteady(lifter, np.random.default_rng([seed, _LIFTER_STREAM]))
        traj = cls(scenario, seed, chor.channels, chor.duration_s, lifter)
        traj.truth = build_truth(
            scenario,
            chor.reps,
            chor.disturbances,
            calibration=(0.0, scenario.calibration_s) if "pelvis" in traj.bodies else None,
            lift=traj._lift,
            tilt=traj.tilt_deg if "pelvis" in traj.bodies else None,
        )
        return traj

    def state(self, body: Body, t: FloatArray) -> BodyState:
        """Exact kinematics of ``body`` at times ``t`` (s since scenario start, any order)."""
        if body not in self._channels:
            raise ValueError(f"body {body!r} carries no sensor here; bodies: {self.bodies}")
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        order = None
        if t.size > 1 and np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            t = t[order]
        vals = [ch.eval(t) for ch in self._channels[body]]
        pos = np.stack([vals[i][0] for i in range(3)], axis=-1)
        vel = np.stack([vals[i][1] for i in range(3)], axis=-1)
        acc = np.stack([vals[i][2] for i in range(3)], axis=-1)
        (yaw, dyaw, _), (pitch, dpitch, _), (roll, droll, _) = vals[3], vals[4], vals[5]
        quat = _euler_to_quat(yaw, pitch, roll)
        sp, cp = np.sin(pitch), np.cos(pitch)
        sr, cr = np.sin(roll), np.cos(roll)
        omega = np.stack(
            [droll - dyaw * sp, dpitch * cr + dyaw * sr * cp, -dpitch * sr + dyaw * cr * cp],
            axis=-1,
        )
        if order is not None:
            inv = np.empty_like(order)
            inv[order] = np.arange(order.size)
            pos, vel, acc, quat, omega = (x[inv] for x in (pos, vel, acc, quat, omega))
        return BodyState(pos, vel, acc, quat, omega)

    def tilt_deg(self, t: FloatArray) -> FloatArray:
        """True pelvic tilt at times ``t``, degrees, positive = posterior (module docstring)."""
        if self.neutral_orientation is None:
            raise ValueError("this scenario has no pelvis sensor, so it has no pelvic tilt")
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        order = None
        if t.size > 1 and np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            t = t[order]
        yaw, pitch, roll = (ch.eval(t)[0] for ch in self._channels["pelvis"][3:])
        rel = quat_multiply(
            quat_conjugate(self.neutral_orientation), _euler_to_quat(yaw, pitch, roll)
        )
        z = quat_rotate(rel, np.array([0.0, 0.0, 1.0]))
        tilt = np.asarray(-np.degrees(np.arctan2(z[:, 0], z[:, 2])), dtype=np.float64)
        if order is not None:
            tilt[order] = tilt.copy()
        return tilt

    def _lift(self, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Height, vertical velocity and vertical acceleration of the lift body (sorted t)."""
        return self._channels[self.lift_body][2].eval(np.asarray(t, dtype=np.float64))


# --- choreography: scenario plan -> channel moves --------------------------------------------

# Velocity-profile exponents (a, b) of concentric and eccentric moves: v ∝ u^a (1-u)^b.
_SHAPES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "hip_thrust": ((1.6, 1.4), (1.5, 1.5)),
    "bodyweight_hip_thrust": ((1.6, 1.4), (1.5, 1.5)),
    "squat": ((1.9, 1.3), (1.4, 1.8)),  # peak concentric velocity at ~60 % of the ascent
    "deadlift": ((1.8, 1.4), (1.5, 1.6)),
}


def _rad(deg: float) -> float:
    return math.radians(deg)


@dataclass(frozen=True, slots=True)
class _Rep:
    """One rep's schedule: phase starts and durations, travel and velocity-profile shapes."""

    c0: float  # concentric start
    tc: float  # concentric duration
    e0: float  # eccentric start
    te: float  # eccentric duration
    rom: float  # travel, m
    frac: float  # fraction of the set's ROM planned (1 for a full rep)
    cs: tuple[float, float]  # concentric shape
    es: tuple[float, float]  # eccentric shape


class _Choreographer:
    """Schedules every move of a scenario and records rep timings and disturbances."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self.s = scenario
        self.rng = rng
        self.ex = scenario.exercise
        self.thrust = self.ex in ("hip_thrust", "bodyweight_hip_thrust")
        self.dist = scenario.disturbances
        self.rise = 0.92 if self.ex == "hip_thrust" else 1.0
        self.reps: list[RepTiming] = []
        self.disturbances: list[DisturbanceTruth] = []
        self.duration_s = 0.0
        self.trunk = 0.0  # trunk rotation from horizontal, degrees, posterior-positive like tilt
        self.pelvic = 0.0  # the pelvis's own tilt on the trunk, degrees, posterior-positive
        self.bar_on_hips = self.ex == "hip_thrust" and not self.dist
        # Who holds what, for the lifter's tremor and sway: a gain per body from 0 (lying
        # on the floor or the hooks, untouched) to 1 (in the hands, on the back or hips),
        # changed by (time, level) events; and the moments the bar meets floor or hooks.
        held = self.bar_on_hips or (self.ex == "squat" and not self.dist)
        self.grip0: dict[Body, float] = {"pelvis": 1.0, "bar": 1.0 if held else 0.0}
        self.grips: dict[Body, list[tuple[float, float]]] = {"pelvis": [], "bar": []}
        self.contacts: list[tuple[float, str]] = []
        first = scenario.sets[0]
        self.channels: dict[Body, dict[str, Channel]] = {}
        if "pelvis" in scenario.bodies:
            rise = self.rise * first.rom_m
            self._make("pelvis", 0.0, 0.0, _PELVIS_FLOOR_Z + rise, 0.0, -math.pi / 2, 0.0)
        if self.ex == "hip_thrust":
            if self.bar_on_hips:
                self._make("bar", 0.10, 0.0, PLATE_RADIUS_M + first.rom_m, 0.0, 0.0, 0.0)
            else:
                self._make("bar", 1.0, 0.0, PLATE_RADIUS_M, 0.0, 0.0, 0.0)
        elif self.ex == "squat":
            if self.dist:
                self._make("bar", _RACK_X, 0.0, _SQUAT_TOP_Z - 0.05, 0.0, 0.0, 0.0)
            else:
                self._make("bar", 0.0, 0.0, _SQUAT_TOP_Z, 0.0, 0.0, 0.0)
        elif self.ex == "deadlift":
            self._make("bar", 0.08 if self.dist else 0.0, 0.0, PLATE_RADIUS_M, 0.0, 0.0, 0.0)

    def _make(self, body: Body, *base: float) -> None:
        self.channels[body] = {name: Channel(v) for name, v in zip(_CHANNELS, base, strict=True)}

    def c(self, body: Body, name: str) -> Channel:
        return self.channels[body][name]

    def n(self, sd: float, clip: float = 2.5) -> float:
        """A clipped normal draw: realistic spread without absurd outliers."""
        return float(np.clip(self.rng.normal(0.0, sd), -clip * sd, clip * sd)) if sd > 0 else 0.0

    def note(self, kind: str, body: Body, t0: float, t1: float) -> None:
        self.disturbances.append(DisturbanceTruth(kind, body, t0, t1))

    def grip(self, body: Body, t: float, level: float) -> None:
        self.grips[body].append((t, level))

    # -- the person: tremor, sway, the bar's ringing ----------------------------------------

    def unsteady(self, lifter: Lifter, rng: np.random.Generator) -> None:
        """Lay the lifter's tremor and sway over every body, as held, and ring the bar."""
        for body, channels in self.channels.items():
            # The person was there before the recording and stays after it.
            gain = GainProfile(self.grip0[body], self.grips[body])
            for name, oscillation in oscillations(lifter, body, rng).items():
                channels[name].layers.append((oscillation, gain))
        if "bar" not in self.channels:
            return
        for t0, kind in sorted(self.contacts):
            # One contact is harder than the next.
            peak = _CONTACT[kind] * lifter.touchdown_mps2 * float(rng.uniform(0.6, 1.2))
            for name, rings in ring(t0, peak, rng).items():
                self.channels["bar"][name].rings.extend(rings)

    # -- timeline --------------------------------------------------------------------------

    def run(self) -> None:
        t = self.s.calibration_s if self.thrust else 0.0
        for i, plan in enumerate(self.s.sets):
            first_rep = t + plan.rest_before_s
            self._rest(i, t, first_rep)
            t = self._play_set(i, plan, first_rep)
        if self.ex == "squat" and self.dist:
            t = self._rerack(t + 0.5)
        self.duration_s = t + self.s.lead_out_s

    def _rest(self, i: int, ta: float, tb: float) -> None:
        plan = self.s.sets[i]
        t = ta
        if self.thrust:
            if i == 0:
                t = self._settle(ta + 0.2, min(1.2, 0.35 * (tb - ta)))
            if self.dist:
                t = self._thrust_break(t, tb - 1.0, plan)
            self._thrust_bottom_pose(max(t, tb - 1.8), min(0.8, tb - t), plan)
        elif self.ex == "squat" and self.dist:
            if i > 0 and tb - ta >= 12.0:
                t = self._rerack(ta + 0.5)
            if i == 0 or tb - ta >= 12.0:
                if tb - 4.2 - t >= 3.0:
                    self._fidget("bar", t + 0.5, min(2.0, tb - 4.7 - t))
                self._unrack(max(t, tb - 4.2), min(1.0, (tb - t) / 4.2))
        elif self.ex == "deadlift" and self.dist:
            if tb - ta >= 5.0:
                self._fidget("bar", ta + 1.0, min(2.0, tb - ta - 4.0))
            self._roll_bar(tb - 1.8, 0.8, -self.c("bar", "x").level, "setup")

    def _play_set(self, i: int, plan: SetPlan, t: float) -> float:
        pauses = {p.after_rep: p.pause_s for p in plan.rest_pauses}
        con_shape, ecc_shape = _SHAPES[self.ex]
        end = t
        rested = True  # the rep before was a while ago (or there was none)
        for k in range(1, plan.reps + 1):
            prog = (k - 1) / (plan.reps - 1) if plan.reps > 1 else 0.0
            jit = plan.rep_jitter
            partial = k in plan.partial_reps
            frac = plan.partial_fraction if partial else 1.0
            mcv = plan.rom_m / plan.concentric_s * (1 - plan.velocity_loss * prog**1.2)
            mcv *= (1 + self.n(jit)) * (0.9 if partial else 1.0)
            rom = plan.rom_m * (1 + self.n(jit / 2)) * frac
            tc = max(0.12, rom / mcv)
            te = plan.eccentric_s * (1 + self.n(jit)) * (0.6 + 0.4 * frac)
            hold = plan.lockout_hold_s * (1 + self.n(jit))
            pause = plan.bottom_pause_s * (1 + self.n(jit))
            # Fatigue moves the velocity peak later; fast reps end with a braking phase
            # (deceleration beyond g) that a slow grind does not have.
            brake = 0.5 * max(0.0, rom / tc - 0.4)
            cs = (con_shape[0] + 0.4 * prog, max(1.2, con_shape[1] - brake))
            es = ecc_shape
            # Touch-and-go: the bar turns round at speed, its velocity passing through zero
            # with the acceleration at its peak (exponent 1: v grows linearly from zero).
            bounce_out = plan.touch_and_go and k < plan.reps and k not in pauses
            if plan.touch_and_go and self.ex == "squat":
                cs, es = (1.0 + 0.4 * prog, 1.0), (1.0, 1.0)
            elif plan.touch_and_go:
                cs = (1.0 if not rested else cs[0], cs[1])
                es = (es[0], 1.0) if bounce_out else es
            if self.ex == "squat":
                e0, e1 = t, t + te
                c0, c1 = e1 + pause, e1 + pause + tc
                l0, l1 = c1, c1 + hold
                start, end, gap = e0, l1, pauses.get(k, 0.0)
                self._squat_rep(_Rep(c0, tc, e0, te, rom, frac, cs, es))
            else:
                c0, c1 = t, t + tc
                l0, l1 = c1, c1 + hold
                e0, e1 = l1, l1 + te
                start, end, gap = c0, e1, pauses.get(k, pause)
                rep = _Rep(c0, tc, e0, te, rom, frac, cs, es)
                if self.thrust:
                    self._thrust_rep(plan, k, rep)
                else:
                    self._deadlift_rep(rep)
                self._floor_contact(rep, rested, gap if k < plan.reps else None, bounce_out)
            self.reps.append(RepTiming(i + 1, k, start, end, e0, e1, c0, c1, l0, l1, partial))
            if k in pauses:
                self._rest_pause(end, end + gap)
            rested = gap >= 3.0
            t = end + gap
        return end

    def _floor_contact(self, rep: _Rep, rested: bool, gap: float | None, bounce: bool) -> None:
        """Who holds the bar around a rep from the floor, and how its plates land."""
        c0, e1 = rep.c0, rep.e0 + rep.te
        if self.ex == "hip_thrust" and self.bar_on_hips:
            self.contacts.append((e1, "hips_bottom"))
        if self.ex != "deadlift":
            return
        set_up = any(c0 - 2.5 <= t <= c0 for t, _ in self.grips["bar"])  # rolled it there
        if rested and not set_up:  # hands on the bar, taking the slack out, then the pull
            self.grip("bar", c0 - 2.0, 0.25)
        self.grip("bar", c0 - 0.35, 1.0)
        self.contacts.append((e1, "bounce" if bounce else "set_down"))
        if gap is None or gap >= 3.0:
            self.grip("bar", e1 + 0.3, 0.0)  # lets go
        elif gap >= 0.8:
            self.grip("bar", e1 + 0.1, 0.25)  # hands stay on the bar on the floor

    def _rest_pause(self, ta: float, tb: float) -> None:
        if not self.dist:
            return
        if self.ex == "squat" and tb - ta >= 9.0:
            self._rerack(ta + 0.3)
            self._unrack(tb - 4.2, 1.0)
        elif self.thrust:
            self._fidget("pelvis", ta + 0.5 * (tb - ta) - 1.0, 2.0)

    # -- reps --------------------------------------------------------------------------------

    def _thrust_rep(self, plan: SetPlan, k: int, rep: _Rep) -> None:
        c0, tc, e0, te, rom, frac, cs, es = (
            rep.c0,
            rep.tc,
            rep.e0,
            rep.te,
            rep.rom,
            rep.frac,
            rep.cs,
            rep.es,
        )
        trunk_top = math.degrees(math.asin(np.clip((rom - plan.rom_m) / HIP_LEVER_M, -1, 1)))
        pelvic_bot = -plan.bottom_anterior_deg
        top = plan.posterior_hold_deg + self.n(0.4)
        if plan.tilt == "anterior_tip" and k >= plan.anterior_tip_from_rep:
            top -= plan.anterior_tip_deg + self.n(0.4)
        top = pelvic_bot + frac * (top - pelvic_bot)
        d_trunk = trunk_top - self.trunk
        d_pel = top - self.pelvic
        dx = HIP_LEVER_M * (math.cos(_rad(trunk_top)) - math.cos(_rad(self.trunk)))
        rise = self.rise * rom
        pel = self.channels["pelvis"]
        pel["z"].move(c0, tc, rise, cs)
        pel["x"].move(c0, tc, dx, cs)
        pel["pitch"].move(c0, tc, -_rad(d_trunk), cs)
        pel["pitch"].move(c0 + 0.4 * tc, 0.6 * tc, -_rad(d_pel))
        pel["roll"].move_to(c0, tc, _rad(self.n(1.2)))
        pel["yaw"].move_to(c0, tc, _rad(self.n(0.8)))
        pel["z"].move(e0, te, -rise, es)
        pel["x"].move(e0, te, -dx, es)
        pel["pitch"].move(e0, te, _rad(d_trunk), es)
        pel["pitch"].move(e0, 0.6 * te, _rad(top - pelvic_bot))
        pel["roll"].move_to(e0, te, _rad(self.n(0.4)))
        pel["yaw"].move_to(e0, te, _rad(self.n(0.4)))
        self.pelvic = pelvic_bot
        if self.ex == "hip_thrust":
            bar = self.channels["bar"]
            bar["z"].move(c0, tc, rom, cs)
            bar["x"].move(c0, tc, dx, cs)
            bar["pitch"].move(c0, tc, -0.25 * _rad(d_trunk), cs)
            bar["roll"].move_to(c0, tc, _rad(self.n(1.5)))
            bar["yaw"].move_to(c0, tc, _rad(self.n(1.0)))
            bar["z"].move(e0, te, -rom, es)
            bar["x"].move(e0, te, -dx, es)
            bar["pitch"].move(e0, te, 0.25 * _rad(d_trunk), es)
            bar["roll"].move_to(e0, te, _rad(self.n(0.5)))
            bar["yaw"].move_to(e0, te, _rad(self.n(0.5)))

    def _squat_rep(self, rep: _Rep) -> None:
        e0, te, c0, tc, rom, cs, es = rep.e0, rep.te, rep.c0, rep.tc, rep.rom, rep.cs, rep.es
        bar = self.channels["bar"]
        lean = _rad(12.0 + 30.0 * (rom - 0.45) + self.n(1.0))  # the bar turns with the torso
        dx = -0.02 + self.n(0.008)
        bar["z"].move(e0, te, -rom, es)
        bar["x"].move(e0, te, dx, es)
        bar["pitch"].move(e0, te, lean, es)
        bar["roll"].move_to(e0, te, _rad(self.n(1.5)))
        bar["yaw"].move_to(e0, te, _rad(self.n(1.0)))
        bar["z"].move(c0, tc, rom, cs)
        bar["x"].move(c0, tc, -dx + self.n(0.003), cs)
        bar["pitch"].move(c0, tc, -lean + _rad(self.n(0.5)), cs)
        bar["roll"].move_to(c0, tc, _rad(self.n(0.5)))
        bar["yaw"].move_to(c0, tc, _rad(self.n(0.5)))

    def _deadlift_rep(self, rep: _Rep) -> None:
        c0, tc, e0, te, rom, cs, es = rep.c0, rep.tc, rep.e0, rep.te, rep.rom, rep.cs, rep.es
        bar = self.channels["bar"]
        turn = _rad(self.n(2.0))  # the bar turns a little in the hands
        dx = -0.03 + self.n(0.005)  # the bar path hugs the shins and thighs
        bar["z"].move(c0, tc, rom, cs)
        bar["x"].move(c0, tc, dx, cs)
        bar["pitch"].move(c0, tc, turn, cs)
        bar["roll"].move_to(c0, tc, _rad(self.n(1.5)))
        bar["yaw"].move_to(c0, tc, _rad(self.n(1.0)))
        bar["z"].move(e0, te, -rom, es)
        bar["x"].move(e0, te, -dx + self.n(0.004), es)
        bar["pitch"].move(e0, te, -turn + _rad(self.n(0.5)), es)
        bar["roll"].move_to(e0, te, _rad(self.n(0.3)))
        bar["yaw"].move_to(e0, te, _rad(self.n(0.3)))

    # -- hip thrust set-up and breaks --------------------------------------------------------

    def _thrust_bottom_pose(
        self, t0: float, dur: float, plan: SetPlan, kind: str = "settle", *, force: bool = False
    ) -> None:
        """Move (if needed) into the bottom position for ``plan``: hips on the floor."""
        trunk = -math.degrees(math.asin(plan.rom_m / HIP_LEVER_M))
        pelvic = -plan.bottom_anterior_deg
        x = -HIP_LEVER_M * (1 - math.cos(_rad(trunk)))
        pel = self.channels["pelvis"]
        pitch = -math.pi / 2 - _rad(trunk + pelvic)
        off = max(abs(pel["x"].level - x), abs(pel["z"].level - _PELVIS_FLOOR_Z))
        off = max(off, abs(pel["pitch"].level - pitch), abs(pel["roll"].level))
        if not force and off < 1e-9:
            return
        dur = max(dur, 0.3)
        pel["x"].move_to(t0, dur, x)
        pel["z"].move_to(t0, dur, _PELVIS_FLOOR_Z)
        pel["pitch"].move_to(t0, dur, pitch)
        for name in ("roll", "yaw"):
            pel[name].move_to(t0, dur, 0.0)
        if self.bar_on_hips:
            self.c("bar", "x").move_to(t0, dur, x + 0.10)
            self.c("bar", "z").move_to(t0, dur, PLATE_RADIUS_M)
        self.trunk, self.pelvic = trunk, pelvic
        self.note(kind, "pelvis", t0, t0 + dur)

    def _settle(self, t0: float, dur: float) -> float:
        """From the calibration bridge down to the bottom position of the first set."""
        self._thrust_bottom_pose(t0, dur, self.s.sets[0])
        if self.bar_on_hips:
            self.note("settle", "bar", t0, t0 + max(dur, 0.3))
        return t0 + max(dur, 0.3) + 0.3

    def _thrust_break(self, ta: float, tb: float, plan: SetPlan) -> float:
        """Between sets: roll the bar off, stand, walk, sit down, roll the bar back on."""
        bar = self.ex == "hip_thrust"
        fixed = 0.5 + 1.8 + 0.5 + 0.5 + 1.8 + 0.5 + (6.0 if bar else 0.0)
        t = ta + 0.5
        if tb - ta >= fixed + 4.0:
            walk = min(14.0, tb - ta - fixed)
            if bar and self.bar_on_hips:
                t = self._roll_bar(t, 2.5, 0.9, "setup") + 0.5
            t = self._stand(t) + 0.5
            t = self._walk(t, walk) + 0.5
            t = self._sit(t, plan) + 0.5
        elif tb - ta >= 3.5 + (3.0 if bar and not self.bar_on_hips else 0.0):
            self._fidget("pelvis", t, 2.0)
            t += 2.5
        if bar and not self.bar_on_hips:
            # Roll it to just over the hips of the coming set's bottom position.
            x_hips = 0.10 - HIP_LEVER_M * (1 - math.sqrt(1 - (plan.rom_m / HIP_LEVER_M) ** 2))
            dur = min(2.5, max(0.6, tb - t - 0.2))
            t = self._roll_bar(t, dur, x_hips - self.c("bar", "x").level, "setup")
        return t

    def _roll_bar(self, t0: float, dur: float, dx: float, kind: str) -> float:
        """Roll the loaded bar along the floor on its plates (no slipping)."""
        if abs(dx) < 1e-12:
            return t0
        self.c("bar", "x").move(t0, dur, dx)
        self.c("bar", "pitch").move(t0, dur, dx / PLATE_RADIUS_M)
        self.grip("bar", t0 - GRIP_RAMP_S, 1.0)  # pushed by hand
        if self.ex == "hip_thrust":
            self.bar_on_hips = dx < 0
            if not self.bar_on_hips:
                self.grip("bar", t0 + dur, 0.0)
        else:
            self.grip("bar", t0 + dur, 0.25)  # set up for the pull: hands stay on
        self.note(kind, "bar", t0, t0 + dur)
        return t0 + dur

    def _stand(self, t0: float) -> float:
        pel = self.channels["pelvis"]
        pel["z"].move_to(t0, 1.8, _PELVIS_STAND_Z, (1.6, 2.0))
        pel["x"].move(t0, 1.8, 0.35)
        pel["pitch"].move_to(t0, 1.8, 0.0)
        self.note("stand_up", "pelvis", t0, t0 + 1.8)
        return t0 + 1.8

    def _sit(self, t0: float, plan: SetPlan) -> float:
        self._thrust_bottom_pose(t0, 1.8, plan, "sit_down", force=True)
        return t0 + 1.8

    def _walk(self, t0: float, dur: float) -> float:
        """Walk to the plates and back: two legs, turns, step bounces at 1.6-2 Hz."""
        pel = self.channels["pelvis"]
        leg = (dur - 2.6) / 2
        f = float(self.rng.uniform(1.6, 2.0))
        d = float(self.rng.uniform(0.8, 1.1)) * leg * 0.9
        pel["yaw"].move(t0, 0.8, math.pi / 2)
        pel["y"].move(t0 + 0.8, leg, d, (1.2, 1.2))
        pel["yaw"].move(t0 + 0.8 + leg, 1.0, -math.pi)
        pel["y"].move(t0 + 1.8 + leg, leg, -d, (1.2, 1.2))
        pel["yaw"].move(t0 + 1.8 + 2 * leg, 0.8, math.pi / 2)
        for start in (t0 + 0.8, t0 + 1.8 + leg):
            pel["z"].wave(start, leg, float(self.rng.uniform(0.02, 0.03)), f)
            pel["roll"].wave(start, leg, _rad(float(self.rng.uniform(2.0, 4.0))), f / 2)
            pel["pitch"].wave(start, leg, _rad(float(self.rng.uniform(1.0, 2.5))), f, 0.7)
            pel["yaw"].wave(start, leg, _rad(float(self.rng.uniform(2.0, 4.0))), f / 2, 1.3)
        self.note("walk", "pelvis", t0, t0 + dur)
        return t0 + dur

    def _fidget(self, body: Body, t0: float, dur: float) -> None:
        """Shifting on the floor (pelvis, with the bar on the hips) or a knocked bar."""
        if dur <= 0.3:
            return
        ch = self.channels[body]
        f = float(self.rng.uniform(0.8, 1.6)) if body == "pelvis" else float(self.rng.uniform(2, 4))
        z_amp = 0.008 if body == "pelvis" else 0.002
        ph = float(self.rng.uniform(0, 2 * math.pi))
        ch["z"].wave(t0, dur, z_amp * float(self.rng.uniform(0.5, 1.0)), f, ph)
        ch["pitch"].wave(t0, dur, _rad(float(self.rng.uniform(1.0, 3.0))), f, ph + 0.5)
        ch["roll"].wave(t0, dur, _rad(float(self.rng.uniform(0.5, 2.0))), f * 0.7, ph + 1.0)
        ch["yaw"].wave(t0, dur, _rad(float(self.rng.uniform(0.5, 2.0))), f * 0.6, ph + 2.0)
        self.note("fidget", body, t0, t0 + dur)
        if body == "pelvis" and self.bar_on_hips:
            self.c("bar", "z").wave(t0, dur, 0.8 * z_amp, f, ph)
            self.c("bar", "roll").wave(t0, dur, _rad(1.0), f * 0.7, ph + 1.0)
            self.note("fidget", "bar", t0, t0 + dur)

    # -- squat rack ----------------------------------------------------------------------------

    def _unrack(self, t0: float, scale: float) -> float:
        """Lift the bar off the hooks and walk it back to the lifting spot."""
        bar = self.channels["bar"]
        lift, walk = 0.7 * scale, 2.5 * scale
        self.grip("bar", t0 - GRIP_RAMP_S, 1.0)
        self.contacts.append((t0 + 0.3 * lift, "unrack"))
        bar["z"].move(t0, lift, 0.05)
        bar["x"].move(t0 + lift, walk, -_RACK_X, (1.2, 1.2))
        bar["z"].wave(t0 + lift, walk, 0.01, 1.8)
        bar["roll"].wave(t0 + lift, walk, _rad(1.0), 0.9)
        self.note("unrack", "bar", t0, t0 + lift + walk)
        return t0 + lift + walk

    def _rerack(self, t0: float) -> float:
        """Walk the bar forward into the rack, set it on the hooks, let go."""
        bar = self.channels["bar"]
        bar["x"].move(t0, 2.5, _RACK_X, (1.2, 1.2))
        bar["z"].wave(t0, 2.5, 0.01, 1.8)
        bar["z"].move(t0 + 2.5, 0.6, -0.05)
        bar["pitch"].wave(t0 + 3.1, 0.4, _rad(2.0), 3.0)
        self.contacts.append((t0 + 3.0, "rack"))  # the bar lands on the hooks
        self.grip("bar", t0 + 3.2, 0.0)
        self.note("rerack", "bar", t0, t0 + 3.5)
        return t0 + 3.5

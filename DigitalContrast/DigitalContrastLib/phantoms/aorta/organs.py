"""The aorta patient's abdominal organs: liver with its left lobe, gallbladder, spleen, stomach, kidneys, bladder.

Each is an ellipsoid (the spleen rotated about z) placed from the diaphragmatic domes or the renal
level, clipped to the cavity below the diaphragm; the stomach holds an air-fluid level. Kidneys are
tilted ellipsoids beside the psoas, the right one lower (liver), with cortex, pyramids separated by
columns of cortex, and a sinus of fat round a small pelvis opening at the hilum.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..canvas import Canvas, uniform
from .body import BodyOnGrid, below_diaphragm
from .layout import FINE_Z, AortaLayout, Kidney, Levels, Organs, Spine


def _sample_kidney(rng: np.random.Generator, side: int, z_renal: float, spine: Spine) -> Kidney:
    """A tilted kidney beside the psoas (``side`` +1 left, -1 right; the right one lower)."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    kc = np.array([side * u(68, 80), float(np.interp(z_renal, FINE_Z, spine.y_line)) + u(5, 18),
                   z_renal + (u(0, 10) if side > 0 else -u(8, 20))])
    axis_u = np.array([-side * u(0.15, 0.3), u(0.1, 0.3), 1.0])
    axis_u /= np.linalg.norm(axis_u)
    hilum = np.array([-side * 1.0, -u(0.6, 1.0), 0.0])
    hilum -= (hilum @ axis_u) * axis_u
    hilum /= np.linalg.norm(hilum)
    axis_w = np.cross(axis_u, hilum)
    radii = np.array([u(50, 60), u(26, 31), u(20, 25)])  # along u (long), hilum, w
    return Kidney(center=kc, axes=(axis_u, hilum, axis_w), radii=radii)


def sample_organs(rng: np.random.Generator, levels: Levels, spine: Spine) -> Organs:
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    z_dome_right, z_dome_left = levels.z_dome_right, levels.z_dome_left
    liver_c = (u(-75, -60), u(-15, 5), z_dome_right - u(55, 70))
    liver_r = (u(95, 110), u(100, 115), u(115, 135))
    left_lobe_c = (u(5, 30), u(-70, -50), z_dome_right - u(35, 50))
    left_lobe_r = (u(55, 75), u(35, 45), u(45, 60))
    gb_c = (liver_c[0] + u(15, 30), u(-65, -45), liver_c[2] - liver_r[2] * u(0.55, 0.7))
    gb_r = (u(13, 18), u(13, 18), u(30, 40))
    ang = math.radians(u(20, 40))
    rot_spleen = np.array([[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1]])
    spleen_c = (u(80, 95), u(35, 55), z_dome_left - u(60, 80))
    spleen_r = (u(20, 26), u(50, 62), u(50, 65))
    stomach_c = (u(35, 55), u(-55, -35), z_dome_left - u(50, 70))
    stomach_r = (u(40, 50), u(32, 42), u(45, 60))
    gas_level = stomach_c[1] - stomach_r[1] * u(0.2, 0.6)
    t_cortex = u(7, 10)
    n_pyramids = int(rng.integers(7, 10))
    kidneys = {name: _sample_kidney(rng, side, levels.z_renal, spine) for side, name in ((1, "left"), (-1, "right"))}
    bladder_c = (u(-8, 8), u(-50, -30), levels.z_bif - u(150, 175))
    bladder_r = (u(35, 50), u(28, 38), u(30, 45))
    return Organs(liver_center=liver_c, liver_radii=liver_r, left_lobe_center=left_lobe_c, left_lobe_radii=left_lobe_r,
                  gallbladder_center=gb_c, gallbladder_radii=gb_r, spleen_angle=ang, spleen_rotation=rot_spleen,
                  spleen_center=spleen_c, spleen_radii=spleen_r, stomach_center=stomach_c, stomach_radii=stomach_r,
                  gas_level_y=gas_level, kidneys=kidneys, cortex=t_cortex, pyramids=n_pyramids,
                  bladder_center=bladder_c, bladder_radii=bladder_r)


def paint_abdominal_organs(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    """Liver, gallbladder, spleen, stomach with its gas, kidneys and bladder, in that order."""
    o = layout.organs
    under_dome = partial(below_diaphragm, layout.levels, body)
    canvas.ellipsoid(o.liver_center, o.liver_radii, "liver", clip=under_dome)
    canvas.ellipsoid(o.left_lobe_center, o.left_lobe_radii, "liver", clip=under_dome)
    canvas.ellipsoid(o.gallbladder_center, o.gallbladder_radii, "fluid", clip=body.in_cavity)
    canvas.ellipsoid(o.spleen_center, o.spleen_radii, "spleen", rotation=o.spleen_rotation, clip=under_dome)
    canvas.ellipsoid(o.stomach_center, o.stomach_radii, "bowel", clip=under_dome, over=("fat", "liver"))
    canvas.ellipsoid(o.stomach_center, tuple(r - 4 for r in o.stomach_radii), "bowel_gas",
                     clip=lambda b: under_dome(b) & (b.Y < o.gas_level_y), over=("bowel",))
    for kidney in o.kidneys.values():
        _paint_kidney(canvas, kidney.center, kidney.axes, kidney.radii, o.cortex, o.pyramids)
    canvas.ellipsoid(o.bladder_center, o.bladder_radii, "fluid", clip=body.in_cavity)


def _paint_kidney(canvas: Canvas, center: np.ndarray, axes, radii: np.ndarray, t_cortex: float,
                  n_pyramids: int) -> None:
    """One kidney: an ellipsoid (``axes`` = long axis, hilum direction, third axis; ``radii`` mm)
    with cortex, pyramids separated by columns of cortex, and a sinus of fat round a small pelvis."""
    reach = float(radii.max())
    box = canvas.grid.box(center - reach, center + reach)
    if box is None:
        return
    dx, dy, dz = box.X - center[0], box.Y - center[1], box.Z - center[2]
    pu, ph, pw = ((dx * a[0] + dy * a[1] + dz * a[2]) / r for a, r in zip(axes, radii))
    rho = np.sqrt(pu * pu + ph * ph + pw * pw)
    kidney = rho <= 1.0
    # renal sinus: an inner ellipsoid shifted toward the hilum, opening through a notch
    sinus_q = (pu / 0.6) ** 2 + ((ph - 0.45) / 0.5) ** 2 + (pw / 0.42) ** 2
    notch = (ph > 0.6) & (np.abs(pu) < 0.3) & (np.abs(pw) < 0.4)
    sinus = kidney & ((sinus_q <= 1.0) | notch)
    canvas.paint(box, kidney & ~notch, "kidney_cortex")
    pyramid = np.cos(n_pyramids * np.arctan2(pu, pw)) > -0.25
    core = 1.0 - t_cortex / float(radii[1:].mean())
    canvas.paint(box, kidney & ~sinus & (rho < core) & pyramid, "kidney_medulla")
    canvas.paint(box, sinus, "fat")
    pelvis = (pu / 0.3) ** 2 + ((ph - 0.55) / 0.3) ** 2 + (pw / 0.22) ** 2 <= 1
    canvas.paint(box, pelvis & sinus, "fluid")

"""The aorta IFU's phantom patient: CT of the trunk from the aortic arch to the hips, with the aorta.

Drawn in millimetres in the patient's LPS frame (midline x = 0; the grid is re-centred on the
body's anteroposterior middle), top to bottom:
levels along the spine, body outline with skin, subcutaneous fat and abdominal wall, the
spine (lumbar and thoracic bodies, discs, arches, sacrum), psoas, quadratus, erector spinae, iliac wings with iliacus
and gluteal muscles, hip joints, diaphragm and lung bases, liver, gallbladder, spleen, stomach,
kidneys, bladder, ribs, then the vessels: the aorta along a curving centre line with a radius
profile, an optional fusiform infrarenal aneurysm (probability ``ANEURYSM_PROBABILITY``) with an
eccentric crescent of thrombus and calcified plaques, iliac arteries, IVC and iliac veins, renal
arteries and veins, SMA with mesenteric branches, coeliac trunk with hepatic and splenic arteries,
the portal system, pancreas; the colon and small-bowel loops in the free fat; last the chest
above the right dome (:func:`_paint_chest`: heart, ascending aorta and arch, pulmonary arteries,
superior vena cava, oesophagus, upper ribs and sternum), where the descending aorta runs beside
the thoracic spine, then the thoracic aorta's surroundings (:func:`_paint_periaortic`: the left lung
against it, a soft-tissue sleeve round it). The chest draws from its own random streams, so it left
the abdomen as it was;
it is seen when the grid is centred higher (``make_phantom(center_z_mm=CHEST_CENTER_Z_MM)``).

The order of the random draws is part of :data:`~DigitalContrastLib.phantoms.generator.GENERATOR_VERSION`:
changing it changes every phantom. Label codes and HU tables live in
:mod:`DigitalContrastLib.phantoms.generator`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .generator import (
    ANEURYSM_PROBABILITY,
    Anatomy,
    Box,
    Canvas,
    Grid,
    SliceTube,
    capped_radius,
    register_ifu,
    sample_hu_tables,
    smooth_noise_1d,
    smoothstep,
    uniform,
)
from DigitalContrastLib.ct.labels import LABELS

FINE_Z = np.arange(-320.0, 420.0, 1.0)  # the anatomy's z lattice (mm), independent of the grid


def _body_fields(grid: Grid, body: dict[str, np.ndarray]) -> tuple[np.ndarray, Box | None, np.ndarray]:
    """Approximate depth below the skin (mm, float32, negative outside) for every voxel, the box
    that holds the body, and there the anteroposterior position ``s`` (-1 front ... +1 back).

    The outline is two half-ellipses (half-width ``a``, front and back half-depths) whose
    diagonals bulge by the fraction ``square`` (fuller flanks), cut flat at the back (``y_back``).
    """
    depth = np.full(grid.shape_zyx, -1000.0, np.float32)
    reach_x = float(body["a"].max())
    box = grid.box((-reach_x, float((body["yc"] - body["b_ant"]).min()), -1e9),
                   (reach_x, float(body["y_back"].max()), 1e9))
    if box is None:
        return depth, None, np.zeros((0, 0, 0), np.float32)
    zi = box.z_index
    a = body["a"][zi][:, None, None]
    yy = box.Y - body["yc"][zi][:, None, None]
    b = np.where(yy < 0, body["b_ant"][zi][:, None, None], body["b_post"][zi][:, None, None]).astype(np.float32)
    ex = (box.X / a).astype(np.float32)
    ey = yy / b
    r2 = np.maximum(ex * ex + ey * ey, 1e-6)
    cos4 = 1.0 - 8.0 * (ex * ey) ** 2 / (r2 * r2)
    r = np.sqrt(r2) / (1.0 + body["square"][zi][:, None, None].astype(np.float32) * 0.5 * (1.0 - cos4))
    r_safe = np.maximum(r, 1e-3)
    local = np.sqrt(box.X * box.X + yy * yy) / r_safe  # the outline's radius along this direction
    inner = (1.0 - r) * local
    np.minimum(inner, (body["y_back"][zi][:, None, None] - box.Y).astype(np.float32), out=inner)
    depth[box.sl] = inner
    s_ap = np.clip(ey / np.sqrt(r2), -1, 1).astype(np.float32)
    return depth, box, s_ap


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


def _paint_spine(canvas: Canvas, levels, h_disc: float, shell: float, x_spine: np.ndarray, y_spine: np.ndarray,
                 canal_radii: tuple[float, float], lam_len: float, tp_len: float, z_lumbar_top: float,
                 z_s1: float) -> None:
    """Vertebral bodies (cortical shell, endplates, marrow), discs, neural arches with spinous and
    (lumbar) transverse processes, the sacrum, and the canal's contents.

    ``levels``: ``(name, z centre mm, half width mm, half depth mm)`` from L5 upwards; ``x_spine`` and
    ``y_spine``: the column's centre per grid slice (mm).
    """
    grid = canvas.grid
    spn = grid.box((-70, -200, -1e9), (70, 200, 1e9))
    if spn is None:
        return
    r_canal_x, r_canal_y = canal_radii
    pitch = levels[1][1] - levels[0][1]
    h_body = pitch - h_disc
    zz = grid.z[spn.z_index]
    a_z = np.zeros_like(zz)
    b_z = np.zeros_like(zz)
    kind = np.zeros(len(zz), np.int8)  # 0 none, 1 body, 2 disc
    endplate = np.zeros(len(zz), bool)
    level_zc = np.full(len(zz), np.nan)
    for lvl, zc, a_v, b_v in levels:
        in_body = np.abs(zz - zc) <= h_body / 2
        in_disc = (zz - zc > h_body / 2) & (zz - zc <= pitch - h_body / 2)
        a_z[in_body | in_disc] = a_v
        b_z[in_body | in_disc] = b_v
        kind[in_body] = 1
        kind[in_disc] = 2
        endplate[in_body & (np.abs(zz - zc) > h_body / 2 - shell)] = True
        level_zc[in_body] = zc
    # the L5/S1 disc below L5
    in_disc = (zz < levels[0][1] - h_body / 2) & (zz >= levels[0][1] - h_body / 2 - h_disc)
    a_z[in_disc], b_z[in_disc], kind[in_disc] = levels[0][2], levels[0][3], 2
    xs = x_spine[spn.z_index][:, None, None]
    ys = y_spine[spn.z_index][:, None, None]
    A3, B3 = a_z[:, None, None], b_z[:, None, None]
    q = np.sqrt(((spn.X - xs) / np.maximum(A3, 1e-3)) ** 2 + ((spn.Y - ys) / np.maximum(B3, 1e-3)) ** 2)
    body_m = (q <= 1) & (kind[:, None, None] > 0)
    canvas.paint(spn, body_m & (kind[:, None, None] == 2), "disc")
    vb = body_m & (kind[:, None, None] == 1)
    canvas.paint(spn, vb, "cortical_bone")
    inner = vb & (q <= 1 - shell / np.maximum(B3, 1e-3)) & ~endplate[:, None, None]
    canvas.paint(spn, inner, "bone_marrow")
    # posterior elements: neural arch, spinous and transverse processes (cortical with marrow)
    has_arch = ~np.isnan(level_zc) | (kind == 2)
    ycan = ys + B3 + r_canal_y * 0.85
    qc = np.sqrt(((spn.X - xs) / r_canal_x) ** 2 + ((spn.Y - ycan) / r_canal_y) ** 2)
    arch_t = 6.5
    arch = (qc <= 1 + arch_t / r_canal_y) & (spn.Y > ys + B3 * 0.5) & has_arch[:, None, None]
    zrel = (zz - np.nan_to_num(level_zc, nan=1e9))[:, None, None]
    along = np.clip((spn.Y - ycan) / (r_canal_y + lam_len), 0, 1)  # 0 at the canal, 1 at the tip
    spinous = (np.abs(spn.X - xs) <= 4.0 - 1.5 * along) & (spn.Y > ycan) & (spn.Y < ycan + r_canal_y + lam_len) & \
              (zrel > -h_body * 0.7 - 8 * along) & (zrel < h_body * 0.3 - 8 * along)
    lateral = np.clip((np.abs(spn.X - xs) - r_canal_x) / (tp_len - r_canal_x), 0, 1)
    transverse = (np.abs(spn.X - xs) <= tp_len) & (np.abs(spn.Y - (ycan - 3 + 5 * lateral)) <= 4.5 - 2 * lateral) & \
                 (np.abs(zrel) <= 6 - 2 * lateral) & (zz < z_lumbar_top)[:, None, None]
    posterior = (arch | spinous | transverse) & ~(qc < 1) & (spn.Z > z_s1 - 5)
    canvas.paint(spn, posterior & (kind[:, None, None] == 1) | (arch & (kind[:, None, None] == 2)),
                 "cortical_bone")
    core_sp = (np.abs(spn.X - xs) <= 2.5) & spinous & (spn.Y < ycan + r_canal_y + lam_len - 2.5)
    core_tp = (np.abs(spn.Y - (ycan - 3 + 5 * lateral)) <= 2.5 - 2 * lateral) & transverse & (np.abs(spn.X - xs) < tp_len - 2)
    canvas.paint(spn, (core_sp | core_tp) & ~(qc < 1 + 2.5 / r_canal_y) & (kind[:, None, None] == 1), "bone_marrow")
    # sacrum: below the L5/S1 disc, wide alae tapering, tilting backwards
    z_sacrum_top = levels[0][1] - h_body / 2 - h_disc
    sac = (spn.Z < z_sacrum_top)
    fall = np.clip((z_sacrum_top - zz) / 110.0, 0, 1)[:, None, None]
    a_s = 50 - 30 * fall
    b_s = 19 - 6 * fall
    qs = np.sqrt(((spn.X - xs) / a_s) ** 2 + ((spn.Y - ys) / b_s) ** 2)
    canvas.paint(spn, sac & (qs <= 1), "cortical_bone")
    canvas.paint(spn, sac & (qs <= 1 - shell / b_s), "bone_marrow")
    # spinal (and sacral) canal with its contents
    narrow = 1 - 0.6 * fall * sac
    qc_s = np.sqrt(((spn.X - xs) / (r_canal_x * narrow)) ** 2 + ((spn.Y - ycan) / (r_canal_y * narrow)) ** 2)
    canvas.paint(spn, (qc_s < 1) & (spn.Z > z_sacrum_top - 100), "soft_tissue")


def _paint_iliac_wings(canvas: Canvas, depth: np.ndarray, body: dict[str, np.ndarray], y_spine: np.ndarray, *,
                       z_crest: float, z_s1: float, wing_bottom: float, wing_angle: float, wing_radius: float,
                       t_fat: float, shell: float) -> None:
    """Iliac wings with the iliacus inside them and the gluteal muscles outside, slice by slice.

    Each wing is a gently curved plate (an arc of a circle of ``wing_radius`` mm, convex
    posterolaterally) from the sacroiliac joint to the anterior iliac spine, which sits inside the
    body wall ``wing_angle`` degrees round from lateral; the crest arches, and below
    ``wing_bottom`` (the sciatic notch) only the muscles go on.
    """
    grid = canvas.grid
    for side in (-1, 1):
        pel = grid.box((0 if side > 0 else -200, -200, -1e9), (200 if side > 0 else 0, 200, z_crest))
        if pel is None:
            continue
        zz = grid.z[pel.z_index]
        down = np.clip((z_crest - zz) / 140.0, 0, 1)
        ys_z = y_spine[pel.z_index]
        sac_half = 50 - 30 * np.clip((z_s1 - zz) / 110.0, 0, 1)
        joint = zz > z_s1 - 60  # sacroiliac joint; below it the sciatic notch
        ax_ = np.where(joint, sac_half + 3, 62 + 10 * down)
        ay_ = np.where(joint, ys_z + 5, ys_z - 15)
        # the anterior iliac spine: inside the body wall, anterolateral
        inset = t_fat + 14 + 10 * down
        theta = np.radians(wing_angle + 10 * down)
        bx_ = (body["a"][pel.z_index] - inset) * np.cos(theta)
        by_ = body["yc"][pel.z_index] - (body["b_ant"][pel.z_index] - inset) * np.sin(theta)
        mx, my = (ax_ + bx_) / 2, (ay_ + by_) / 2
        chord = np.hypot(bx_ - ax_, by_ - ay_)
        nx_, ny_ = -(by_ - ay_) / chord, (bx_ - ax_) / chord  # unit normal toward medial-anterior
        flip = np.where(nx_ > 0, -1.0, 1.0)
        nx_, ny_ = nx_ * flip, ny_ * flip
        h = np.sqrt(np.maximum(wing_radius ** 2 - (chord / 2) ** 2, 0))
        cxw, cyw = mx + nx_ * h, my + ny_ * h
        e = lambda v: v[:, None, None]  # noqa: E731
        px = side * pel.X
        dist = np.sqrt((px - e(cxw)) ** 2 + (pel.Y - e(cyw)) ** 2) - wing_radius  # > 0 posterolateral
        t = ((px - e(ax_)) * e(bx_ - ax_) + (pel.Y - e(ay_)) * e(by_ - ay_)) / e(chord * chord)
        thick = e(7 + 12 * down ** 2)
        crest = z_crest - 35 * (np.clip(t, -0.5, 1.2) - 0.4) ** 2  # the crest arches
        below_crest = pel.Z <= crest
        dist = np.where(below_crest, dist, 1e3)
        # the gluteal muscles thicken from the crest down
        glute_depth = 50 * np.clip((crest - pel.Z) / 40.0, 0.2, 1.0)
        glute = (dist > 0) & (dist < glute_depth) & (t > -0.45) & (t < 1.0) & (depth[pel.sl] > t_fat * 0.8)
        canvas.paint(pel, glute, "muscle")
        canvas.paint(pel, (dist < 0) & (dist > -thick / 2 - 18) & (t > 0.12) & (t < 1.0), "muscle")  # iliacus
        wing = pel.Z >= wing_bottom
        canvas.paint(pel, wing & (np.abs(dist) <= thick / 2) & (t >= 0) & (t <= 1), "cortical_bone")
        canvas.paint(pel, wing & (np.abs(dist) <= thick / 2 - shell) & (t > 0.03) & (t < 0.97), "bone_marrow")


def _paint_hip(canvas: Canvas, center: np.ndarray, r_head: float, shell: float) -> None:
    """A femoral head (radius ``r_head`` mm) in its acetabulum: the cup covers it from above and
    medially and is open laterally and below; a 1.5 mm joint space between them."""
    hc = center
    side = 1.0 if hc[0] > 0 else -1.0
    grid = canvas.grid
    box = grid.box(hc - r_head - 12, hc + r_head + 12)
    if box is None:
        return
    r = np.sqrt((box.X - hc[0]) ** 2 + (box.Y - hc[1]) ** 2 + (box.Z - hc[2]) ** 2)
    # the cup covers the head from above and medially, open laterally and below
    cup = (side * (box.X - hc[0]) < 6 + 0.8 * np.maximum(box.Z - hc[2], 0)) & ((box.Z - hc[2]) > -0.5 * r_head)
    canvas.paint(box, cup & (r > r_head) & (r <= r_head + 11), "cortical_bone")
    canvas.paint(box, cup & (r > r_head + 1.5 + shell) & (r <= r_head + 11 - shell), "bone_marrow")
    canvas.paint(box, cup & (r > r_head) & (r <= r_head + 1.5), "soft_tissue")  # joint space
    canvas.paint(box, r <= r_head, "cortical_bone")
    canvas.paint(box, r <= r_head - shell, "bone_marrow")


def _paint_rib(canvas: Canvas, side: int, z_root: float, theta_end: float, drop: float, *, Zf: np.ndarray,
               body_f: dict[str, np.ndarray], depth_mm: float, y_root: float, radius: float, shell: float,
               over: tuple[str, ...], clip=None) -> None:
    """One rib (``side`` +1 left, -1 right): from its head beside the spine at ``z_root`` (mm)
    round the body wall, ``depth_mm`` below the skin, to the angle ``theta_end`` (radians from
    straight back), descending by ``drop`` mm on the way; a cortical tube with marrow inside."""
    th = np.linspace(0.45, theta_end, 24)
    zr = z_root - drop * ((th - th[0]) / (th[-1] - th[0])) ** 1.3
    a_z = np.interp(zr, Zf, body_f["a"])
    yb = np.where(np.cos(th) > 0, np.interp(zr, Zf, body_f["b_post"]), np.interp(zr, Zf, body_f["b_ant"]))
    pts = np.stack([side * (a_z - depth_mm) * np.sin(th), (yb - depth_mm) * np.cos(th), zr], axis=1)
    pts = np.concatenate([np.array([[side * 25.0, y_root, z_root]]), pts], axis=0)
    canvas.polyline(pts, radius, "cortical_bone", over=over, clip=clip)
    canvas.polyline(pts, radius - shell, "bone_marrow", over=("cortical_bone",), clip=clip)


def _paint_plaque(canvas: Canvas, tube: SliceTube, plaque: dict[str, Any]) -> None:
    """A calcified plaque: an elliptical patch (``arc_half_mm`` round the vessel, ``z_half_mm`` along
    it) of the outer ``thickness_mm`` of the vessel, centred at ``z_mm`` and ``angle_deg``."""
    grid = canvas.grid
    zc = plaque["z_mm"]
    R_here = float(np.interp(zc, tube.z, tube.outer))
    if R_here <= 0:
        return
    cxp, cyp = float(np.interp(zc, tube.z, tube.cx)), float(np.interp(zc, tube.z, tube.cy))
    hz = plaque["z_half_mm"]
    box = grid.box((cxp - R_here - 8, cyp - R_here - 8, zc - hz), (cxp + R_here + 8, cyp + R_here + 8, zc + hz))
    if box is None:
        return
    fz = tube.at(grid.z[box.z_index])
    dxp = box.X - fz["cx"][:, None, None]
    dyp = box.Y - fz["cy"][:, None, None]
    rr = np.sqrt(dxp * dxp + dyp * dyp)
    Rz = fz["outer"][:, None, None]
    dang = np.angle(np.exp(1j * (np.arctan2(dyp, dxp) - math.radians(plaque["angle_deg"]))))
    arc = dang * Rz
    m = ((arc / plaque["arc_half_mm"]) ** 2 + ((box.Z - zc) / hz) ** 2 <= 1) & (rr <= Rz + 0.3) & \
        (rr >= Rz - plaque["thickness_mm"]) & (Rz > 0)
    canvas.paint(box, m, "calcification", over=("aortic_wall", "thrombus", "aortic_lumen", "fat"))


@register_ifu("aorta")
def build_aorta(seed: int, grid: Grid) -> Anatomy:  # noqa: C901 (one patient, drawn top to bottom)
    """Abdominal CT at the aortic level: body, spine, organs, bowel, aorta with optional AAA."""
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng([int(seed), 1])
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf = FINE_Z
    P: dict[str, Any] = {}

    # ---------------------------------------------------------------- levels (mm, LPS z)
    z_bif = u(-55, -25)  # aortic bifurcation, L4
    pitch = u(35, 39)  # vertebral body + disc height
    aneurysm = bool(rng.random() < ANEURYSM_PROBABILITY)
    d_max = u(35, 80) if aneurysm else 0.0
    # an aneurysmal aorta is longer: the renal arteries sit higher above the bifurcation
    z_renal = z_bif + u(95, 120) + (0.4 * (d_max - 35) if aneurysm else 0.0)
    z_sma = z_renal + u(10, 20)
    z_celiac = z_sma + u(10, 18)
    z_dome_right = z_bif + u(255, 285)
    z_dome_left = z_dome_right - u(5, 20)
    P["levels_z_mm"] = {
        "aortic_bifurcation": z_bif, "renal_arteries": z_renal, "sma_origin": z_sma,
        "coeliac_origin": z_celiac, "diaphragm_dome_right": z_dome_right, "diaphragm_dome_left": z_dome_left,
    }

    # ---------------------------------------------------------------- body outline per slice
    t_fat0 = u(8, 32)
    # the abdomen grows with the fat (habitus); the outline stays within a 340 mm field of view
    a0, b_ant0, b_post0 = u(130, 150) + 0.5 * t_fat0, u(112, 135) + 0.6 * t_fat0, u(88, 102)
    t_muscle = u(8, 13)
    # outline half-axes along z (fine lattice): wider and shallower over the pelvis
    pelvis_f = smoothstep((z_bif + 30 - Zf) / 90.0)
    chest_f = smoothstep((Zf - (z_renal + 60)) / 120.0)
    wobble_f = 1 + 0.02 * smooth_noise_1d(rng, len(Zf), 40.0)
    body_f = {
        "a": a0 * (1 + 0.06 * pelvis_f - 0.03 * chest_f) * wobble_f,
        "b_ant": b_ant0 * (1 - 0.12 * pelvis_f + 0.02 * chest_f) * wobble_f,
        "b_post": np.full(len(Zf), b_post0),
        "yc": np.zeros(len(Zf)),
    }
    body_f["y_back"] = body_f["yc"] + 0.93 * body_f["b_post"]
    square = u(-0.01, 0.06)
    body_f["square"] = np.full(len(Zf), square)
    # centre the grid on the body: halfway between the front of the abdomen and the flat back
    grid = grid.centered_at((0.0, (0.93 * b_post0 - b_ant0) / 2.0, grid.center[2]))
    canvas = Canvas(grid)
    gz = grid.z
    nz = len(gz)
    body = {key: np.interp(gz, Zf, value).astype(np.float32) for key, value in body_f.items()}
    chest = np.interp(gz, Zf, chest_f)
    P["body"] = {"half_width_mm": a0, "anterior_half_depth_mm": b_ant0, "posterior_half_depth_mm": b_post0,
                 "subcutaneous_fat_mm": t_fat0, "abdominal_wall_muscle_mm": t_muscle, "squareness": square}

    depth, bbox, s_ap = _body_fields(grid, body)
    if bbox is not None:
        sub = canvas.labels[bbox.sl]
        d = depth[bbox.sl]
        inside = d > 0
        sub[inside] = LABELS["fat"]
        t_fat = t_fat0 * (1.0 - 0.3 * s_ap)
        # abdominal wall: obliques thickest laterally, rectus in front (linea alba between), thin at the back
        t_wall = t_muscle * (1 + 0.4 * (1 - np.abs(s_ap)) - 0.6 * np.clip((s_ap - 0.3) / 0.7, 0, 1))
        wall = inside & (d > t_fat) & (d <= t_fat + t_wall) & ~((s_ap < -0.8) & (np.abs(bbox.X) < 4))
        sub[wall] = LABELS["muscle"]
        # thin fat planes between the external oblique, internal oblique and transversus laterally
        layer = (d - t_fat) / t_wall
        half = 0.8 / t_wall
        planes = wall & (np.abs(s_ap) < 0.6) & ((np.abs(layer - 0.38) < half) | (np.abs(layer - 0.7) < half))
        sub[planes] = LABELS["fat"]
        sub[inside & (d <= 2.0)] = LABELS["soft_tissue"]  # skin
        del t_wall, wall, t_fat, inside, layer, planes
    cavity_margin = t_fat0 * 1.3 + t_muscle * 1.3

    def cavity(box: Box, extra: float = 0.0) -> np.ndarray:
        return depth[box.sl] > cavity_margin + extra

    # ---------------------------------------------------------------- spine centre line
    y_back0 = 0.93 * b_post0
    y_spine0 = y_back0 - 0.7 * t_fat0 - u(62, 72)
    z_l3 = z_bif + pitch
    z_s1 = z_bif - 1.5 * pitch
    lordosis = u(8, 18)
    y_spine_f = (y_spine0 - lordosis * np.exp(-(((Zf - z_l3) / 110.0) ** 2))
                 + 0.55 * np.maximum(0, z_s1 - Zf) + 0.12 * np.maximum(0, Zf - (z_bif + 4 * pitch)))
    x_spine_f = 3.0 * smooth_noise_1d(rng, len(Zf), 60.0) * u(0, 1)
    y_spine = np.interp(gz, Zf, y_spine_f)
    x_spine = np.interp(gz, Zf, x_spine_f)
    # vertebral levels: L4 centred at the bifurcation; index 0 = L5 ... 7 = T10, 8 = T9, 9 = T8 ... 16 = T1
    names = ["L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8", "T7", "T6", "T5", "T4", "T3", "T2", "T1"]
    h_disc = u(8, 11)
    vb_a0, vb_b0 = u(21, 25), u(15, 18)
    shell = u(1.5, 2.5)
    P["spine"] = {"pitch_mm": pitch, "disc_height_mm": h_disc, "lordosis_mm": lordosis,
                  "vertebral_half_width_l4_mm": vb_a0, "vertebral_half_depth_l4_mm": vb_b0,
                  "cortical_shell_mm": shell, "y_l3_mm": float(np.interp(z_l3, Zf, y_spine_f))}

    def spine_front(z):
        """y (mm) of the anterior surface of the vertebral column at z."""
        return np.interp(z, Zf, y_spine_f) - vb_b0

    # ---------------------------------------------------------------- muscles
    # psoas: beside the vertebral bodies, growing caudally, then lateral into the pelvis
    erector_w = u(50, 62)
    psoas_r = np.clip(6 + 16 * smoothstep((z_bif + 4 * pitch - gz) / (4.5 * pitch)), 0, 24) * u(0.85, 1.15)
    psoas_r = np.where(gz > z_bif + 4.3 * pitch, 0, psoas_r)
    for side in (-1, 1):
        box = grid.box((-140, -120, gz.min()), (140, 140, gz.max()))
        zi = box.z_index
        pr = psoas_r[zi][:, None, None]
        lateral = smoothstep((z_s1 - gz[zi]) / 80.0)[:, None, None]
        cxp = side * (vb_a0 + 0.8 * pr + 30 * lateral) + x_spine[zi][:, None, None]
        cyp = y_spine[zi][:, None, None] - 4 - 40 * lateral
        m = ((box.X - cxp) / np.maximum(pr, 1e-3)) ** 2 + ((box.Y - cyp) / np.maximum(0.85 * pr, 1e-3)) ** 2 <= 1
        canvas.paint(box, m & (pr > 0) & cavity(box, -t_muscle), "muscle")
        # quadratus lumborum (lumbar levels)
        ql = (gz[zi] < z_bif + 3.6 * pitch) & (gz[zi] > z_bif + 0.3 * pitch)
        cxq = side * (46 + 0.3 * pr) + x_spine[zi][:, None, None]
        cyq = y_spine[zi][:, None, None] + vb_b0 + 10
        m = ((box.X - cxq) / (10 + 0.4 * pr)) ** 2 + ((box.Y - cyq) / 8.0) ** 2 <= 1
        canvas.paint(box, m & ql[:, None, None], "muscle")
        # erector spinae: a rounded block in each gutter beside the spinous processes, from the
        # laminae back to the subcutaneous fat (narrower over the sacrum and in the thorax)
        half_w = (erector_w * (1 - 0.25 * chest - 0.35 * smoothstep((z_s1 - gz[zi]) / 40.0)) / 2)[:, None, None]
        y0 = y_spine[zi][:, None, None] + vb_b0 + 6
        y1 = body["y_back"][zi][:, None, None]
        m = (np.abs((box.X - x_spine[zi][:, None, None] - side * (3 + half_w)) / half_w) ** 2.6
             + np.abs((box.Y - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2.6) <= 1
        canvas.paint(box, m & (depth[box.sl] > 0.7 * t_fat0) & (gz[zi] > z_s1 - 80)[:, None, None], "muscle")
    P["muscles"] = {"psoas_max_radius_mm": float(psoas_r.max()), "erector_spinae_width_mm": erector_w}

    # ---------------------------------------------------------------- pelvis (ilium), its muscles
    # each iliac wing, slice by slice, is a gently curved plate (an arc of a large circle, convex
    # posterolaterally) from the sacroiliac joint to the anterior iliac spine; iliacus lines its
    # inner (anteromedial) face, the gluteal muscles its outer face
    z_crest = z_bif + u(0, 15)
    wing_angle = u(35, 45)  # where the anterior spine sits on the body outline, degrees from lateral
    wing_radius = u(130, 160)
    wing_bottom = z_crest - u(105, 120)  # the greater sciatic notch; the acetabulum lies below
    _paint_iliac_wings(canvas, depth, body, y_spine, z_crest=z_crest, z_s1=z_s1, wing_bottom=wing_bottom,
                       wing_angle=wing_angle, wing_radius=wing_radius, t_fat=t_fat0, shell=shell)
    # hip joints: femoral heads in their acetabula, joint space between
    r_head = u(22, 26)
    z_head = wing_bottom - u(40, 55)
    y_head = u(-15, 0)
    x_head = a0 * 1.06 * u(0.56, 0.62)
    for side in (-1, 1):
        _paint_hip(canvas, np.array([side * x_head, y_head, z_head]), r_head, shell)
    P["pelvis"] = {"iliac_crest_z_mm": z_crest, "wing_angle_deg": wing_angle, "wing_radius_mm": wing_radius,
                   "sciatic_notch_z_mm": wing_bottom, "femoral_head_radius_mm": r_head,
                   "femoral_heads_center_mm": [[-x_head, y_head, z_head], [x_head, y_head, z_head]]}

    # ---------------------------------------------------------------- diaphragm and lung bases
    def z_dia_of(box: Box) -> np.ndarray:
        """z (mm) of the diaphragm above each voxel's (x, y): two domes, deep posterior recesses."""
        side_dome = np.where(box.X < 0, z_dome_right, z_dome_left)
        rad = np.sqrt(((np.abs(box.X) - 60) / 95.0) ** 2 + (box.Y / 90.0) ** 2)
        post = np.maximum(0, box.Y / 80.0)
        return side_dome - 85 * rad ** 2 - 45 * post ** 2

    top = grid.box((-200, -200, z_bif + 110), (200, 200, 1e9))
    if top is not None:
        zd = z_dia_of(top)
        inner = cavity(top, -t_muscle * 0.6)
        canvas.paint(top, inner & (top.Z > zd) & (np.abs(top.X) > 30), "lung")
        canvas.paint(top, inner & (top.Z <= zd) & (top.Z > zd - 4), "muscle")

    def below_diaphragm(box: Box) -> np.ndarray:
        return (box.Z <= z_dia_of(box) - 4) & cavity(box)

    # ---------------------------------------------------------------- solid organs
    liver_c = (u(-75, -60), u(-15, 5), z_dome_right - u(55, 70))
    liver_r = (u(95, 110), u(100, 115), u(115, 135))
    canvas.ellipsoid(liver_c, liver_r, "liver", clip=below_diaphragm)
    left_lobe_c = (u(5, 30), u(-70, -50), z_dome_right - u(35, 50))
    left_lobe_r = (u(55, 75), u(35, 45), u(45, 60))
    canvas.ellipsoid(left_lobe_c, left_lobe_r, "liver", clip=below_diaphragm)
    gb_c = (liver_c[0] + u(15, 30), u(-65, -45), liver_c[2] - liver_r[2] * u(0.55, 0.7))
    gb_r = (u(13, 18), u(13, 18), u(30, 40))
    canvas.ellipsoid(gb_c, gb_r, "fluid", clip=cavity)
    P["liver"] = {"center_mm": list(liver_c), "radii_mm": list(liver_r), "left_lobe_center_mm": list(left_lobe_c),
                  "left_lobe_radii_mm": list(left_lobe_r)}
    P["gallbladder"] = {"center_mm": list(gb_c), "radii_mm": list(gb_r)}

    ang = math.radians(u(20, 40))
    rot_spleen = np.array([[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1]])
    spleen_c = (u(80, 95), u(35, 55), z_dome_left - u(60, 80))
    spleen_r = (u(20, 26), u(50, 62), u(50, 65))
    canvas.ellipsoid(spleen_c, spleen_r, "spleen", rotation=rot_spleen, clip=below_diaphragm)
    stomach_c = (u(35, 55), u(-55, -35), z_dome_left - u(50, 70))
    stomach_r = (u(40, 50), u(32, 42), u(45, 60))
    canvas.ellipsoid(stomach_c, stomach_r, "bowel", clip=below_diaphragm, over=("fat", "liver"))
    gas_level = stomach_c[1] - stomach_r[1] * u(0.2, 0.6)
    canvas.ellipsoid(stomach_c, tuple(r - 4 for r in stomach_r), "bowel_gas",
                     clip=lambda b: below_diaphragm(b) & (b.Y < gas_level), over=("bowel",))
    P["spleen"] = {"center_mm": list(spleen_c), "radii_mm": list(spleen_r), "rotation_deg": math.degrees(ang)}
    P["stomach"] = {"center_mm": list(stomach_c), "radii_mm": list(stomach_r), "air_fluid_level_y_mm": gas_level}

    # kidneys: tilted, beside the psoas; right one lower (liver)
    kidneys = {}
    t_cortex = u(7, 10)
    n_pyramids = int(rng.integers(7, 10))
    for side, name in ((1, "left"), (-1, "right")):
        kc = np.array([side * u(68, 80), float(np.interp(z_renal, Zf, y_spine_f)) + u(5, 18),
                       z_renal + (u(0, 10) if side > 0 else -u(8, 20))])
        axis_u = np.array([-side * u(0.15, 0.3), u(0.1, 0.3), 1.0])
        axis_u /= np.linalg.norm(axis_u)
        hilum = np.array([-side * 1.0, -u(0.6, 1.0), 0.0])
        hilum -= (hilum @ axis_u) * axis_u
        hilum /= np.linalg.norm(hilum)
        axis_w = np.cross(axis_u, hilum)
        radii = np.array([u(50, 60), u(26, 31), u(20, 25)])  # along u (long), hilum, w
        _paint_kidney(canvas, kc, (axis_u, hilum, axis_w), radii, t_cortex, n_pyramids)
        kidneys[name] = {"center_mm": kc.tolist(), "long_axis": axis_u.tolist(), "hilum_direction": hilum.tolist(),
                         "radii_mm": radii.tolist(),
                         "hilum_mm": (kc + hilum * radii[1] * 0.55).tolist()}
    P["kidneys"] = {**kidneys, "cortex_thickness_mm": t_cortex, "pyramids": n_pyramids}

    bladder_c = (u(-8, 8), u(-50, -30), z_bif - u(150, 175))
    bladder_r = (u(35, 50), u(28, 38), u(30, 45))
    canvas.ellipsoid(bladder_c, bladder_r, "fluid", clip=cavity)
    P["bladder"] = {"center_mm": list(bladder_c), "radii_mm": list(bladder_r)}

    # ---------------------------------------------------------------- bones: vertebrae, sacrum, ribs
    r_canal_x, r_canal_y = u(10, 12), u(7.5, 9)
    lam_len, tp_len = u(32, 42), u(36, 44)  # spinous process length, transverse process reach
    levels = []
    for k, lvl in enumerate(names):
        zc = z_bif + (k - 1) * pitch
        grow = max(1.0 - 0.03 * max(k - 1, 0), 0.7)
        levels.append((lvl, zc, vb_a0 * grow, vb_b0 * max(1.0 - 0.02 * max(k - 1, 0), 0.8)))
    _paint_spine(canvas, levels, h_disc, shell, x_spine, y_spine, (r_canal_x, r_canal_y), lam_len, tp_len,
                 z_lumbar_top=z_bif + 4.5 * pitch, z_s1=z_s1)
    P["spine"].update({"levels_z_mm": {lvl: zc for lvl, zc, _, _ in levels},
                       "canal_radii_mm": [r_canal_x, r_canal_y]})

    # ribs 6 to 12, from the transverse processes round the body wall, descending anteriorly
    rib_r = u(4.5, 6.0)
    ribs = []
    rib_depth = 0.8 * t_fat0 + t_muscle * 0.6 + rib_r  # of the rib's centre below the skin
    for k, lvl in enumerate(["T12", "T11", "T10", "T9", "T8", "T7", "T6"]):
        z0 = z_bif + (k + 4) * pitch
        theta_end = [1.35, 1.8, 2.3, 2.5, 2.6, 2.7, 2.75][k]
        drop = [25, 45, 75, 95, 110, 120, 125][k] * u(0.85, 1.15)
        for side in (-1, 1):
            _paint_rib(canvas, side, z0, theta_end, drop, Zf=Zf, body_f=body_f, depth_mm=rib_depth,
                       y_root=float(np.interp(z0, Zf, y_spine_f)) + vb_b0 + 12, radius=rib_r, shell=shell,
                       over=("fat", "muscle", "lung", "liver", "spleen", "soft_tissue"))
            ribs.append(lvl + ("L" if side > 0 else "R"))
    P["ribs"] = {"radius_mm": rib_r, "ribs": ribs}

    # ---------------------------------------------------------------- aorta (fine z lattice)
    d_top = u(21, 26)
    d_bif = u(15, 19)
    z_top_aorta = Zf[-1]
    frac = np.clip((Zf - z_bif) / (z_top_aorta - z_bif), 0, 1)
    r_normal = (d_bif + (d_top - d_bif) * frac) / 2.0
    wall_mm = u(1.5, 2.5)
    if aneurysm:
        neck = u(10, 30)
        z_hi = z_renal - neck
        z_lo = z_bif + u(5, 15)
        if z_hi - z_lo < 40:
            z_lo = z_hi - 40
        z_pk = z_lo + (z_hi - z_lo) * u(0.35, 0.65)
        t = np.where(Zf < z_pk, (Zf - z_lo) / (z_pk - z_lo), (z_hi - Zf) / (z_hi - z_pk))
        bump = np.where((Zf > z_lo) & (Zf < z_hi), 0.5 * (1 - np.cos(np.pi * np.clip(t, 0, 1))), 0.0) ** 0.7
        R_outer = r_normal + (d_max / 2 - r_normal) * bump
    else:
        neck = z_hi = z_lo = z_pk = None
        bump = np.zeros_like(Zf)
        R_outer = r_normal.copy()
    # centre line: left of the spine, anterior to it; a sac bulges forwards and to one side
    x_top, x_low = u(14, 24), u(2, 12)
    side_bulge = (1 if rng.random() < 0.7 else -1) * u(0.1, 0.5)
    cx = (x_low + (x_top - x_low) * smoothstep((Zf - z_bif) / 220.0)
          + u(1.5, 4) * smooth_noise_1d(rng, len(Zf), 35.0) + side_bulge * (R_outer - r_normal))
    gap = u(2, 5)
    cy = spine_front(Zf) - R_outer - gap
    # the chest: its own random stream, so the abdomen's draws stay as they were
    rng_chest = np.random.default_rng([int(seed), 7])
    z_chest = z_dome_right
    z_arch = min(z_chest + uniform(rng_chest, 150, 175), float(Zf[-1]) - 15)
    # the thoracic aorta is wider than the abdominal one (24-34 mm): it widens over 80 mm above the dome
    widen = smoothstep((Zf - z_chest) / 80.0) * uniform(rng_chest, 1.5, 4.0)
    R_outer = R_outer + widen
    r_normal = r_normal + widen
    cx, cy = _thoracic_aorta_course(Zf, cx, cy, R_outer, z_start=z_chest, x_spine_f=x_spine_f, y_spine_f=y_spine_f,
                                    vb_a=0.8 * vb_a0, vb_b=0.85 * vb_b0)
    # thrombus: lumen shrinks inside the sac, eccentric; side and thickness vary along z
    Ri = R_outer - wall_mm
    if aneurysm:
        burden = u(0.35, 0.9)
        tf = np.clip(burden * bump * (1 + 0.25 * smooth_noise_1d(rng, len(Zf), 12.0)), 0, 0.95)
        r_lumen = Ri - tf * np.maximum(Ri - 0.85 * (r_normal - wall_mm), 0)
        ecc = u(0.5, 0.9)
        phi0 = math.pi / 2 + u(-1.0, 1.0)  # lumen displaced posteriorly: thrombus mostly anterior
        phi = phi0 + u(0.3, 0.9) * smooth_noise_1d(rng, len(Zf), 20.0)
        off = ecc * (Ri - r_lumen)
        ldx, ldy = off * np.cos(phi), off * np.sin(phi)
    else:
        burden = ecc = phi0 = 0.0
        r_lumen = Ri.copy()
        ldx = ldy = np.zeros_like(Zf)
    # bottom: round cap at the bifurcation
    R_c = capped_radius(Zf, R_outer, z_bif, below=True)
    Ri_c = capped_radius(Zf, Ri, z_bif, below=True)
    rl_c = capped_radius(Zf, r_lumen, z_bif, below=True)
    cxc = np.where(Zf < z_bif, np.interp(z_bif, Zf, cx), cx)
    cyc = np.where(Zf < z_bif, np.interp(z_bif, Zf, cy), cy)
    aorta = SliceTube(Zf, cxc, cyc, np.where((R_c > 0) & (Zf <= z_arch), R_c, 0), Ri_c, rl_c, ldx, ldy)

    # iliac arteries: diverge from the bifurcation, then run down the pelvic brim anteriorly
    x_b, y_b = float(np.interp(z_bif, Zf, cx)), float(np.interp(z_bif, Zf, cy))
    iliacs = {}
    iliac_tubes = []
    r_il = u(4.5, 6.0)
    for side, name in ((1, "left"), (-1, "right")):
        alpha = math.radians(u(22, 35))
        l_ci = u(40, 60)
        s = np.maximum(z_bif + 3 - Zf, 0)
        x_off = np.minimum(s, l_ci) * math.tan(alpha) + np.maximum(s - l_ci, 0) * math.tan(math.radians(u(8, 15)))
        x_il = x_b * 0.3 + side * np.minimum(x_off + 4, u(75, 90))
        y_il = y_b + 0.15 * np.minimum(s, l_ci) - np.maximum(s - l_ci, 0) * math.tan(math.radians(u(20, 32)))
        x_il = gaussian_filter1d(x_il, 6.0, mode="nearest")
        y_il = gaussian_filter1d(y_il, 6.0, mode="nearest")
        R_il = np.where(Zf <= z_bif + 3, r_il + wall_mm * 0.8, 0.0)
        tube = SliceTube(Zf, x_il, y_il, R_il, R_il - wall_mm * 0.8, R_il - wall_mm * 0.8,
                          np.zeros_like(Zf), np.zeros_like(Zf))
        iliac_tubes.append(tube)
        z_ii = z_bif + 3 - l_ci
        ii0 = np.array([np.interp(z_ii, Zf, x_il), np.interp(z_ii, Zf, y_il), z_ii])
        iliacs[name] = {"angle_deg": math.degrees(alpha), "common_length_mm": l_ci, "internal_origin_mm": ii0.tolist(),
                        "tube": tube}
    P_iliac = {k: {kk: vv for kk, vv in v.items() if kk != "tube"} for k, v in iliacs.items()}

    # ---------------------------------------------------------------- veins: IVC and iliac veins
    rx_ivc, ry_ivc = u(10, 13), u(7, 9.5)
    z_conf = z_bif - u(15, 30)
    x_ivc_base = -u(20, 28)
    x_ivc = np.minimum(x_ivc_base, cx - R_outer - rx_ivc - 2)  # pushed right by a sac
    y_ivc = spine_front(Zf) - ry_ivc - u(4, 7) - 18 * smoothstep((Zf - (z_renal + 30)) / 60.0)
    z_rv = z_renal - u(0, 8)  # renal veins join here
    ivc_valid = Zf >= z_conf
    ivc = SliceTube(Zf, x_ivc, y_ivc, np.where(ivc_valid, 1.0, 0.0), np.zeros_like(Zf), np.zeros_like(Zf),
                     np.zeros_like(Zf), np.zeros_like(Zf))
    box, f = ivc.box_and_fields(grid, margin=rx_ivc + 1)
    if box is not None:
        m = ((f["dx"] / rx_ivc) ** 2 + (f["dy"] / ry_ivc) ** 2 <= 1) & (f["outer"][:, None, None] > 0)
        canvas.paint(box, m, "vena_cava")
    x_conf, y_conf = float(np.interp(z_conf, Zf, x_ivc)), float(np.interp(z_conf, Zf, y_ivc))
    r_iv = u(6, 8)
    for side, name in ((1, "left"), (-1, "right")):
        tube = iliacs[name]["tube"]
        blend = smoothstep((z_conf - Zf) / 35.0)
        xv = x_conf + blend * (tube.cx - side * 2 - x_conf)
        yv = y_conf + blend * (tube.cy + r_il + r_iv + 3 - y_conf)
        yv = np.minimum(yv, spine_front(Zf) - r_iv - 2 + 40 * smoothstep((z_s1 - 10 - Zf) / 40.0))
        vt = SliceTube(Zf, xv, yv, np.where(Zf <= z_conf + 4, r_iv, 0.0), np.zeros_like(Zf), np.zeros_like(Zf),
                        np.zeros_like(Zf), np.zeros_like(Zf))
        box, f = vt.box_and_fields(grid)
        if box is not None:
            canvas.paint(box, (f["d_outer"] < f["outer"][:, None, None]), "vena_cava")
    P["vena_cava"] = {"radii_mm": [rx_ivc, ry_ivc], "confluence_z_mm": z_conf, "renal_veins_z_mm": z_rv,
                      "iliac_vein_radius_mm": r_iv}

    # ---------------------------------------------------------------- branch arteries, visceral veins
    def aorta_point(z: float) -> np.ndarray:
        """The aorta's centre at z (mm): branches start inside its lumen."""
        return np.array([np.interp(z, Zf, cx), np.interp(z, Zf, cy), z])

    y_front_ao = lambda z: float(np.interp(z, Zf, cy) - np.interp(z, Zf, R_outer))  # noqa: E731
    r_branch = u(2.6, 3.4)
    branches = {}
    # superior mesenteric artery: off the anterior aorta, then caudally in front of it
    sma = [aorta_point(z_sma)]
    sma.append(aorta_point(z_sma) + np.array([0, -u(10, 14), -10]))
    for dzs in (30, 55, 85, 115):
        zq = z_sma - dzs
        ya = min(y_front_ao(zq), y_front_ao(z_sma)) - u(14, 18) - 0.05 * dzs
        sma.append(np.array([np.interp(z_sma, Zf, cx) - 0.08 * dzs - 2, ya, zq]))
    sma = np.array(sma)
    branches["sma"] = sma
    # coeliac trunk: short, anterior, then hepatic (right) and splenic (left, tortuous) arteries
    cel0 = aorta_point(z_celiac)
    cel1 = cel0 + np.array([0, -u(14, 20), -3])
    hep = [cel1, cel1 + [-25, -5, 0], cel1 + [-45, 0, 12], np.array([liver_c[0] + 25, liver_c[1] - 10, cel1[2] + 25])]
    spl_t = np.linspace(0, 1, 8)
    spl = np.stack([cel1[0] + spl_t * (spleen_c[0] - 15 - cel1[0]),
                    cel1[1] + spl_t * (spleen_c[1] - 10 - cel1[1]) + 6 * np.sin(spl_t * 9),
                    cel1[2] + 12 * spl_t + 4 * np.cos(spl_t * 7)], axis=1)
    branches["coeliac"] = np.array([cel0, cel1])
    branches["hepatic"] = np.array(hep)
    branches["splenic"] = spl
    # renal arteries to the hila (the right one behind the IVC)
    for side, name in ((1, "left"), (-1, "right")):
        zr = z_renal + (u(0, 5) if side > 0 else 0.0)
        hil = np.array(kidneys[name]["hilum_mm"])
        o = aorta_point(zr)
        mid = np.array([o[0] + side * (np.interp(zr, Zf, R_outer) + 12), o[1] + 6, zr - 4])
        if side < 0:
            mid = np.array([np.interp(zr, Zf, x_ivc), np.interp(zr, Zf, y_ivc) + ry_ivc + r_branch + 0.5, zr - 5])
        branches[f"renal_{name}"] = np.array([o, mid, hil])
    # internal iliac arteries: posterior, medial, caudal stubs
    for name in ("left", "right"):
        p0 = np.array(iliacs[name]["internal_origin_mm"])
        side = 1 if name == "left" else -1
        branches[f"internal_iliac_{name}"] = np.array([p0, p0 + [-side * 8, 18, -20], p0 + [-side * 10, 30, -45]])

    # mesenteric (jejunal and ileal) arteries fanning out of the SMA into the mesentery
    mesenteric = []
    for k in range(int(rng.integers(6, 11))):
        start = sma[2] + (sma[-1] - sma[2]) * u(0.0, 1.0)
        toward = np.array([u(0.3, 1.0) if k % 3 else -u(0.3, 1.0), -u(0.3, 1.0), -u(0.1, 0.6)])
        pts = [start]
        for _ in range(4):
            step = toward / np.linalg.norm(toward) * u(9, 15) + rng.uniform(-5, 5, 3)
            pts.append(pts[-1] + step)
        mesenteric.append(np.array(pts))
    for k, pts in enumerate(mesenteric):
        branches[f"mesenteric_{k}"] = pts

    # veins (portal system, renal veins) first, arteries over them
    smv = [[sma[k][0] - u(11, 14), sma[k][1] - 2, sma[k][2]] for k in range(2, len(sma))]
    conf = np.array([sma[2][0] - 13, sma[2][1] - 6, z_sma - 8])
    portal = [conf, conf + [-20, 8, 25], [liver_c[0] + 20, liver_c[1] - 5, conf[2] + 55]]
    veins = {
        "smv": np.array(smv[::-1] + [conf.tolist()]),
        "portal": np.array(portal),
        "splenic_vein": np.array([conf, conf + [30, 10, 8], [spleen_c[0] - 15, spleen_c[1] - 5, conf[2] + 20]]),
    }
    hilum_pv = np.asarray(portal[-1], dtype=float)  # right and left portal branches inside the liver
    veins["portal_right"] = np.array([hilum_pv, hilum_pv + [-25, 5, 8], hilum_pv + [-50, 12, 12]])
    veins["portal_left"] = np.array([hilum_pv, hilum_pv + [15, -20, 10],
                                     [left_lobe_c[0], left_lobe_c[1] + 5, hilum_pv[2] + 18]])
    for side, name in ((1, "left"), (-1, "right")):
        hil = np.array(kidneys[name]["hilum_mm"]) + [0, -6, 0]
        join = np.array([np.interp(z_rv, Zf, x_ivc), np.interp(z_rv, Zf, y_ivc), z_rv])
        if side > 0:  # left renal vein: between the SMA and the aorta
            mid = np.array([np.interp(z_rv, Zf, cx), y_front_ao(z_rv) - 6, z_rv + 2])
            veins["renal_vein_left"] = np.array([hil, [hil[0] - 20, hil[1] - 10, z_rv + 4], mid, join])
        else:
            veins["renal_vein_right"] = np.array([hil, join])
    # pancreas along the splenic vein, in front of the SMA
    panc = np.array([[conf[0] - 35, conf[1] - 12, z_sma - 25], [conf[0] - 5, conf[1] - 14, conf[2]],
                     [conf[0] + 30, conf[1] - 2, conf[2] + 10], [spleen_c[0] - 25, spleen_c[1] - 20, conf[2] + 25]])
    canvas.polyline(panc, [u(13, 17), 11, u(9, 12), u(7, 9)], "pancreas", over=("fat", "bowel", "liver"))
    r_vein = u(5, 7)
    for name, pts in veins.items():
        canvas.polyline(pts, r_vein * (0.75 if "renal" in name else 0.6 if "portal_" in name else 1.0), "vein",
                        over=("fat", "pancreas", "liver", "kidney_cortex", "kidney_medulla", "muscle"))
    for name, pts in branches.items():
        if name.startswith("mesenteric"):  # small, and only in the mesenteric fat
            canvas.polyline(pts, np.linspace(0.6, 0.4, len(pts)) * r_branch, "branch_artery", over=("fat",),
                            clip=lambda b: cavity(b, 10.0))
            continue
        r = r_branch * (1.1 if name == "sma" else 0.9 if name in ("hepatic", "splenic") else 1.0)
        canvas.polyline(pts, r, "branch_artery",
                        over=("fat", "pancreas", "liver", "kidney_cortex", "kidney_medulla", "muscle", "vein",
                              "soft_tissue", "spleen"))

    # ---------------------------------------------------------------- aorta and iliacs: walls, thrombus, lumen
    parts = [(aorta, True)] + [(t, False) for t in iliac_tubes]
    fields = [(t.box_and_fields(grid), is_aorta) for t, is_aorta in parts]
    for (box, f), _ in fields:
        if box is not None:
            canvas.paint(box, (f["d_outer"] < f["outer"][:, None, None]) & (f["outer"][:, None, None] > 0), "aortic_wall")
    for pts_name in ("renal_left", "renal_right", "sma", "coeliac"):
        canvas.polyline(branches[pts_name], r_branch, "branch_artery", over=("aortic_wall",))
    for (box, f), is_aorta in fields:
        if box is None:
            continue
        present = (f["outer"] > 0)[:, None, None]
        if is_aorta:
            canvas.paint(box, present & (f["d_outer"] < f["inner"][:, None, None]), "thrombus")
        canvas.paint(box, present & (f["d_lumen"] < f["lumen"][:, None, None]), "aortic_lumen")

    # calcified plaques in the wall (aorta between the renal arteries and the bifurcation, iliacs)
    n_plaques = int(rng.integers(8, 21) if aneurysm else rng.integers(0, 9))
    plaques = []
    for _ in range(n_plaques):
        where = rng.random()
        on = "aorta" if where < 0.8 else ("iliac_left" if where < 0.9 else "iliac_right")
        in_sac = aneurysm and where < 0.55
        tube, zlo, zhi = ((aorta, z_lo, z_hi) if in_sac else (aorta, z_bif, z_renal + 30) if on == "aorta"
                          else (iliac_tubes[0 if on == "iliac_left" else 1], z_bif - 90, z_bif - 5))
        plaque = {"on": on, "z_mm": u(zlo, zhi), "angle_deg": u(0, 360), "arc_half_mm": u(3, 10),
                  "z_half_mm": u(3, 9), "thickness_mm": u(1.8, 3.2)}
        plaques.append(plaque)
        _paint_plaque(canvas, tube, plaque)

    # ---------------------------------------------------------------- bowel: colon and small bowel in the free fat
    def peritoneal(box: Box) -> np.ndarray:
        """In front of the retroperitoneum: clear of the spine and, with mesenteric fat, of the aorta."""
        zq = grid.z[box.z_index]
        front = spine_front(zq)[:, None, None]
        reach = (2 * np.interp(zq, Zf, R_outer) + 10)[:, None, None]
        x_ao = np.interp(zq, Zf, cx)[:, None, None]
        return box.Y < front + 10 - reach * np.exp(-(((box.X - x_ao) / 40.0) ** 2))

    bowel_params = _paint_bowel(canvas, grid, np.random.default_rng([int(seed), 5]), cavity,
                                dict(z_bif=z_bif, z_renal=z_renal, liver_c=liver_c, spleen_c=spleen_c,
                                     peritoneal=peritoneal, bladder_c=bladder_c,
                                     y_sacrum=y_spine_f, Zf=Zf))

    # ---------------------------------------------------------------- chest (above the right dome)
    P["chest"], (arch_path, arch_radii) = _paint_chest(canvas, rng_chest, dict(
        z_chest=z_chest, z_arch=z_arch, Zf=Zf, body_f=body_f, cavity=cavity, depth=depth, rib_r=rib_r,
        rib_depth=rib_depth, t_fat0=t_fat0,
        t_muscle=t_muscle, z_t6=z_bif + 10 * pitch, pitch=pitch, y_spine_f=y_spine_f, x_spine_f=x_spine_f,
        vb_b=0.85 * vb_b0, shell=shell, wall_mm=wall_mm,
        arch_end=(float(np.interp(z_arch, Zf, cx)), float(np.interp(z_arch, Zf, cy)), z_arch),
        arch_end_radius=float(np.interp(z_arch, Zf, R_outer))))
    # the thoracic aorta's surroundings: lung against its left side, soft tissue round it (own stream)
    P["chest"]["periaortic"] = _paint_periaortic(canvas, np.random.default_rng([int(seed), 8]), aorta, dict(
        z_chest=z_chest, cavity=cavity, arch_path=arch_path, arch_radii=arch_radii))

    # ---------------------------------------------------------------- record
    dmax_outer = float(2 * R_outer.max())
    P["aorta"] = {
        "diameter_top_mm": d_top, "diameter_bifurcation_mm": d_bif, "wall_mm": wall_mm,
        "x_top_mm": x_top, "x_bifurcation_mm": x_low, "gap_to_spine_mm": gap, "sac_side_bulge": side_bulge,
        "branch_radius_mm": r_branch, "iliac_lumen_radius_mm": r_il, "iliacs": P_iliac,
        "max_outer_diameter_mm": dmax_outer,
    }
    P["aneurysm"] = {
        "probability": ANEURYSM_PROBABILITY, "present": aneurysm, "max_diameter_mm": d_max if aneurysm else None,
        "neck_length_mm": neck, "z_top_mm": z_hi, "z_bottom_mm": z_lo, "z_widest_mm": z_pk,
        "thrombus_burden": burden if aneurysm else 0.0, "thrombus_eccentricity": ecc,
        "lumen_offset_angle_deg": math.degrees(phi0) if aneurysm else None,
        "angle_convention": "in-plane angle of the lumen centre from the sac centre: 0 = +x (patient left), 90 = +y (posterior)",
    }
    P["calcified_plaques"] = plaques
    P["bowel"] = bowel_params
    P["branches_mm"] = {k: np.round(v, 2).tolist() for k, v in branches.items()}
    P["veins_mm"] = {k: np.round(v, 2).tolist() for k, v in veins.items()}

    # per-slice ground truth of the aorta on this grid
    f = aorta.at(gz)
    present = f["outer"] > 0
    P["aorta_per_slice"] = {
        "z_index": np.nonzero(present)[0].tolist(),
        "center_lps_mm": np.round(np.stack([f["cx"], f["cy"], gz], 1)[present], 3).tolist(),
        "outer_diameter_mm": np.round(2 * f["outer"][present], 3).tolist(),
        "lumen_diameter_mm": np.round(2 * f["lumen"][present], 3).tolist(),
        "lumen_center_lps_mm": np.round(np.stack([f["cx"] + f["lumen_dx"], f["cy"] + f["lumen_dy"], gz], 1)[present], 3).tolist(),
    }

    # focus for previews: widest aortic slice in the field of view (infrarenal); in a field of view
    # centred in the chest, the slice that cuts the ascending and the descending aorta, and the
    # coronal plane through the ascending aorta (heart, aortic root, arch)
    infrarenal = present & (gz < z_renal)
    cand = infrarenal if infrarenal.any() else present
    if grid.center[2] > z_chest:
        zi = int(np.argmin(np.abs(gz - (z_arch - 25.0))))
        y_asc, x_asc = P["chest"]["ascending_aorta"]["top_mm"][1], P["chest"]["ascending_aorta"]["top_mm"][0]
        yi = int(np.clip(round((y_asc - grid.origin[1]) / grid.spacing[1]), 0, grid.shape_zyx[1] - 1))
        xi = int(np.clip(round((x_asc - grid.origin[0]) / grid.spacing[0]), 0, grid.shape_zyx[2] - 1))
        focus = (zi, yi, xi)
    elif cand.any():
        zi = int(np.argmax(np.where(cand, f["outer"], -1)))
        # coronal plane: through the flowing lumen of the infrarenal aorta (median over its slices)
        y_lumen = float(np.median((f["cy"] + f["lumen_dy"])[cand]))
        x_lumen = float(f["cx"][zi] + f["lumen_dx"][zi])
        yi = int(np.clip(round((y_lumen - grid.origin[1]) / grid.spacing[1]), 0, grid.shape_zyx[1] - 1))
        xi = int(np.clip(round((x_lumen - grid.origin[0]) / grid.spacing[0]), 0, grid.shape_zyx[2] - 1))
        focus = (zi, yi, xi)
    else:
        focus = (nz // 2, grid.shape_zyx[1] // 2, grid.shape_zyx[2] // 2)

    nc, c, extras = sample_hu_tables(np.random.default_rng([int(seed), 2]))
    # contrast levels that vary with z: the lumen gradient and the caval mixing above the renal veins
    u_along = np.clip((gz - (z_bif - 150)) / 400.0, 0, 1)
    sign = extras["lumen_gradient_sign"]
    lumen_z = extras["lumen_contrast_mid_hu"] * extras["lumen_gradient_fraction"] * sign * (u_along - 0.5)
    caval = extras["caval_mixing_above_renal_veins_hu"] * smoothstep((gz - z_rv) / 20.0)
    offsets = {"aortic_lumen": lumen_z, "branch_artery": lumen_z, "vena_cava": caval}
    P["hu_extras"] = extras
    return Anatomy(grid, canvas.labels, nc, c, offsets, P, focus)


def _paint_bowel(canvas: Canvas, grid: Grid, rng: np.random.Generator, cavity, anat: dict) -> dict:
    """Colon (a tube with mottled gas and stool) and small-bowel loops, only where fat is free."""
    from scipy.ndimage import gaussian_filter

    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    z_bif, z_renal = anat["z_bif"], anat["z_renal"]
    # random fields on a fixed 4 mm lattice (grid independent): two for the loops, one for their
    # gas, a finer one for the stool's mottled gas
    step = 4.0
    lo = np.array([-180.0, -180.0, z_bif - 240])
    shape = (int(480 // step) + 1, int(360 // step) + 1, int(360 // step) + 1)  # z, y, x
    corr = u(7.5, 9.5)  # mm
    fields = rng.standard_normal((4,) + shape).astype(np.float32)
    for k in range(4):
        fields[k] = gaussian_filter(fields[k], corr / step if k < 3 else 1.2, mode="wrap")
        fields[k] /= fields[k].std()

    # colon: caecum, ascending, hepatic flexure, transverse, splenic flexure, descending, sigmoid, rectum
    zr = z_renal
    path = np.array([
        [-70, -25, z_bif - 55], [-88, -10, z_bif + 10], [-88, -5, zr - 15], [-68, -45, zr + 5],
        [-30, -85, zr - 25], [25, -85, zr - 20], [75, -30, zr + 45], [92, 5, zr + 5], [88, 5, z_bif - 15],
        [60, -35, z_bif - 65], [15, -40, z_bif - 95], [0, 0, z_bif - 120], [0, 0, z_bif - 220],
    ], dtype=float)
    path[:, :2] += rng.uniform(-8, 8, (len(path), 2))
    path[:, 2] += rng.uniform(-8, 8, len(path))
    # rectum just in front of the sacrum
    for k in (-2, -1):
        path[k, 1] = float(np.interp(path[k, 2], anat["Zf"], anat["y_sacrum"])) - u(40, 50)
    r_colon = np.array([26, 24, 22, 21, 20, 20, 20, 18, 17, 16, 15, 15, 15]) * u(0.85, 1.1)
    loop_threshold, gas_threshold = u(1.6, 2.2), u(1.2, 1.6)

    def sample(zone: Box, mask: np.ndarray, channels) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """Indices of ``mask`` in ``zone`` and the fields ``channels`` interpolated there."""
        from scipy.ndimage import map_coordinates

        index = np.nonzero(mask)
        coords = np.stack([(grid.z[zone.sl[0]][index[0]] - lo[2]) / step,
                           (grid.y[zone.sl[1]][index[1]] - lo[1]) / step,
                           (grid.x[zone.sl[2]][index[2]] - lo[0]) / step])
        return index, np.stack([map_coordinates(fields[k], coords, order=1, mode="nearest") for k in channels])

    colon_zone = grid.box((-170, -200, z_bif - 240), (170, 120, z_bif + 240))
    before = canvas.labels[colon_zone.sl] != LABELS["bowel"] if colon_zone is not None else None
    canvas.polyline(path, r_colon, "bowel", over=("fat",), clip=cavity)
    colon = (canvas.labels[colon_zone.sl] == LABELS["bowel"]) & before if colon_zone is not None else None

    zone = grid.box((-170, -200, z_bif - 140), (170, 120, z_renal + 10))
    if zone is not None:
        # small-bowel loops: tubes where two smooth fields are both near zero; gas in some of them
        sub = canvas.labels[zone.sl]
        free = (sub == LABELS["fat"]) & cavity(zone, 5.0) & anat["peritoneal"](zone)
        index, f = sample(zone, free, (0, 1, 2))
        tubes = f[0] * f[0] + f[1] * f[1]
        loops = tubes < loop_threshold
        sub[tuple(i[loops] for i in index)] = LABELS["bowel"]
        y_mm = grid.y[zone.sl[1]][index[1]]
        gas = loops & (tubes < 0.35) & (f[2] - 0.02 * (y_mm + 60) > gas_threshold)
        sub[tuple(i[gas] for i in index)] = LABELS["bowel_gas"]
    if colon_zone is not None:
        # the colon, caecum to rectum: mottled gas in the stool, more of it toward the front
        sub = canvas.labels[colon_zone.sl]
        index, f = sample(colon_zone, colon, (2, 3))
        gas = f[1] + 0.6 * f[0] - 0.01 * (grid.y[colon_zone.sl[1]][index[1]] + 40) > 0.9
        sub[tuple(i[gas] for i in index)] = LABELS["bowel_gas"]
    return {"colon_path_mm": np.round(path, 1).tolist(), "colon_radius_mm": np.round(r_colon, 1).tolist(),
            "loop_correlation_mm": corr, "loop_threshold": loop_threshold, "gas_threshold": gas_threshold}


def _thoracic_aorta_course(Zf: np.ndarray, cx: np.ndarray, cy: np.ndarray, R_outer: np.ndarray, *, z_start: float,
                           x_spine_f: np.ndarray, y_spine_f: np.ndarray, vb_a: float,
                           vb_b: float) -> tuple[np.ndarray, np.ndarray]:
    """The descending aorta's centre line above ``z_start`` (mm): it moves from in front of the
    spine (abdomen) to beside the vertebral bodies on the left (chest) over 60 mm."""
    w = smoothstep((Zf - z_start) / 60.0)
    x_chest = x_spine_f + 0.75 * vb_a + 0.6 * R_outer
    y_chest = y_spine_f - 0.5 * vb_b
    return cx + w * (x_chest - cx), cy + w * (y_chest - cy)


def _paint_chest(canvas: Canvas, rng: np.random.Generator,
                 anat: dict[str, Any]) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """The chest above the right diaphragmatic dome (``anat["z_chest"]``, mm): upper ribs and
    sternum, mediastinal fat, the heart (myocardium, left and right chambers), the aortic root,
    ascending aorta and arch with its three branches, pulmonary trunk and arteries with branches
    into the lungs, superior vena cava and oesophagus. Nothing is drawn below ``z_chest``, so
    abdominal fields of view (centred on z = 0) are unchanged. The descending aorta itself is the
    aorta's :class:`SliceTube`, which ends at ``anat["z_arch"]`` where the arch takes over.

    Returns the chest's parameters (for ``phantom.json``) and the ascending aorta and arch as drawn:
    centre-line points (mm, LPS) and outer radii (mm), for :func:`_paint_periaortic`.
    """
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    grid = canvas.grid
    z0, z_arch = anat["z_chest"], anat["z_arch"]
    Zf, body_f = anat["Zf"], anat["body_f"]
    soft = ("lung", "fat", "muscle", "soft_tissue")

    def chest(box: Box) -> np.ndarray:
        return (box.Z > z0) & anat["cavity"](box)

    # upper ribs (T5 ... T1) and the sternum
    rib_r, t_fat0, t_muscle = anat["rib_r"], anat["t_fat0"], anat["t_muscle"]
    for k, (theta_end, drop) in enumerate(((2.8, 118), (2.8, 108), (2.7, 95), (2.5, 80), (2.2, 60))):
        z_root = anat["z_t6"] + (k + 1) * anat["pitch"]
        drop *= u(0.85, 1.15)
        for side in (-1, 1):
            _paint_rib(canvas, side, z_root, theta_end, drop, Zf=Zf, body_f=body_f, depth_mm=anat["rib_depth"],
                       y_root=float(np.interp(z_root, Zf, anat["y_spine_f"])) + anat["vb_b"] + 12, radius=rib_r,
                       shell=anat["shell"], over=soft, clip=lambda b: b.Z > z0)
    y_skin = -float(np.interp(z0 + 100, Zf, body_f["b_ant"]))
    y_sternum = y_skin + 0.8 * t_fat0 + t_muscle + 6
    sternum = np.array([[0.0, y_sternum + 4, z0 - 30], [0.0, y_sternum, z0 + 60], [0.0, y_sternum - 2, z_arch + 60]])
    canvas.polyline(sternum, 7.0, "cortical_bone", over=soft, clip=lambda b: b.Z > z0)
    canvas.polyline(sternum, 4.5, "bone_marrow", over=("cortical_bone",), clip=lambda b: b.Z > z0)

    # lungs: the rib cage above the dome but the spine and the muscles behind it (below z0 the
    # abdomen's lung bases stay as drawn)
    cage = grid.box((-250.0, -250.0, z0), (250.0, 250.0, 1e9))
    if cage is not None:
        inside_ribs = anat["depth"][cage.sl] > 0.8 * t_fat0 + 0.6 * t_muscle + 2 * rib_r + 1
        y_spine = np.interp(grid.z[cage.z_index], Zf, anat["y_spine_f"])[:, None, None]
        spine_block = (np.abs(cage.X) < 40) & (cage.Y > y_spine - anat["vb_b"] - 5)
        canvas.paint(cage, inside_ribs & ~spine_block, "lung", over=("fat", "muscle", "soft_tissue"))
    # mediastinum: fat between the sternum and the spine, over the lungs
    x_med = u(0, 10)
    med = grid.box((x_med - 40, y_sternum, z0), (x_med + 40, 200, 1e9))
    if med is not None:
        y_front_spine = np.interp(grid.z[med.z_index], Zf, anat["y_spine_f"])[:, None, None] - anat["vb_b"]
        half_w = 22 + 10 * np.clip((med.Y - y_sternum) / 60.0, 0, 1)
        canvas.paint(med, chest(med) & (np.abs(med.X - x_med) < half_w) & (med.Y < y_front_spine + 5), "fat", over=soft)

    # heart: a tilted ellipsoid on the diaphragm, apex to the left and forwards
    r_h = np.array([u(62, 72), u(45, 55), u(52, 62)])
    c_h = np.array([u(12, 25), y_sternum + 8 + r_h[1] * u(0.85, 1.0), z0 + r_h[2] * u(0.8, 0.95)])
    ang = math.radians(u(25, 45))
    rot = np.array([[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1]])
    heart_over = soft + ("bowel", "bowel_gas")
    canvas.ellipsoid(c_h, r_h, "myocardium", rotation=rot, clip=chest, over=heart_over)
    # left chambers behind and to the left, right chambers in front and to the right, septum between
    sep = u(5, 8)
    left_c = c_h + rot @ np.array([0.0, r_h[1] * 0.28, 0.0]) + np.array([sep, 0, 0])
    right_c = c_h + rot @ np.array([0.0, -r_h[1] * 0.3, 0.0]) - np.array([sep, 0, 0])
    canvas.ellipsoid(left_c, r_h * np.array([0.72, 0.4, 0.72]), "heart_left", rotation=rot, over=("myocardium",))
    canvas.ellipsoid(right_c, r_h * np.array([0.75, 0.38, 0.75]), "heart_right", rotation=rot, over=("myocardium",))

    # ascending aorta from the root (in the heart's upper middle) up behind the sternum, the arch
    # over the pulmonary bifurcation to the descending aorta (its top point: anat["arch_end"])
    wall = anat["wall_mm"]
    r_asc = u(14, 18)
    root = np.array([c_h[0] - u(8, 14), c_h[1] + u(0, 8), c_h[2] + r_h[2] * 0.45])
    top_asc = np.array([u(-12, 0), y_sternum + u(25, 35), z_arch])
    end = np.asarray(anat["arch_end"], dtype=float)
    r_end = float(anat["arch_end_radius"])
    mid = (top_asc + end) / 2
    rise = u(22, 32)
    t = np.linspace(0, np.pi, 13)
    arch = mid + np.outer(np.cos(t), top_asc - mid) + np.outer(np.sin(t), [0.0, 0.0, rise])
    asc = np.array([root, root + [0, -6, 25], top_asc])
    path = np.concatenate([asc, arch[1:]], axis=0)
    radii = np.concatenate([np.full(len(asc), r_asc), np.linspace(r_asc, r_end, len(arch))[1:]])
    vessel_over = heart_over + ("myocardium", "heart_left", "heart_right", "vein", "pulmonary_artery")
    # the arch's branches: brachiocephalic, left common carotid, left subclavian
    r_br = u(4.5, 6.5)
    for k, frac in enumerate((0.3, 0.5, 0.7)):
        p = mid + np.cos(np.pi * frac) * (top_asc - mid) + np.sin(np.pi * frac) * np.array([0, 0, rise])
        drift = (-25.0, 5.0, 40.0)[k]
        branch = np.array([p, p + [drift * 0.3, 0, 30], p + [drift, 5, 90]])
        canvas.polyline(branch, r_br * (1.2 if k == 0 else 1.0), "branch_artery", over=vessel_over)

    # pulmonary trunk from the right ventricle's outflow, up and back to the left under the arch,
    # then the left and right pulmonary arteries (the right one behind the ascending aorta)
    r_pt = u(12, 15)
    outflow = right_c + np.array([u(5, 15), -r_h[1] * 0.2, r_h[2] * 0.35])
    bif = np.array([top_asc[0] + r_asc + u(5, 12), top_asc[1] + r_asc + u(8, 14), z_arch - u(28, 38)])
    trunk = np.array([outflow, (outflow + bif) / 2 + [4, -4, 4], bif])
    canvas.polyline(trunk, [r_pt, r_pt, r_pt * 0.9], "pulmonary_artery", over=vessel_over)
    hila = {}
    for side in (-1, 1):
        hil = np.array([side * u(55, 70), bif[1] + u(15, 25), bif[2] - u(5, 20)])
        via = np.array([(bif[0] + hil[0]) / 2, max(bif[1], top_asc[1] + r_asc + 4) + 6, bif[2] - 3])
        canvas.polyline(np.array([bif, via, hil]), [r_pt * 0.8, r_pt * 0.7, r_pt * 0.55], "pulmonary_artery",
                        over=vessel_over)
        hila["left" if side > 0 else "right"] = hil
    # branches into the lungs: random walks away from each hilum, thinning
    n_lung = int(rng.integers(10, 17))
    for side, name in ((1, "left"), (-1, "right")):
        for _ in range(n_lung):
            direction = np.array([side * u(0.4, 1.0), u(-0.8, 0.9), u(-0.9, 0.9)])
            pts = [hila[name]]
            for _ in range(5):
                step = direction / np.linalg.norm(direction) * u(14, 22) + rng.uniform(-6, 6, 3)
                pts.append(pts[-1] + step)
            canvas.polyline(np.array(pts), np.linspace(u(3.5, 5.0), 1.2, len(pts)), "pulmonary_artery",
                            over=("lung",), clip=chest)

    # superior vena cava to the right of the ascending aorta, down into the right atrium
    r_svc = u(8, 11)
    svc_x = top_asc[0] - r_asc - r_svc - u(3, 8)
    svc = np.array([[svc_x, top_asc[1] + 8, z_arch + 120], [svc_x, top_asc[1] + 10, z_arch - 30],
                    [right_c[0] - 10, right_c[1] + 10, c_h[2] + r_h[2] * 0.4]])
    canvas.polyline(svc, r_svc, "vein", over=vessel_over)
    # the aorta: wall, then lumen (the descending part is painted by the caller)
    canvas.polyline(path, radii, "aortic_wall", over=vessel_over + ("branch_artery",), clip=lambda b: b.Z > z0)
    canvas.polyline(path, radii - wall, "aortic_lumen", over=("aortic_wall", "branch_artery") + vessel_over,
                    clip=lambda b: b.Z > z0)
    # oesophagus: in front of the spine, to the right of the descending aorta
    r_oes = u(7, 10)
    zs = np.linspace(z0, z_arch + 120, 12)
    ys = np.interp(zs, Zf, anat["y_spine_f"]) - anat["vb_b"] - r_oes - 1
    xs = np.interp(zs, Zf, anat["x_spine_f"]) + u(-6, 2)
    canvas.polyline(np.stack([xs, ys, zs], 1), r_oes, "muscle", over=("lung", "fat", "soft_tissue"))
    return {
        "z_chest_mm": z0, "z_arch_mm": z_arch, "arch_rise_mm": rise,
        "heart": {"center_mm": c_h.tolist(), "radii_mm": r_h.tolist(), "rotation_deg": math.degrees(ang)},
        "ascending_aorta": {"root_mm": root.tolist(), "top_mm": top_asc.tolist(), "outer_radius_mm": r_asc},
        "pulmonary_trunk": {"bifurcation_mm": bif.tolist(), "radius_mm": r_pt},
        "pulmonary_hila_mm": {k: v.tolist() for k, v in hila.items()},
        "lung_branches_per_side": n_lung,
        "svc_radius_mm": r_svc, "oesophagus_radius_mm": r_oes,
    }, (path, radii)


def _paint_periaortic(canvas: Canvas, rng: np.random.Generator, tube: SliceTube, anat: dict[str, Any]) -> dict[str, Any]:
    """The thoracic aorta's surroundings above the right dome (``anat["z_chest"]``, mm).

    In a real chest the descending aorta lies against the left lung (only pleura between) and is
    wrapped in soft tissue (oesophagus, azygos, nodes, pericardial recesses, fibrous tissue), with
    little fat near it; the mediastinal fat block drawn by :func:`_paint_chest` put fat all round it.
    Measured on the shared real CTA (1.5 mm shells round its aortic mask, 4.5-7.5 mm out): 24-28 %
    lung, 7-8 % fat, the rest soft tissue or enhanced vessels; generator 1.3.0's chest phantoms had
    50-53 % fat there. Per case:

    * lung contact: the left lung is brought to ``lung_gap_mm`` from the descending aorta's outer
      wall over an arc from ``lung_arc_deg`` (in-plane angle: 0 = patient left, 90 = posterior),
      replacing fat and soft tissue out to ``lung_reach_mm``; absent with probability 0.25;
    * a soft-tissue sleeve replacing fat (never lung, vessels or bone) out to ``sleeve_mm`` (U(0, 8))
      from the outer wall of the descending aorta (thicker towards ``sleeve_side_deg``, x 1.4, than
      opposite it, x 0.6) and, evenly, of the arch and the ascending aorta.
    """
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    grid = canvas.grid
    z0 = anat["z_chest"]
    lung_on = bool(rng.random() >= 0.25)
    gap, reach = u(0.5, 3.0), u(10.0, 25.0)
    arc = (u(-70.0, -10.0), u(70.0, 130.0))
    sleeve = u(0.0, 8.0)
    side = u(0.0, 360.0)
    box, f = tube.box_and_fields(grid, margin=max(reach, 1.4 * sleeve) + 1)
    if box is not None:
        radius = f["outer"][:, None, None]
        thoracic = (box.Z > z0) & (radius > 0) & anat["cavity"](box)
        beyond = f["d_outer"] - radius  # mm outside the outer wall
        angle = np.degrees(np.arctan2(f["dy"], f["dx"]))
        if lung_on:
            on_arc = (angle >= arc[0]) & (angle <= arc[1])
            canvas.paint(box, thoracic & on_arc & (beyond > gap) & (beyond < reach), "lung", over=("fat", "soft_tissue"))
        thickness = sleeve * (1.0 + 0.4 * np.cos(np.radians(angle - side)))
        canvas.paint(box, thoracic & (beyond < thickness), "soft_tissue", over=("fat",))
    if sleeve > 0:
        canvas.polyline(anat["arch_path"], np.asarray(anat["arch_radii"]) + sleeve, "soft_tissue", over=("fat",),
                        clip=lambda b: (b.Z > z0) & anat["cavity"](b))
    return {"lung_contact": lung_on, "lung_gap_mm": gap, "lung_reach_mm": reach, "lung_arc_deg": list(arc),
            "sleeve_mm": sleeve, "sleeve_side_deg": side}

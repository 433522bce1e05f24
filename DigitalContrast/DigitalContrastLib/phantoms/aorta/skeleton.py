"""The aorta patient's skeleton: vertebral column and sacrum, iliac wings and hip joints, ribs.

Vertebral levels are placed from the aortic bifurcation, which sits at L4: L5 below it, T1 at the
top (pitch ``Levels.pitch``, discs between). Each vertebral body has a cortical shell and endplates
round marrow; the neural arch carries spinous and (lumbar) transverse processes round the canal,
whose contents are soft tissue; the sacrum below the L5/S1 disc has wide alae that taper and tilt
backwards. Each iliac wing is, slice by slice, a gently curved plate from the sacroiliac joint to
the anterior iliac spine, lined by the iliacus inside and the gluteal muscles outside; femoral
heads sit in their acetabula below. Ribs 6 to 12 run from beside the spine round the body wall,
descending anteriorly (the chest adds T1 to T5, :mod:`~.chest`).
"""

from __future__ import annotations

import numpy as np

from ..canvas import Canvas, Clip, smooth_noise_1d, uniform
from .body import BodyOnGrid
from .layout import FINE_Z, AortaLayout, Body, Levels, Pelvis, Ribs, Spine, Vertebrae

#: Vertebral levels from L5 up: L4 is centred at the aortic bifurcation.
VERTEBRAE = ("L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8", "T7", "T6", "T5", "T4", "T3", "T2", "T1")
LOWER_RIBS = ("T12", "T11", "T10", "T9", "T8", "T7", "T6")


def sample_spine(rng: np.random.Generator, levels: Levels, body: Body) -> Spine:
    """The column's centre line (lordosis, the sacrum's tilt, a small lateral wander) and its vertebral bodies."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf = FINE_Z
    z_bif, pitch, z_l3, z_s1 = levels.z_bif, levels.pitch, levels.z_l3, levels.z_s1
    y_back0 = body.y_back
    y_spine0 = y_back0 - 0.7 * body.fat - u(62, 72)
    lordosis = u(8, 18)
    y_spine_f = (y_spine0 - lordosis * np.exp(-(((Zf - z_l3) / 110.0) ** 2))
                 + 0.55 * np.maximum(0, z_s1 - Zf) + 0.12 * np.maximum(0, Zf - (z_bif + 4 * pitch)))
    x_spine_f = 3.0 * smooth_noise_1d(rng, len(Zf), 60.0) * u(0, 1)
    h_disc = u(8, 11)
    vb_a0, vb_b0 = u(21, 25), u(15, 18)
    shell = u(1.5, 2.5)
    return Spine(x_line=x_spine_f, y_line=y_spine_f, lordosis=lordosis, disc_height=h_disc, body_half_width=vb_a0,
                 body_half_depth=vb_b0, shell=shell)


def sample_pelvis(rng: np.random.Generator, levels: Levels, body: Body) -> Pelvis:
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    z_crest = levels.z_bif + u(0, 15)
    wing_angle = u(35, 45)  # where the anterior spine sits on the body outline, degrees from lateral
    wing_radius = u(130, 160)
    wing_bottom = z_crest - u(105, 120)  # the greater sciatic notch; the acetabulum lies below
    r_head = u(22, 26)
    z_head = wing_bottom - u(40, 55)
    y_head = u(-15, 0)
    x_head = body.half_width * 1.06 * u(0.56, 0.62)
    return Pelvis(z_crest=z_crest, wing_angle=wing_angle, wing_radius=wing_radius, z_notch=wing_bottom,
                  head_radius=r_head, head_center=(x_head, y_head, z_head))


def sample_vertebrae(rng: np.random.Generator, levels: Levels, spine: Spine) -> Vertebrae:
    """Canal and processes, and each level's centre and size (narrowing upwards from L4)."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    r_canal_x, r_canal_y = u(10, 12), u(7.5, 9)
    lam_len, tp_len = u(32, 42), u(36, 44)  # spinous process length, transverse process reach
    vb_a0, vb_b0 = spine.body_half_width, spine.body_half_depth
    found = []
    for k, lvl in enumerate(VERTEBRAE):
        zc = levels.z_bif + (k - 1) * levels.pitch
        grow = max(1.0 - 0.03 * max(k - 1, 0), 0.7)
        found.append((lvl, zc, vb_a0 * grow, vb_b0 * max(1.0 - 0.02 * max(k - 1, 0), 0.8)))
    return Vertebrae(canal_radii=(r_canal_x, r_canal_y), spinous_length=lam_len, transverse_reach=tp_len, levels=found)


def sample_ribs(rng: np.random.Generator, levels: Levels, body: Body) -> Ribs:
    """Ribs 6 to 12, from the transverse processes round the body wall, descending anteriorly."""
    rib_r = uniform(rng, 4.5, 6.0)
    rib_depth = 0.8 * body.fat + body.wall_muscle * 0.6 + rib_r  # of the rib's centre below the skin
    ribs = []
    for k, lvl in enumerate(LOWER_RIBS):
        z0 = levels.z_bif + (k + 4) * levels.pitch
        theta_end = [1.35, 1.8, 2.3, 2.5, 2.6, 2.7, 2.75][k]
        drop = [25, 45, 75, 95, 110, 120, 125][k] * uniform(rng, 0.85, 1.15)
        ribs.append((lvl, z0, theta_end, drop))
    return Ribs(radius=rib_r, depth=rib_depth, ribs=ribs)


def paint_spine(canvas: Canvas, layout: AortaLayout) -> None:
    levels, spine, vertebrae = layout.levels, layout.spine, layout.vertebrae
    gz = canvas.grid.z
    _paint_vertebrae(canvas, vertebrae.levels, spine.disc_height, spine.shell, spine.x_at(gz), spine.y_at(gz),
                     vertebrae.canal_radii, vertebrae.spinous_length, vertebrae.transverse_reach,
                     z_lumbar_top=levels.z_bif + 4.5 * levels.pitch, z_s1=levels.z_s1)


def _paint_vertebrae(canvas: Canvas, levels, h_disc: float, shell: float, x_spine: np.ndarray, y_spine: np.ndarray,
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


def paint_pelvis(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    """The iliac wings with their muscles, then the hip joints."""
    pelvis, spine = layout.pelvis, layout.spine
    _paint_iliac_wings(canvas, body.depth, body.outline, spine.y_at(canvas.grid.z), z_crest=pelvis.z_crest,
                       z_s1=layout.levels.z_s1, wing_bottom=pelvis.z_notch, wing_angle=pelvis.wing_angle,
                       wing_radius=pelvis.wing_radius, t_fat=layout.body.fat, shell=spine.shell)
    x_head, y_head, z_head = pelvis.head_center
    for side in (-1, 1):
        _paint_hip(canvas, np.array([side * x_head, y_head, z_head]), pelvis.head_radius, spine.shell)


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


def paint_lower_ribs(canvas: Canvas, layout: AortaLayout) -> None:
    """Ribs 6 to 12 on both sides, over the soft tissues, lung bases, liver and spleen."""
    spine, ribs = layout.spine, layout.ribs
    for lvl, z0, theta_end, drop in ribs.ribs:
        for side in (-1, 1):
            paint_rib(canvas, side, z0, theta_end, drop, Zf=FINE_Z, body_f=layout.body.outline, depth_mm=ribs.depth,
                      y_root=float(np.interp(z0, FINE_Z, spine.y_line)) + spine.body_half_depth + 12,
                      radius=ribs.radius, shell=spine.shell,
                      over=("fat", "muscle", "lung", "liver", "spleen", "soft_tissue"))


def paint_rib(canvas: Canvas, side: int, z_root: float, theta_end: float, drop: float, *, Zf: np.ndarray,
               body_f: dict[str, np.ndarray], depth_mm: float, y_root: float, radius: float, shell: float,
               over: tuple[str, ...], clip: Clip | None = None) -> None:
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

"""The aorta patient's chest above the right diaphragmatic dome, and the thoracic aorta's surroundings.

Upper ribs (T5 ... T1) and sternum, lungs filling the rib cage (but the spine and the muscles
behind it), mediastinal fat, the heart (a tilted ellipsoid on the diaphragm, apex to the left and
forwards: myocardium, left chambers behind and to the left, right chambers in front and to the
right, septum between), the aortic root, ascending aorta and arch with its three branches
(brachiocephalic, left common carotid, left subclavian), the pulmonary trunk from the right
ventricle's outflow up and back to the left under the arch, the pulmonary arteries to the hila
(the right one behind the ascending aorta) with branches into the lungs, the superior vena cava
right of the ascending aorta down into the right atrium, and the oesophagus in front of the spine
right of the descending aorta. Nothing is drawn below the dome, so abdominal fields of view
(centred on z = 0) are unchanged; the chest draws from its own random stream, so it left the
abdomen as it was. The descending aorta itself is the aorta's tube (:mod:`~.arteries`), which ends
at ``Aorta.z_arch`` where the arch takes over.

The thoracic aorta's surroundings (:func:`paint_periaortic`, its own random stream): in a real
chest the descending aorta lies against the left lung (only pleura between) and is wrapped in
soft tissue (oesophagus, azygos, nodes, pericardial recesses, fibrous tissue), with little fat
near it; the mediastinal fat block put fat all round it. Measured on the shared real CTA (1.5 mm
shells round its aortic mask, 4.5-7.5 mm out): 24-28 % lung, 7-8 % fat, the rest soft tissue or
enhanced vessels; generator 1.3.0's chest phantoms had 50-53 % fat there. Per case:

* lung contact: the left lung is brought to ``lung_gap_mm`` from the descending aorta's outer
  wall over an arc from ``lung_arc_deg`` (in-plane angle: 0 = patient left, 90 = posterior),
  replacing fat and soft tissue out to ``lung_reach_mm``; absent with probability 0.25;
* a soft-tissue sleeve replacing fat (never lung, vessels or bone) out to ``sleeve_mm`` (U(0, 8))
  from the outer wall of the descending aorta (thicker towards ``sleeve_side_deg``, x 1.4, than
  opposite it, x 0.6) and, evenly, of the arch and the ascending aorta.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from ..canvas import Box, Canvas, uniform
from .body import BodyOnGrid
from .layout import (
    FINE_Z,
    Aorta,
    AortaLayout,
    AorticArch,
    Body,
    Chest,
    Heart,
    Levels,
    Periaortic,
    PulmonaryArteries,
    Spine,
)
from .skeleton import paint_rib

SOFT = ("lung", "fat", "muscle", "soft_tissue")  # what the chest's bones and organs paint over


def _in_chest(z_start: float, body: BodyOnGrid, box: Box) -> np.ndarray:
    """Voxels of ``box`` in the thoracic cavity above ``z_start`` (mm)."""
    return (box.Z > z_start) & body.in_cavity(box)


def _sample_heart(rng: np.random.Generator, z0: float, y_sternum: float) -> Heart:
    """A tilted ellipsoid on the diaphragm, apex to the left and forwards, and its chambers' centres."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    r_h = np.array([u(62, 72), u(45, 55), u(52, 62)])
    c_h = np.array([u(12, 25), y_sternum + 8 + r_h[1] * u(0.85, 1.0), z0 + r_h[2] * u(0.8, 0.95)])
    ang = math.radians(u(25, 45))
    rot = np.array([[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1]])
    # left chambers behind and to the left, right chambers in front and to the right, septum between
    sep = u(5, 8)
    left_c = c_h + rot @ np.array([0.0, r_h[1] * 0.28, 0.0]) + np.array([sep, 0, 0])
    right_c = c_h + rot @ np.array([0.0, -r_h[1] * 0.3, 0.0]) - np.array([sep, 0, 0])
    return Heart(center=c_h, radii=r_h, angle=ang, rotation=rot, left_center=left_c, right_center=right_c)


def _sample_arch(rng: np.random.Generator, heart: Heart, y_sternum: float, aorta: Aorta) -> AorticArch:
    """Ascending aorta from the root (in the heart's upper middle) up behind the sternum, the arch
    over the pulmonary bifurcation to the top of the descending aorta, and the arch's branches."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    c_h, r_h, z_arch = heart.center, heart.radii, aorta.z_arch
    r_asc = u(14, 18)
    root = np.array([c_h[0] - u(8, 14), c_h[1] + u(0, 8), c_h[2] + r_h[2] * 0.45])
    top_asc = np.array([u(-12, 0), y_sternum + u(25, 35), z_arch])
    end = np.asarray((float(np.interp(z_arch, FINE_Z, aorta.cx)), float(np.interp(z_arch, FINE_Z, aorta.cy)), z_arch),
                     dtype=float)
    r_end = float(np.interp(z_arch, FINE_Z, aorta.outer))
    mid = (top_asc + end) / 2
    rise = u(22, 32)
    t = np.linspace(0, np.pi, 13)
    arch = mid + np.outer(np.cos(t), top_asc - mid) + np.outer(np.sin(t), [0.0, 0.0, rise])
    asc = np.array([root, root + [0, -6, 25], top_asc])
    path = np.concatenate([asc, arch[1:]], axis=0)
    radii = np.concatenate([np.full(len(asc), r_asc), np.linspace(r_asc, r_end, len(arch))[1:]])
    # the arch's branches: brachiocephalic, left common carotid, left subclavian
    r_br = u(4.5, 6.5)
    branches = []
    for k, frac in enumerate((0.3, 0.5, 0.7)):
        p = mid + np.cos(np.pi * frac) * (top_asc - mid) + np.sin(np.pi * frac) * np.array([0, 0, rise])
        drift = (-25.0, 5.0, 40.0)[k]
        branch = np.array([p, p + [drift * 0.3, 0, 30], p + [drift, 5, 90]])
        branches.append((branch, r_br * (1.2 if k == 0 else 1.0)))
    return AorticArch(root=root, top=top_asc, radius=r_asc, rise=rise, path=path, radii=radii, branches=branches)


def _sample_pulmonary(rng: np.random.Generator, heart: Heart, arch: AorticArch, z_arch: float) -> PulmonaryArteries:
    """Pulmonary trunk from the right ventricle's outflow, up and back to the left under the arch,
    the left and right pulmonary arteries to the hila, and random walks away from each hilum, thinning."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    r_h, top_asc, r_asc = heart.radii, arch.top, arch.radius
    r_pt = u(12, 15)
    outflow = heart.right_center + np.array([u(5, 15), -r_h[1] * 0.2, r_h[2] * 0.35])
    bif = np.array([top_asc[0] + r_asc + u(5, 12), top_asc[1] + r_asc + u(8, 14), z_arch - u(28, 38)])
    trunk = np.array([outflow, (outflow + bif) / 2 + [4, -4, 4], bif])
    hila, hilar = {}, []
    for side in (-1, 1):
        hil = np.array([side * u(55, 70), bif[1] + u(15, 25), bif[2] - u(5, 20)])
        via = np.array([(bif[0] + hil[0]) / 2, max(bif[1], top_asc[1] + r_asc + 4) + 6, bif[2] - 3])
        hilar.append(np.array([bif, via, hil]))
        hila["left" if side > 0 else "right"] = hil
    n_lung = int(rng.integers(10, 17))
    lung_branches = []
    for side, name in ((1, "left"), (-1, "right")):
        for _ in range(n_lung):
            direction = np.array([side * u(0.4, 1.0), u(-0.8, 0.9), u(-0.9, 0.9)])
            pts = [hila[name]]
            for _ in range(5):
                step = direction / np.linalg.norm(direction) * u(14, 22) + rng.uniform(-6, 6, 3)
                pts.append(pts[-1] + step)
            lung_branches.append((np.array(pts), np.linspace(u(3.5, 5.0), 1.2, len(pts))))
    return PulmonaryArteries(radius=r_pt, bifurcation=bif, trunk=trunk, hilar=hilar, hila=hila, per_side=n_lung,
                             lung_branches=lung_branches)


def sample_chest(rng: np.random.Generator, levels: Levels, body: Body, spine: Spine, aorta: Aorta) -> Chest:
    """The chest from its own stream ``rng`` (after the aorta's two draws from it)."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf = FINE_Z
    z0, z_arch = levels.z_dome_right, aorta.z_arch
    # upper ribs (T5 ... T1): z of the head, end angle, drop
    z_t6 = levels.z_bif + 10 * levels.pitch
    upper_ribs = []
    for k, (theta_end, drop) in enumerate(((2.8, 118), (2.8, 108), (2.7, 95), (2.5, 80), (2.2, 60))):
        z_root = z_t6 + (k + 1) * levels.pitch
        drop *= u(0.85, 1.15)
        upper_ribs.append((z_root, theta_end, drop))
    y_skin = -float(np.interp(z0 + 100, Zf, body.outline["b_ant"]))
    y_sternum = y_skin + 0.8 * body.fat + body.wall_muscle + 6
    sternum = np.array([[0.0, y_sternum + 4, z0 - 30], [0.0, y_sternum, z0 + 60], [0.0, y_sternum - 2, z_arch + 60]])
    x_med = u(0, 10)
    heart = _sample_heart(rng, z0, y_sternum)
    arch = _sample_arch(rng, heart, y_sternum, aorta)
    pulmonary = _sample_pulmonary(rng, heart, arch, z_arch)
    # superior vena cava to the right of the ascending aorta, down into the right atrium
    r_svc = u(8, 11)
    top_asc, right_c, c_h, r_h = arch.top, heart.right_center, heart.center, heart.radii
    svc_x = top_asc[0] - arch.radius - r_svc - u(3, 8)
    svc = np.array([[svc_x, top_asc[1] + 8, z_arch + 120], [svc_x, top_asc[1] + 10, z_arch - 30],
                    [right_c[0] - 10, right_c[1] + 10, c_h[2] + r_h[2] * 0.4]])
    # oesophagus: in front of the spine, to the right of the descending aorta
    r_oes = u(7, 10)
    zs = np.linspace(z0, z_arch + 120, 12)
    ys = np.interp(zs, Zf, spine.y_line) - 0.85 * spine.body_half_depth - r_oes - 1
    xs = np.interp(zs, Zf, spine.x_line) + u(-6, 2)
    return Chest(z_start=z0, z_arch=z_arch, upper_ribs=upper_ribs, y_sternum=y_sternum, sternum=sternum,
                 mediastinum_x=x_med, heart=heart, arch=arch, pulmonary=pulmonary, svc_radius=r_svc, svc=svc,
                 oesophagus_radius=r_oes, oesophagus=np.stack([xs, ys, zs], 1))


def paint_chest_wall(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    """Upper ribs and sternum, the lungs in the rib cage, the mediastinal fat."""
    grid = canvas.grid
    chest, spine, ribs = layout.chest, layout.spine, layout.ribs
    z0, Zf = chest.z_start, FINE_Z
    t_fat0, t_muscle, rib_r = layout.body.fat, layout.body.wall_muscle, ribs.radius
    vb_b = 0.85 * spine.body_half_depth
    for z_root, theta_end, drop in chest.upper_ribs:
        for side in (-1, 1):
            paint_rib(canvas, side, z_root, theta_end, drop, Zf=Zf, body_f=layout.body.outline, depth_mm=ribs.depth,
                      y_root=float(np.interp(z_root, Zf, spine.y_line)) + vb_b + 12, radius=rib_r,
                      shell=spine.shell, over=SOFT, clip=lambda b: b.Z > z0)
    canvas.polyline(chest.sternum, 7.0, "cortical_bone", over=SOFT, clip=lambda b: b.Z > z0)
    canvas.polyline(chest.sternum, 4.5, "bone_marrow", over=("cortical_bone",), clip=lambda b: b.Z > z0)

    # lungs: the rib cage above the dome but the spine and the muscles behind it (below z0 the
    # abdomen's lung bases stay as drawn)
    cage = grid.box((-250.0, -250.0, z0), (250.0, 250.0, 1e9))
    if cage is not None:
        inside_ribs = body.depth[cage.sl] > 0.8 * t_fat0 + 0.6 * t_muscle + 2 * rib_r + 1
        y_spine = np.interp(grid.z[cage.z_index], Zf, spine.y_line)[:, None, None]
        spine_block = (np.abs(cage.X) < 40) & (cage.Y > y_spine - vb_b - 5)
        canvas.paint(cage, inside_ribs & ~spine_block, "lung", over=("fat", "muscle", "soft_tissue"))
    # mediastinum: fat between the sternum and the spine, over the lungs
    x_med, y_sternum = chest.mediastinum_x, chest.y_sternum
    med = grid.box((x_med - 40, y_sternum, z0), (x_med + 40, 200, 1e9))
    if med is not None:
        y_front_spine = np.interp(grid.z[med.z_index], Zf, spine.y_line)[:, None, None] - vb_b
        half_w = 22 + 10 * np.clip((med.Y - y_sternum) / 60.0, 0, 1)
        canvas.paint(med, _in_chest(z0, body, med) & (np.abs(med.X - x_med) < half_w) & (med.Y < y_front_spine + 5),
                     "fat", over=SOFT)


def paint_heart_and_great_vessels(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    """Heart and chambers, the arch's branches, pulmonary arteries, SVC, the ascending aorta and
    arch (wall, then lumen; the descending part is the aorta's tube), the oesophagus."""
    chest = layout.chest
    heart, arch, pulmonary = chest.heart, chest.arch, chest.pulmonary
    z0 = chest.z_start
    in_chest = partial(_in_chest, z0, body)
    heart_over = SOFT + ("bowel", "bowel_gas")
    canvas.ellipsoid(heart.center, heart.radii, "myocardium", rotation=heart.rotation, clip=in_chest, over=heart_over)
    canvas.ellipsoid(heart.left_center, heart.radii * np.array([0.72, 0.4, 0.72]), "heart_left",
                     rotation=heart.rotation, over=("myocardium",))
    canvas.ellipsoid(heart.right_center, heart.radii * np.array([0.75, 0.38, 0.75]), "heart_right",
                     rotation=heart.rotation, over=("myocardium",))
    vessel_over = heart_over + ("myocardium", "heart_left", "heart_right", "vein", "pulmonary_artery")
    for branch, radius in arch.branches:
        canvas.polyline(branch, radius, "branch_artery", over=vessel_over)
    r_pt = pulmonary.radius
    canvas.polyline(pulmonary.trunk, [r_pt, r_pt, r_pt * 0.9], "pulmonary_artery", over=vessel_over)
    for hilar in pulmonary.hilar:
        canvas.polyline(hilar, [r_pt * 0.8, r_pt * 0.7, r_pt * 0.55], "pulmonary_artery", over=vessel_over)
    for pts, radii in pulmonary.lung_branches:
        canvas.polyline(pts, radii, "pulmonary_artery", over=("lung",), clip=in_chest)
    canvas.polyline(chest.svc, chest.svc_radius, "vein", over=vessel_over)
    wall = layout.aorta.wall
    canvas.polyline(arch.path, arch.radii, "aortic_wall", over=vessel_over + ("branch_artery",), clip=lambda b: b.Z > z0)
    canvas.polyline(arch.path, arch.radii - wall, "aortic_lumen", over=("aortic_wall", "branch_artery") + vessel_over,
                    clip=lambda b: b.Z > z0)
    canvas.polyline(chest.oesophagus, chest.oesophagus_radius, "muscle", over=("lung", "fat", "soft_tissue"))


def paint_chest(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    paint_chest_wall(canvas, layout, body)
    paint_heart_and_great_vessels(canvas, layout, body)


def chest_params(chest: Chest) -> dict[str, Any]:
    heart, arch, pulmonary = chest.heart, chest.arch, chest.pulmonary
    return {
        "z_chest_mm": chest.z_start, "z_arch_mm": chest.z_arch, "arch_rise_mm": arch.rise,
        "heart": {"center_mm": heart.center.tolist(), "radii_mm": heart.radii.tolist(),
                  "rotation_deg": math.degrees(heart.angle)},
        "ascending_aorta": {"root_mm": arch.root.tolist(), "top_mm": arch.top.tolist(), "outer_radius_mm": arch.radius},
        "pulmonary_trunk": {"bifurcation_mm": pulmonary.bifurcation.tolist(), "radius_mm": pulmonary.radius},
        "pulmonary_hila_mm": {k: v.tolist() for k, v in pulmonary.hila.items()},
        "lung_branches_per_side": pulmonary.per_side,
        "svc_radius_mm": chest.svc_radius, "oesophagus_radius_mm": chest.oesophagus_radius,
    }


def sample_periaortic(rng: np.random.Generator) -> Periaortic:
    """The thoracic aorta's surroundings, from their own stream ``rng``."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    lung_on = bool(rng.random() >= 0.25)
    gap, reach = u(0.5, 3.0), u(10.0, 25.0)
    arc = (u(-70.0, -10.0), u(70.0, 130.0))
    sleeve = u(0.0, 8.0)
    side = u(0.0, 360.0)
    return Periaortic(lung_contact=lung_on, lung_gap=gap, lung_reach=reach, lung_arc=arc, sleeve=sleeve,
                      sleeve_side=side)


def paint_periaortic(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    """The left lung against the descending aorta and a soft-tissue sleeve round the thoracic aorta."""
    p = layout.periaortic
    z0, arch = layout.chest.z_start, layout.chest.arch
    box, f = layout.aorta.tube.box_and_fields(canvas.grid, margin=max(p.lung_reach, 1.4 * p.sleeve) + 1)
    if box is not None:
        radius = f["outer"][:, None, None]
        thoracic = (box.Z > z0) & (radius > 0) & body.in_cavity(box)
        beyond = f["d_outer"] - radius  # mm outside the outer wall
        angle = np.degrees(np.arctan2(f["dy"], f["dx"]))
        if p.lung_contact:
            on_arc = (angle >= p.lung_arc[0]) & (angle <= p.lung_arc[1])
            canvas.paint(box, thoracic & on_arc & (beyond > p.lung_gap) & (beyond < p.lung_reach), "lung",
                         over=("fat", "soft_tissue"))
        thickness = p.sleeve * (1.0 + 0.4 * np.cos(np.radians(angle - p.sleeve_side)))
        canvas.paint(box, thoracic & (beyond < thickness), "soft_tissue", over=("fat",))
    if p.sleeve > 0:
        canvas.polyline(arch.path, np.asarray(arch.radii) + p.sleeve, "soft_tissue", over=("fat",),
                        clip=partial(_in_chest, z0, body))


def periaortic_params(p: Periaortic) -> dict[str, Any]:
    return {"lung_contact": p.lung_contact, "lung_gap_mm": p.lung_gap, "lung_reach_mm": p.lung_reach,
            "lung_arc_deg": list(p.lung_arc), "sleeve_mm": p.sleeve, "sleeve_side_deg": p.sleeve_side}

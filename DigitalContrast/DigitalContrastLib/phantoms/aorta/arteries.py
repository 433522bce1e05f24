"""The aorta patient's arteries: the aorta with its optional aneurysm and thrombus, iliac arteries,
visceral and renal branches, calcified plaques.

The aorta runs along a curving centre line left of and in front of the spine, its outer radius
narrowing from the top to the bifurcation; above the right diaphragmatic dome it widens by a few mm
and moves beside the vertebral bodies on the left, ending at the arch (the chest draws the arch).
Aneurysm: present with probability :data:`~.layout.ANEURYSM_PROBABILITY` (0.7): a fusiform
infrarenal sac of maximum outer diameter U(35, 80) mm (it lengthens the aorta: the renal arteries
sit higher) that bulges forwards and to one side, with an eccentric crescent of intraluminal
thrombus whose thickness and side vary along z. The bottom is capped round at the bifurcation,
from where the iliac arteries diverge and run down the pelvic brim. Branches: SMA with mesenteric
arteries fanning into the mesentery, coeliac trunk with hepatic and splenic arteries, renal
arteries to the hila (the right one behind the IVC), internal iliac stubs. Calcified plaques lie
in the wall between the renal arteries and the bifurcation (many in a sac) and in the iliacs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..canvas import Canvas, SliceTube, capped_radius, smooth_noise_1d, smoothstep, uniform
from .body import BodyOnGrid
from .layout import FINE_Z, Aorta, AortaLayout, BranchArteries, Iliac, IliacArteries, Levels, Organs, Spine, VenaCava


def _thoracic_aorta_course(Zf: np.ndarray, cx: np.ndarray, cy: np.ndarray, R_outer: np.ndarray, *, z_start: float,
                           x_spine_f: np.ndarray, y_spine_f: np.ndarray, vb_a: float,
                           vb_b: float) -> tuple[np.ndarray, np.ndarray]:
    """The descending aorta's centre line above ``z_start`` (mm): it moves from in front of the
    spine (abdomen) to beside the vertebral bodies on the left (chest) over 60 mm."""
    w = smoothstep((Zf - z_start) / 60.0)
    x_chest = x_spine_f + 0.75 * vb_a + 0.6 * R_outer
    y_chest = y_spine_f - 0.5 * vb_b
    return cx + w * (x_chest - cx), cy + w * (y_chest - cy)


def _sample_sac(rng: np.random.Generator, levels: Levels, r_normal: np.ndarray):
    """The aneurysm's neck, top, bottom and widest level (mm), its bump profile (0 ... 1) and the
    outer radius with it (on FINE_Z); without an aneurysm the levels are None and the radius normal."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf = FINE_Z
    if not levels.aneurysm:
        return None, None, None, None, np.zeros_like(Zf), r_normal.copy()
    neck = u(10, 30)
    z_hi = levels.z_renal - neck
    z_lo = levels.z_bif + u(5, 15)
    if z_hi - z_lo < 40:
        z_lo = z_hi - 40
    z_pk = z_lo + (z_hi - z_lo) * u(0.35, 0.65)
    t = np.where(Zf < z_pk, (Zf - z_lo) / (z_pk - z_lo), (z_hi - Zf) / (z_hi - z_pk))
    bump = np.where((Zf > z_lo) & (Zf < z_hi), 0.5 * (1 - np.cos(np.pi * np.clip(t, 0, 1))), 0.0) ** 0.7
    R_outer = r_normal + (levels.sac_diameter / 2 - r_normal) * bump
    return neck, z_hi, z_lo, z_pk, bump, R_outer


def _sample_thrombus(rng: np.random.Generator, aneurysm: bool, bump: np.ndarray, Ri: np.ndarray,
                     r_normal: np.ndarray, wall_mm: float):
    """Thrombus: the lumen shrinks inside the sac, eccentric; side and thickness vary along z.

    Returns the burden, eccentricity, lumen offset angle (radians), and on FINE_Z the lumen radius
    and the lumen centre's offset (x, y) from the sac centre (mm)."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf = FINE_Z
    if not aneurysm:
        return 0.0, 0.0, 0.0, Ri.copy(), np.zeros_like(Zf), np.zeros_like(Zf)
    burden = u(0.35, 0.9)
    tf = np.clip(burden * bump * (1 + 0.25 * smooth_noise_1d(rng, len(Zf), 12.0)), 0, 0.95)
    r_lumen = Ri - tf * np.maximum(Ri - 0.85 * (r_normal - wall_mm), 0)
    ecc = u(0.5, 0.9)
    phi0 = math.pi / 2 + u(-1.0, 1.0)  # lumen displaced posteriorly: thrombus mostly anterior
    phi = phi0 + u(0.3, 0.9) * smooth_noise_1d(rng, len(Zf), 20.0)
    off = ecc * (Ri - r_lumen)
    return burden, ecc, phi0, r_lumen, off * np.cos(phi), off * np.sin(phi)


def sample_aorta(rng: np.random.Generator, rng_chest: np.random.Generator, levels: Levels, spine: Spine) -> Aorta:
    """The aorta on FINE_Z; its thoracic part (the arch's level, the widening) draws from the chest's stream."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf = FINE_Z
    z_bif = levels.z_bif
    d_top = u(21, 26)
    d_bif = u(15, 19)
    z_top_aorta = Zf[-1]
    frac = np.clip((Zf - z_bif) / (z_top_aorta - z_bif), 0, 1)
    r_normal = (d_bif + (d_top - d_bif) * frac) / 2.0
    wall_mm = u(1.5, 2.5)
    neck, z_hi, z_lo, z_pk, bump, R_outer = _sample_sac(rng, levels, r_normal)
    # centre line: left of the spine, anterior to it; a sac bulges forwards and to one side
    x_top, x_low = u(14, 24), u(2, 12)
    side_bulge = (1 if rng.random() < 0.7 else -1) * u(0.1, 0.5)
    cx = (x_low + (x_top - x_low) * smoothstep((Zf - z_bif) / 220.0)
          + u(1.5, 4) * smooth_noise_1d(rng, len(Zf), 35.0) + side_bulge * (R_outer - r_normal))
    gap = u(2, 5)
    cy = spine.front(Zf) - R_outer - gap
    # the chest: its own random stream, so the abdomen's draws stay as they were
    z_chest = levels.z_dome_right
    z_arch = min(z_chest + uniform(rng_chest, 150, 175), float(Zf[-1]) - 15)
    # the thoracic aorta is wider than the abdominal one (24-34 mm): it widens over 80 mm above the dome
    widen = smoothstep((Zf - z_chest) / 80.0) * uniform(rng_chest, 1.5, 4.0)
    R_outer = R_outer + widen
    r_normal = r_normal + widen
    cx, cy = _thoracic_aorta_course(Zf, cx, cy, R_outer, z_start=z_chest, x_spine_f=spine.x_line,
                                    y_spine_f=spine.y_line, vb_a=0.8 * spine.body_half_width,
                                    vb_b=0.85 * spine.body_half_depth)
    Ri = R_outer - wall_mm
    burden, ecc, phi0, r_lumen, ldx, ldy = _sample_thrombus(rng, levels.aneurysm, bump, Ri, r_normal, wall_mm)
    # bottom: round cap at the bifurcation
    R_c = capped_radius(Zf, R_outer, z_bif, below=True)
    Ri_c = capped_radius(Zf, Ri, z_bif, below=True)
    rl_c = capped_radius(Zf, r_lumen, z_bif, below=True)
    cxc = np.where(Zf < z_bif, np.interp(z_bif, Zf, cx), cx)
    cyc = np.where(Zf < z_bif, np.interp(z_bif, Zf, cy), cy)
    tube = SliceTube(Zf, cxc, cyc, np.where((R_c > 0) & (Zf <= z_arch), R_c, 0), Ri_c, rl_c, ldx, ldy)
    return Aorta(diameter_top=d_top, diameter_bif=d_bif, wall=wall_mm, x_top=x_top, x_low=x_low,
                 side_bulge=side_bulge, gap_to_spine=gap, neck=neck, z_sac_top=z_hi, z_sac_bottom=z_lo,
                 z_sac_widest=z_pk, thrombus_burden=burden, thrombus_eccentricity=ecc, lumen_angle=phi0,
                 z_arch=z_arch, cx=cx, cy=cy, outer=R_outer, tube=tube)


def sample_iliacs(rng: np.random.Generator, levels: Levels, aorta: Aorta) -> IliacArteries:
    """Iliac arteries: diverge from the bifurcation, then run down the pelvic brim anteriorly."""
    from scipy.ndimage import gaussian_filter1d

    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf, z_bif, wall_mm = FINE_Z, levels.z_bif, aorta.wall
    x_b, y_b = float(np.interp(z_bif, Zf, aorta.cx)), float(np.interp(z_bif, Zf, aorta.cy))
    sides = {}
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
        z_ii = z_bif + 3 - l_ci
        ii0 = np.array([np.interp(z_ii, Zf, x_il), np.interp(z_ii, Zf, y_il), z_ii])
        sides[name] = Iliac(angle_deg=math.degrees(alpha), common_length=l_ci, internal_origin=ii0.tolist(), tube=tube)
    return IliacArteries(lumen_radius=r_il, sides=sides)


def _sample_gut_arteries(rng: np.random.Generator, levels: Levels, organs: Organs,
                         aorta: Aorta) -> dict[str, np.ndarray]:
    """SMA (off the anterior aorta, then caudally in front of it), coeliac trunk (short, anterior),
    hepatic (right) and splenic (left, tortuous) arteries."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    z_sma, z_celiac = levels.z_sma, levels.z_celiac
    liver_c, spleen_c = organs.liver_center, organs.spleen_center
    sma = [aorta.point(z_sma)]
    sma.append(aorta.point(z_sma) + np.array([0, -u(10, 14), -10]))
    for dzs in (30, 55, 85, 115):
        zq = z_sma - dzs
        ya = min(aorta.front_y(zq), aorta.front_y(z_sma)) - u(14, 18) - 0.05 * dzs
        sma.append(np.array([np.interp(z_sma, FINE_Z, aorta.cx) - 0.08 * dzs - 2, ya, zq]))
    cel0 = aorta.point(z_celiac)
    cel1 = cel0 + np.array([0, -u(14, 20), -3])
    hep = [cel1, cel1 + [-25, -5, 0], cel1 + [-45, 0, 12], np.array([liver_c[0] + 25, liver_c[1] - 10, cel1[2] + 25])]
    spl_t = np.linspace(0, 1, 8)
    spl = np.stack([cel1[0] + spl_t * (spleen_c[0] - 15 - cel1[0]),
                    cel1[1] + spl_t * (spleen_c[1] - 10 - cel1[1]) + 6 * np.sin(spl_t * 9),
                    cel1[2] + 12 * spl_t + 4 * np.cos(spl_t * 7)], axis=1)
    return {"sma": np.array(sma), "coeliac": np.array([cel0, cel1]), "hepatic": np.array(hep), "splenic": spl}


def sample_branch_arteries(rng: np.random.Generator, levels: Levels, organs: Organs, aorta: Aorta,
                           vena_cava: VenaCava, iliacs: IliacArteries) -> BranchArteries:
    """Gut arteries, renal arteries to the hila (the right one behind the IVC), internal iliac
    stubs, and mesenteric (jejunal and ileal) arteries fanning out of the SMA into the mesentery."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf = FINE_Z
    r_branch = u(2.6, 3.4)
    branches = _sample_gut_arteries(rng, levels, organs, aorta)
    sma = branches["sma"]
    x_ivc, y_ivc, ry_ivc = vena_cava.x_line, vena_cava.y_line, vena_cava.radii[1]
    for side, name in ((1, "left"), (-1, "right")):
        zr = levels.z_renal + (u(0, 5) if side > 0 else 0.0)
        hil = organs.kidneys[name].hilum
        o = aorta.point(zr)
        mid = np.array([o[0] + side * (np.interp(zr, Zf, aorta.outer) + 12), o[1] + 6, zr - 4])
        if side < 0:
            mid = np.array([np.interp(zr, Zf, x_ivc), np.interp(zr, Zf, y_ivc) + ry_ivc + r_branch + 0.5, zr - 5])
        branches[f"renal_{name}"] = np.array([o, mid, hil])
    # internal iliac arteries: posterior, medial, caudal stubs
    for name in ("left", "right"):
        p0 = np.array(iliacs.sides[name].internal_origin)
        side = 1 if name == "left" else -1
        branches[f"internal_iliac_{name}"] = np.array([p0, p0 + [-side * 8, 18, -20], p0 + [-side * 10, 30, -45]])
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
    return BranchArteries(radius=r_branch, polylines=branches)


def sample_plaques(rng: np.random.Generator, levels: Levels, aorta: Aorta) -> list[dict[str, Any]]:
    """Calcified plaques in the wall (aorta between the renal arteries and the bifurcation, iliacs)."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    aneurysm, z_bif = levels.aneurysm, levels.z_bif
    n_plaques = int(rng.integers(8, 21) if aneurysm else rng.integers(0, 9))
    plaques = []
    for _ in range(n_plaques):
        where = rng.random()
        on = "aorta" if where < 0.8 else ("iliac_left" if where < 0.9 else "iliac_right")
        in_sac = aneurysm and where < 0.55
        zlo, zhi = ((aorta.z_sac_bottom, aorta.z_sac_top) if in_sac else (z_bif, levels.z_renal + 30)
                    if on == "aorta" else (z_bif - 90, z_bif - 5))
        plaques.append({"on": on, "z_mm": u(zlo, zhi), "angle_deg": u(0, 360), "arc_half_mm": u(3, 10),
                        "z_half_mm": u(3, 9), "thickness_mm": u(1.8, 3.2)})
    return plaques


def paint_branch_arteries(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    """Branch arteries over the soft tissues and veins; the mesenteric ones only in the mesenteric fat."""
    r_branch = layout.branches.radius
    for name, pts in layout.branches.polylines.items():
        if name.startswith("mesenteric"):  # small, and only in the mesenteric fat
            canvas.polyline(pts, np.linspace(0.6, 0.4, len(pts)) * r_branch, "branch_artery", over=("fat",),
                            clip=lambda b: body.in_cavity(b, 10.0))
            continue
        r = r_branch * (1.1 if name == "sma" else 0.9 if name in ("hepatic", "splenic") else 1.0)
        canvas.polyline(pts, r, "branch_artery",
                        over=("fat", "pancreas", "liver", "kidney_cortex", "kidney_medulla", "muscle", "vein",
                              "soft_tissue", "spleen"))


def paint_aorta_and_iliacs(canvas: Canvas, layout: AortaLayout) -> None:
    """Walls of the aorta and iliacs, the branches' origins through the wall, thrombus, lumen."""
    grid = canvas.grid
    parts = [(layout.aorta.tube, True)] + [(iliac.tube, False) for iliac in layout.iliacs.sides.values()]
    fields = [(t.box_and_fields(grid), is_aorta) for t, is_aorta in parts]
    for (box, f), _ in fields:
        if box is not None:
            canvas.paint(box, (f["d_outer"] < f["outer"][:, None, None]) & (f["outer"][:, None, None] > 0), "aortic_wall")
    for pts_name in ("renal_left", "renal_right", "sma", "coeliac"):
        canvas.polyline(layout.branches.polylines[pts_name], layout.branches.radius, "branch_artery",
                        over=("aortic_wall",))
    for (box, f), is_aorta in fields:
        if box is None:
            continue
        present = (f["outer"] > 0)[:, None, None]
        if is_aorta:
            canvas.paint(box, present & (f["d_outer"] < f["inner"][:, None, None]), "thrombus")
        canvas.paint(box, present & (f["d_lumen"] < f["lumen"][:, None, None]), "aortic_lumen")


def paint_plaques(canvas: Canvas, layout: AortaLayout) -> None:
    tubes = {"aorta": layout.aorta.tube, "iliac_left": layout.iliacs.sides["left"].tube,
             "iliac_right": layout.iliacs.sides["right"].tube}
    for plaque in layout.plaques:
        _paint_plaque(canvas, tubes[plaque["on"]], plaque)


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

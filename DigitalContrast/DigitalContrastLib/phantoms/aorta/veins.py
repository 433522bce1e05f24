"""The aorta patient's veins and pancreas: inferior vena cava with the iliac veins, portal system, renal veins.

The IVC is an ellipse per slice right of the aorta (pushed further right by a sac), in front of the
spine, moving forwards above the renal level; the iliac veins join it at the confluence below the
aortic bifurcation, following the iliac arteries behind them. The superior mesenteric vein runs
right of the SMA to the portal confluence; the portal vein goes up into the liver, where it splits
into right and left branches; the splenic vein runs to the spleen with the pancreas along it, in
front of the SMA. The renal veins join the IVC; the left one crosses between the SMA and the aorta.
"""

from __future__ import annotations

import numpy as np

from ..canvas import Canvas, SliceTube, smoothstep, uniform
from .layout import (
    FINE_Z,
    Aorta,
    AortaLayout,
    BranchArteries,
    IliacArteries,
    Levels,
    Organs,
    Spine,
    VenaCava,
    VisceralVeins,
)


def sample_vena_cava(rng: np.random.Generator, levels: Levels, spine: Spine, aorta: Aorta,
                     iliacs: IliacArteries) -> VenaCava:
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf, z_bif, z_renal = FINE_Z, levels.z_bif, levels.z_renal
    rx_ivc, ry_ivc = u(10, 13), u(7, 9.5)
    z_conf = z_bif - u(15, 30)
    x_ivc_base = -u(20, 28)
    x_ivc = np.minimum(x_ivc_base, aorta.cx - aorta.outer - rx_ivc - 2)  # pushed right by a sac
    y_ivc = spine.front(Zf) - ry_ivc - u(4, 7) - 18 * smoothstep((Zf - (z_renal + 30)) / 60.0)
    z_rv = z_renal - u(0, 8)  # renal veins join here
    ivc_valid = Zf >= z_conf
    ivc = SliceTube(Zf, x_ivc, y_ivc, np.where(ivc_valid, 1.0, 0.0), np.zeros_like(Zf), np.zeros_like(Zf),
                    np.zeros_like(Zf), np.zeros_like(Zf))
    x_conf, y_conf = float(np.interp(z_conf, Zf, x_ivc)), float(np.interp(z_conf, Zf, y_ivc))
    r_iv = u(6, 8)
    r_il = iliacs.lumen_radius
    iliac_veins = []
    for side, name in ((1, "left"), (-1, "right")):
        tube = iliacs.sides[name].tube
        blend = smoothstep((z_conf - Zf) / 35.0)
        xv = x_conf + blend * (tube.cx - side * 2 - x_conf)
        yv = y_conf + blend * (tube.cy + r_il + r_iv + 3 - y_conf)
        yv = np.minimum(yv, spine.front(Zf) - r_iv - 2 + 40 * smoothstep((levels.z_s1 - 10 - Zf) / 40.0))
        iliac_veins.append(SliceTube(Zf, xv, yv, np.where(Zf <= z_conf + 4, r_iv, 0.0), np.zeros_like(Zf),
                                     np.zeros_like(Zf), np.zeros_like(Zf), np.zeros_like(Zf)))
    return VenaCava(radii=(rx_ivc, ry_ivc), z_confluence=z_conf, z_renal_veins=z_rv, x_line=x_ivc, y_line=y_ivc,
                    tube=ivc, iliac_vein_radius=r_iv, iliac_veins=iliac_veins)


def sample_visceral_veins(rng: np.random.Generator, levels: Levels, organs: Organs, aorta: Aorta,
                          vena_cava: VenaCava, branches: BranchArteries) -> VisceralVeins:
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf, z_sma, z_rv = FINE_Z, levels.z_sma, vena_cava.z_renal_veins
    liver_c, spleen_c, left_lobe_c = organs.liver_center, organs.spleen_center, organs.left_lobe_center
    sma = branches.polylines["sma"]
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
    x_ivc, y_ivc = vena_cava.x_line, vena_cava.y_line
    for side, name in ((1, "left"), (-1, "right")):
        hil = organs.kidneys[name].hilum + [0, -6, 0]
        join = np.array([np.interp(z_rv, Zf, x_ivc), np.interp(z_rv, Zf, y_ivc), z_rv])
        if side > 0:  # left renal vein: between the SMA and the aorta
            mid = np.array([np.interp(z_rv, Zf, aorta.cx), aorta.front_y(z_rv) - 6, z_rv + 2])
            veins["renal_vein_left"] = np.array([hil, [hil[0] - 20, hil[1] - 10, z_rv + 4], mid, join])
        else:
            veins["renal_vein_right"] = np.array([hil, join])
    # pancreas along the splenic vein, in front of the SMA
    panc = np.array([[conf[0] - 35, conf[1] - 12, z_sma - 25], [conf[0] - 5, conf[1] - 14, conf[2]],
                     [conf[0] + 30, conf[1] - 2, conf[2] + 10], [spleen_c[0] - 25, spleen_c[1] - 20, conf[2] + 25]])
    panc_radii = [u(13, 17), 11, u(9, 12), u(7, 9)]
    r_vein = u(5, 7)
    return VisceralVeins(polylines=veins, radius=r_vein, pancreas=panc, pancreas_radii=panc_radii)


def paint_vena_cava(canvas: Canvas, layout: AortaLayout) -> None:
    """The IVC (an ellipse per slice) and the iliac veins."""
    grid = canvas.grid
    vena_cava = layout.vena_cava
    rx_ivc, ry_ivc = vena_cava.radii
    box, f = vena_cava.tube.box_and_fields(grid, margin=rx_ivc + 1)
    if box is not None:
        m = ((f["dx"] / rx_ivc) ** 2 + (f["dy"] / ry_ivc) ** 2 <= 1) & (f["outer"][:, None, None] > 0)
        canvas.paint(box, m, "vena_cava")
    for vt in vena_cava.iliac_veins:
        box, f = vt.box_and_fields(grid)
        if box is not None:
            canvas.paint(box, (f["d_outer"] < f["outer"][:, None, None]), "vena_cava")


def paint_pancreas_and_visceral_veins(canvas: Canvas, layout: AortaLayout) -> None:
    """The pancreas, then the veins over it and the soft tissues (arteries are painted over them)."""
    veins = layout.visceral_veins
    canvas.polyline(veins.pancreas, veins.pancreas_radii, "pancreas", over=("fat", "bowel", "liver"))
    r_vein = veins.radius
    for name, pts in veins.polylines.items():
        canvas.polyline(pts, r_vein * (0.75 if "renal" in name else 0.6 if "portal_" in name else 1.0), "vein",
                        over=("fat", "pancreas", "liver", "kidney_cortex", "kidney_medulla", "muscle"))

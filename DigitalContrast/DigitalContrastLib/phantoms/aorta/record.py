"""What ``phantom.json`` records of an aorta patient: every sampled value, and the aorta slice by slice.

The keys (and their order) are part of the phantom's files: ``levels_z_mm``, ``body``, ``spine``,
``muscles``, ``pelvis``, the organs, ``ribs``, ``vena_cava``, ``chest`` (with ``periaortic``),
``aorta``, ``aneurysm``, ``calcified_plaques``, ``bowel``, ``branches_mm``, ``veins_mm`` and
``aorta_per_slice`` (the ground truth on the grid: centre, outer and lumen diameter per slice).
Lengths and positions are LPS millimetres.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..canvas import Grid, SliceTube
from .body import psoas_radius
from .bowel import bowel_params
from .chest import chest_params, periaortic_params
from .layout import ANEURYSM_PROBABILITY, FINE_Z, AortaLayout


def _ellipsoid(center, radii) -> dict[str, list[float]]:
    return {"center_mm": list(center), "radii_mm": list(radii)}


def _trunk_params(layout: AortaLayout, grid: Grid) -> dict[str, Any]:
    """Levels, body, spine, muscles, pelvis, organs and ribs."""
    lv, body, spine, vert, pelvis, o = (layout.levels, layout.body, layout.spine, layout.vertebrae, layout.pelvis,
                                        layout.organs)
    x_head, y_head, z_head = pelvis.head_center
    kidneys = {name: {"center_mm": k.center.tolist(), "long_axis": k.axes[0].tolist(),
                      "hilum_direction": k.axes[1].tolist(), "radii_mm": k.radii.tolist(), "hilum_mm": k.hilum.tolist()}
               for name, k in o.kidneys.items()}
    return {
        "levels_z_mm": {"aortic_bifurcation": lv.z_bif, "renal_arteries": lv.z_renal, "sma_origin": lv.z_sma,
                        "coeliac_origin": lv.z_celiac, "diaphragm_dome_right": lv.z_dome_right,
                        "diaphragm_dome_left": lv.z_dome_left},
        "body": {"half_width_mm": body.half_width, "anterior_half_depth_mm": body.front_half_depth,
                 "posterior_half_depth_mm": body.back_half_depth, "subcutaneous_fat_mm": body.fat,
                 "abdominal_wall_muscle_mm": body.wall_muscle, "squareness": body.squareness},
        "spine": {"pitch_mm": lv.pitch, "disc_height_mm": spine.disc_height, "lordosis_mm": spine.lordosis,
                  "vertebral_half_width_l4_mm": spine.body_half_width,
                  "vertebral_half_depth_l4_mm": spine.body_half_depth, "cortical_shell_mm": spine.shell,
                  "y_l3_mm": float(np.interp(lv.z_l3, FINE_Z, spine.y_line)),
                  "levels_z_mm": {lvl: zc for lvl, zc, _, _ in vert.levels}, "canal_radii_mm": list(vert.canal_radii)},
        "muscles": {"psoas_max_radius_mm": float(psoas_radius(lv, layout.muscles, grid.z).max()),
                    "erector_spinae_width_mm": layout.muscles.erector_width},
        "pelvis": {"iliac_crest_z_mm": pelvis.z_crest, "wing_angle_deg": pelvis.wing_angle,
                   "wing_radius_mm": pelvis.wing_radius, "sciatic_notch_z_mm": pelvis.z_notch,
                   "femoral_head_radius_mm": pelvis.head_radius,
                   "femoral_heads_center_mm": [[-x_head, y_head, z_head], [x_head, y_head, z_head]]},
        "liver": {**_ellipsoid(o.liver_center, o.liver_radii), "left_lobe_center_mm": list(o.left_lobe_center),
                  "left_lobe_radii_mm": list(o.left_lobe_radii)},
        "gallbladder": _ellipsoid(o.gallbladder_center, o.gallbladder_radii),
        "spleen": {**_ellipsoid(o.spleen_center, o.spleen_radii), "rotation_deg": math.degrees(o.spleen_angle)},
        "stomach": {**_ellipsoid(o.stomach_center, o.stomach_radii), "air_fluid_level_y_mm": o.gas_level_y},
        "kidneys": {**kidneys, "cortex_thickness_mm": o.cortex, "pyramids": o.pyramids},
        "bladder": _ellipsoid(o.bladder_center, o.bladder_radii),
        "ribs": {"radius_mm": layout.ribs.radius,
                 "ribs": [lvl + ("L" if side > 0 else "R") for lvl, _, _, _ in layout.ribs.ribs for side in (-1, 1)]},
    }


def _vessel_params(layout: AortaLayout) -> dict[str, Any]:
    """Aorta and iliacs, the aneurysm, plaques, bowel, branch arteries and visceral veins."""
    aorta, aneurysm = layout.aorta, layout.levels.aneurysm
    iliacs = {name: {"angle_deg": il.angle_deg, "common_length_mm": il.common_length,
                     "internal_origin_mm": il.internal_origin} for name, il in layout.iliacs.sides.items()}
    return {
        "aorta": {
            "diameter_top_mm": aorta.diameter_top, "diameter_bifurcation_mm": aorta.diameter_bif,
            "wall_mm": aorta.wall, "x_top_mm": aorta.x_top, "x_bifurcation_mm": aorta.x_low,
            "gap_to_spine_mm": aorta.gap_to_spine, "sac_side_bulge": aorta.side_bulge,
            "branch_radius_mm": layout.branches.radius, "iliac_lumen_radius_mm": layout.iliacs.lumen_radius,
            "iliacs": iliacs, "max_outer_diameter_mm": float(2 * aorta.outer.max()),
        },
        "aneurysm": {
            "probability": ANEURYSM_PROBABILITY, "present": aneurysm,
            "max_diameter_mm": layout.levels.sac_diameter if aneurysm else None,
            "neck_length_mm": aorta.neck, "z_top_mm": aorta.z_sac_top, "z_bottom_mm": aorta.z_sac_bottom,
            "z_widest_mm": aorta.z_sac_widest,
            "thrombus_burden": aorta.thrombus_burden if aneurysm else 0.0,
            "thrombus_eccentricity": aorta.thrombus_eccentricity,
            "lumen_offset_angle_deg": math.degrees(aorta.lumen_angle) if aneurysm else None,
            "angle_convention": "in-plane angle of the lumen centre from the sac centre: 0 = +x (patient left), 90 = +y (posterior)",
        },
        "calcified_plaques": layout.plaques,
        "bowel": bowel_params(layout.bowel),
        "branches_mm": {k: np.round(v, 2).tolist() for k, v in layout.branches.polylines.items()},
        "veins_mm": {k: np.round(v, 2).tolist() for k, v in layout.visceral_veins.polylines.items()},
    }


def aorta_per_slice(tube: SliceTube, grid: Grid) -> dict[str, list]:
    """The aorta on every grid slice it crosses: z index, centre and lumen centre (LPS mm), outer and lumen diameter (mm)."""
    gz = grid.z
    f = tube.at(gz)
    present = f["outer"] > 0
    return {
        "z_index": np.nonzero(present)[0].tolist(),
        "center_lps_mm": np.round(np.stack([f["cx"], f["cy"], gz], 1)[present], 3).tolist(),
        "outer_diameter_mm": np.round(2 * f["outer"][present], 3).tolist(),
        "lumen_diameter_mm": np.round(2 * f["lumen"][present], 3).tolist(),
        "lumen_center_lps_mm": np.round(np.stack([f["cx"] + f["lumen_dx"], f["cy"] + f["lumen_dy"], gz], 1)[present], 3).tolist(),
    }


def patient_params(layout: AortaLayout, grid: Grid) -> dict[str, Any]:
    """Every sampled value of the patient, and the aorta per slice of ``grid`` (JSON-able after rounding)."""
    vena_cava = layout.vena_cava
    params = _trunk_params(layout, grid)
    params["vena_cava"] = {"radii_mm": list(vena_cava.radii), "confluence_z_mm": vena_cava.z_confluence,
                           "renal_veins_z_mm": vena_cava.z_renal_veins,
                           "iliac_vein_radius_mm": vena_cava.iliac_vein_radius}
    params["chest"] = {**chest_params(layout.chest), "periaortic": periaortic_params(layout.periaortic)}
    params.update(_vessel_params(layout))
    params["aorta_per_slice"] = aorta_per_slice(layout.aorta.tube, grid)
    return params

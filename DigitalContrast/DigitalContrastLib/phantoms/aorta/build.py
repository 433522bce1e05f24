"""The aorta IFU's phantom builder: sample one patient from a seed, paint it on the grid, record it.

:func:`sample_layout` draws every random value of the patient into an
:class:`~.layout.AortaLayout`, from four streams seeded by ``(seed, k)``: ``k = 1`` the abdomen
(levels, body, spine, muscles, pelvis, organs, vertebrae, ribs, aorta, iliac arteries, vena cava,
branch arteries, visceral veins, plaques, in that order), ``k = 5`` the bowel, ``k = 7`` the chest
(first the arch's level and the thoracic aorta's widening, then the chest itself), ``k = 8`` the
thoracic aorta's surroundings; ``k = 2`` draws the HU tables. :func:`build_aorta` then paints the
layout top to bottom, later paint winning. The order of the draws and of the painting is part of
:data:`~DigitalContrastLib.phantoms.generator.GENERATOR_VERSION`: changing either changes the phantoms.
"""

from __future__ import annotations

import numpy as np

from ..anatomy import Anatomy
from ..canvas import Canvas, Grid, smoothstep, uniform
from ..hu_tables import sample_hu_tables
from .arteries import (
    paint_aorta_and_iliacs,
    paint_branch_arteries,
    paint_plaques,
    sample_aorta,
    sample_branch_arteries,
    sample_iliacs,
    sample_plaques,
)
from .body import paint_body, paint_diaphragm, paint_trunk_muscles, sample_body, sample_muscles
from .bowel import paint_bowel, sample_bowel
from .chest import paint_chest, paint_periaortic, sample_chest, sample_periaortic
from .layout import ANEURYSM_PROBABILITY, AortaLayout, Levels
from .organs import paint_abdominal_organs, sample_organs
from .record import patient_params
from .skeleton import (
    paint_lower_ribs,
    paint_pelvis,
    paint_spine,
    sample_pelvis,
    sample_ribs,
    sample_spine,
    sample_vertebrae,
)
from .veins import paint_pancreas_and_visceral_veins, paint_vena_cava, sample_vena_cava, sample_visceral_veins


def sample_levels(rng: np.random.Generator) -> Levels:
    """The landmarks along z (LPS mm), and the aneurysm (present with :data:`~.layout.ANEURYSM_PROBABILITY`)."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
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
    return Levels(z_bif=z_bif, pitch=pitch, aneurysm=aneurysm, sac_diameter=d_max, z_renal=z_renal, z_sma=z_sma,
                  z_celiac=z_celiac, z_dome_right=z_dome_right, z_dome_left=z_dome_left)


def sample_layout(seed: int) -> AortaLayout:
    """One patient: every random value, grid independent (LPS mm)."""
    rng = np.random.default_rng([int(seed), 1])
    # the chest: its own random stream, so the abdomen's draws stay as they were
    rng_chest = np.random.default_rng([int(seed), 7])
    levels = sample_levels(rng)
    body = sample_body(rng, levels)
    spine = sample_spine(rng, levels, body)
    muscles = sample_muscles(rng)
    pelvis = sample_pelvis(rng, levels, body)
    organs = sample_organs(rng, levels, spine)
    vertebrae = sample_vertebrae(rng, levels, spine)
    ribs = sample_ribs(rng, levels, body)
    aorta = sample_aorta(rng, rng_chest, levels, spine)
    iliacs = sample_iliacs(rng, levels, aorta)
    vena_cava = sample_vena_cava(rng, levels, spine, aorta, iliacs)
    branches = sample_branch_arteries(rng, levels, organs, aorta, vena_cava, iliacs)
    visceral_veins = sample_visceral_veins(rng, levels, organs, aorta, vena_cava, branches)
    plaques = sample_plaques(rng, levels, aorta)
    bowel = sample_bowel(np.random.default_rng([int(seed), 5]), levels, spine)
    chest = sample_chest(rng_chest, levels, body, spine, aorta)
    periaortic = sample_periaortic(np.random.default_rng([int(seed), 8]))
    return AortaLayout(
        levels=levels, body=body, spine=spine, muscles=muscles, pelvis=pelvis, organs=organs, vertebrae=vertebrae,
        ribs=ribs, aorta=aorta, iliacs=iliacs, vena_cava=vena_cava, branches=branches, visceral_veins=visceral_veins,
        plaques=plaques, bowel=bowel, chest=chest, periaortic=periaortic,
    )


def paint_layout(canvas: Canvas, layout: AortaLayout) -> None:
    """The label map of ``layout`` on the canvas, top to bottom (later paint wins)."""
    body = paint_body(canvas, layout.body)
    paint_trunk_muscles(canvas, layout, body)
    paint_pelvis(canvas, layout, body)
    paint_diaphragm(canvas, layout, body)
    paint_abdominal_organs(canvas, layout, body)
    paint_spine(canvas, layout)
    paint_lower_ribs(canvas, layout)
    paint_vena_cava(canvas, layout)
    paint_pancreas_and_visceral_veins(canvas, layout)
    paint_branch_arteries(canvas, layout, body)
    paint_aorta_and_iliacs(canvas, layout)
    paint_plaques(canvas, layout)
    paint_bowel(canvas, layout, body)
    # the chest above the right dome, then the thoracic aorta's surroundings
    paint_chest(canvas, layout, body)
    paint_periaortic(canvas, layout, body)


def focus_index(layout: AortaLayout, grid: Grid) -> tuple[int, int, int]:
    """Where a preview should look (z, y, x voxel indices).

    The widest aortic slice in the field of view (infrarenal) and the coronal plane through its
    flowing lumen; in a field of view centred in the chest, the slice that cuts the ascending and the
    descending aorta, and the coronal plane through the ascending aorta (heart, aortic root, arch).
    """
    gz = grid.z
    f = layout.aorta.tube.at(gz)
    present = f["outer"] > 0
    infrarenal = present & (gz < layout.levels.z_renal)
    cand = infrarenal if infrarenal.any() else present
    if grid.center[2] > layout.chest.z_start:
        zi = int(np.argmin(np.abs(gz - (layout.chest.z_arch - 25.0))))
        x_asc, y_asc = layout.chest.arch.top.tolist()[:2]
        yi = int(np.clip(round((y_asc - grid.origin[1]) / grid.spacing[1]), 0, grid.shape_zyx[1] - 1))
        xi = int(np.clip(round((x_asc - grid.origin[0]) / grid.spacing[0]), 0, grid.shape_zyx[2] - 1))
        return (zi, yi, xi)
    if cand.any():
        zi = int(np.argmax(np.where(cand, f["outer"], -1)))
        # coronal plane: through the flowing lumen of the infrarenal aorta (median over its slices)
        y_lumen = float(np.median((f["cy"] + f["lumen_dy"])[cand]))
        x_lumen = float(f["cx"][zi] + f["lumen_dx"][zi])
        yi = int(np.clip(round((y_lumen - grid.origin[1]) / grid.spacing[1]), 0, grid.shape_zyx[1] - 1))
        xi = int(np.clip(round((x_lumen - grid.origin[0]) / grid.spacing[0]), 0, grid.shape_zyx[2] - 1))
        return (zi, yi, xi)
    return (len(gz) // 2, grid.shape_zyx[1] // 2, grid.shape_zyx[2] // 2)


def contrast_z_offsets(layout: AortaLayout, grid: Grid, extras: dict[str, float]) -> dict[str, np.ndarray]:
    """Contrast levels that vary with z (HU per grid slice): the lumen gradient along the aorta
    (arteries too) and the caval mixing above the renal veins."""
    gz = grid.z
    u_along = np.clip((gz - (layout.levels.z_bif - 150)) / 400.0, 0, 1)
    sign = extras["lumen_gradient_sign"]
    lumen_z = extras["lumen_contrast_mid_hu"] * extras["lumen_gradient_fraction"] * sign * (u_along - 0.5)
    caval = extras["caval_mixing_above_renal_veins_hu"] * smoothstep((gz - layout.vena_cava.z_renal_veins) / 20.0)
    return {"aortic_lumen": lumen_z, "branch_artery": lumen_z, "vena_cava": caval}


def build_aorta(seed: int, grid: Grid) -> Anatomy:
    """Abdominal CT at the aortic level: body, spine, organs, bowel, aorta with optional AAA, and the chest.

    ``grid`` is re-centred in-plane on the body (halfway between the front of the abdomen and the
    flat back); its z centre is kept.
    """
    layout = sample_layout(seed)
    grid = grid.centered_at((0.0, layout.body.grid_center_y, grid.center[2]))
    canvas = Canvas(grid)
    paint_layout(canvas, layout)
    params = patient_params(layout, grid)
    nc, c, extras = sample_hu_tables(np.random.default_rng([int(seed), 2]))
    params["hu_extras"] = extras
    return Anatomy(grid, canvas.labels, nc, c, contrast_z_offsets(layout, grid, extras), params,
                   focus_index(layout, grid))

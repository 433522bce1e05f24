"""The per-case HU tables: each label's noise-free level in the non-contrast and the arterial-phase scan.

One label map, two tables: :func:`sample_hu_tables` draws both for a case (plus the contrast levels
that vary with z), :data:`HU_RANGES` documents the range of every label's level. Label codes:
:data:`~DigitalContrastLib.ct.labels.LABELS`.

HU tables (per-case values drawn uniformly in these ranges; ``HU_RANGES``)
========================================================================

Values are the noise-free level of a label, before blur and noise. "blood" is the case's
unenhanced blood level, U(30, 50) HU, shared by the aortic lumen, branch arteries and veins.

==================  ====================  ===================================================
label               non-contrast (HU)     arterial phase (HU)
==================  ====================  ===================================================
outside             -1000                 -1000
soft_tissue         20 ... 40             NC + 0 ... 10
fat                 -120 ... -80          NC + 0 ... 6 (at most -80)
muscle              35 ... 55             50 ... 70 (at least NC + 5)
cortical_bone       750 ... 1800          NC + 0 ... 15
bone_marrow         200 ... 300           NC + 5 ... 25
liver               50 ... 65             60 ... 80 (at least NC + 5)
kidney_cortex       30 ... 40             150 ... 200
kidney_medulla      cortex - 2 ... 5      70 ... 110
vena_cava           blood +- 3            NC + 5 ... 15 below the renal veins (unenhanced);
                                          above them + 30 ... 80 (enhanced renal return)
aortic_lumen        blood (30 ... 50)     250 ... 450 at every level: mid value L with a
                                          craniocaudal gradient of g = 0 ... 15 % across the
                                          aorta, L (1 + g (u - 1/2)), u = 0 ... 1 along it
thrombus            blood - 6 ... 12      NC + 5 ... 20, clipped to 40 ... 90 (no enhancement)
calcification       300 ... 1200          the same value
aortic_wall         40 ... 50             NC + 10 ... 30
branch_artery       blood                 as the aortic lumen at the same level
bowel_gas           -1000 ... -900        the same value
bowel               10 ... 35             NC + 5 ... 20
spleen              40 ... 50             90 ... 130
lung                -910 ... -850         NC + 0 ... 20
disc                70 ... 100            NC + 0 ... 10
vein                blood +- 3            NC + 30 ... 90
pancreas            35 ... 50             100 ... 140
fluid               0 ... 15              NC + 0 ... 5
myocardium          35 ... 50             90 ... 130
heart_left          blood                 the case's aortic mid level + 0 ... 30
pulmonary_artery    blood                 180 ... 450
heart_right         blood                 pulmonary artery - 60 ... + 20, clipped to 120 ... 400
==================  ====================  ===================================================
"""

from __future__ import annotations

import numpy as np

from .canvas import uniform

#: Documented range of each label's noise-free level: ``name -> ((nc_lo, nc_hi), (c_lo, c_hi))``.
#: The vena cava's contrast range is the unenhanced part below the renal veins.
HU_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "outside": ((-1000, -1000), (-1000, -1000)),
    "soft_tissue": ((20, 40), (20, 50)),
    "fat": ((-120, -80), (-120, -80)),
    "muscle": ((35, 55), (50, 70)),
    "cortical_bone": ((750, 1800), (750, 1815)),
    "bone_marrow": ((200, 300), (205, 325)),
    "liver": ((50, 65), (60, 80)),
    "kidney_cortex": ((30, 40), (150, 200)),
    "kidney_medulla": ((25, 38), (70, 110)),
    "vena_cava": ((27, 53), (32, 68)),
    "aortic_lumen": ((30, 50), (250, 450)),
    "thrombus": ((18, 44), (40, 64)),
    "calcification": ((300, 1200), (300, 1200)),
    "aortic_wall": ((40, 50), (50, 80)),
    "branch_artery": ((30, 50), (250, 450)),
    "bowel_gas": ((-1000, -900), (-1000, -900)),
    "bowel": ((10, 35), (15, 55)),
    "spleen": ((40, 50), (90, 130)),
    "lung": ((-910, -850), (-910, -830)),
    "disc": ((70, 100), (70, 110)),
    "vein": ((27, 53), (57, 143)),
    "pancreas": ((35, 50), (100, 140)),
    "fluid": ((0, 15), (0, 20)),
    "myocardium": ((35, 50), (90, 130)),
    "heart_left": ((30, 50), (250, 480)),
    "heart_right": ((30, 50), (120, 400)),
    "pulmonary_artery": ((30, 50), (180, 450)),
}


# ============================================================================ HU tables, IFU registry
def sample_hu_tables(rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per-case noise-free levels (HU) for both phases, and the z-varying extras."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    blood = u(30, 50)
    nc: dict[str, float] = {"outside": -1000.0}
    c: dict[str, float] = {"outside": -1000.0}
    nc["soft_tissue"] = u(20, 40)
    c["soft_tissue"] = nc["soft_tissue"] + u(0, 10)
    nc["fat"] = u(-120, -80)
    c["fat"] = min(nc["fat"] + u(0, 6), -80.0)
    nc["muscle"] = u(35, 55)
    c["muscle"] = max(u(50, 70), nc["muscle"] + 5)
    nc["cortical_bone"] = u(750, 1800)
    c["cortical_bone"] = nc["cortical_bone"] + u(0, 15)
    nc["bone_marrow"] = u(200, 300)
    c["bone_marrow"] = nc["bone_marrow"] + u(5, 25)
    nc["liver"] = u(50, 65)
    c["liver"] = max(u(60, 80), nc["liver"] + 5)
    nc["kidney_cortex"] = u(30, 40)
    c["kidney_cortex"] = u(150, 200)
    nc["kidney_medulla"] = nc["kidney_cortex"] - u(2, 5)
    c["kidney_medulla"] = u(70, 110)
    nc["vena_cava"] = blood + u(-3, 3)
    c["vena_cava"] = nc["vena_cava"] + u(5, 15)
    gradient = u(0, 0.15)
    lumen_mid = u(250 * (1 + gradient / 2), 450 * (1 - gradient / 2))
    nc["aortic_lumen"] = blood
    c["aortic_lumen"] = lumen_mid
    thrombus_delta = u(6, 12)
    nc["thrombus"] = blood - thrombus_delta
    c["thrombus"] = float(np.clip(nc["thrombus"] + u(5, 20), 40, 90))
    nc["calcification"] = c["calcification"] = u(300, 1200)
    nc["aortic_wall"] = u(40, 50)
    c["aortic_wall"] = nc["aortic_wall"] + u(10, 30)
    nc["branch_artery"] = blood
    c["branch_artery"] = lumen_mid
    nc["bowel_gas"] = c["bowel_gas"] = u(-1000, -900)
    nc["bowel"] = u(10, 35)
    c["bowel"] = nc["bowel"] + u(5, 20)
    nc["spleen"] = u(40, 50)
    c["spleen"] = u(90, 130)
    nc["lung"] = u(-910, -850)
    c["lung"] = nc["lung"] + u(0, 20)
    nc["disc"] = u(70, 100)
    c["disc"] = nc["disc"] + u(0, 10)
    nc["vein"] = blood + u(-3, 3)
    c["vein"] = nc["vein"] + u(30, 90)
    nc["pancreas"] = u(35, 50)
    c["pancreas"] = u(100, 140)
    nc["fluid"] = u(0, 15)
    c["fluid"] = nc["fluid"] + u(0, 5)
    extras = {
        "blood_hu": blood,
        "thrombus_below_blood_hu": thrombus_delta,
        "lumen_contrast_mid_hu": lumen_mid,
        "lumen_gradient_fraction": gradient,
        # +1: brighter cranially (the usual early-arterial picture), -1: brighter caudally
        "lumen_gradient_sign": float(1.0 if rng.random() < 0.7 else -1.0),
        "caval_mixing_above_renal_veins_hu": u(30, 80),
    }
    # the chest (drawn after everything else so that the abdomen's levels stay as they were)
    nc["myocardium"] = u(35, 50)
    c["myocardium"] = u(90, 130)
    nc["heart_left"] = nc["heart_right"] = nc["pulmonary_artery"] = blood
    c["heart_left"] = lumen_mid + u(0, 30)
    c["pulmonary_artery"] = u(180, 450)
    c["heart_right"] = float(np.clip(c["pulmonary_artery"] + u(-60, 20), 120, 400))
    return nc, c, extras

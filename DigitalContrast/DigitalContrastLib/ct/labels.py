"""The label codes of a paired case's label map (``labels.nrrd``), defined once.

The phantom generator paints these codes; the metrics, the training loss, the cohort evaluation and
the previews read them. A site's own cases (enhancement masks) use the same file layout.

Label codes (``LABELS``; int16 on disk; everything inside the body is > 0)
=========================================================================

====  ==================  ==================================================================
code  name                what it is
====  ==================  ==================================================================
0     outside             air outside the body
1     soft_tissue         other soft tissue: skin, spinal canal contents
2     fat                 subcutaneous, visceral and retroperitoneal fat, renal sinus fat
3     muscle              abdominal wall, paraspinal, psoas, quadratus, iliacus, gluteal, diaphragm
4     cortical_bone       cortical shell of vertebrae, ribs, sacrum and pelvis
5     bone_marrow         cancellous bone inside the shells
6     liver               liver
7     kidney_cortex       renal cortex and columns of Bertin
8     kidney_medulla      renal pyramids
9     vena_cava           inferior vena cava and common iliac veins
10    aortic_lumen        flowing lumen of the aorta and the common and external iliac arteries
11    thrombus            intraluminal thrombus of the aneurysm sac (eccentric crescent)
12    calcification       calcified plaques in the aortic and iliac wall
13    aortic_wall         wall of the aorta and the iliac arteries
14    branch_artery       renal arteries, superior mesenteric, coeliac trunk and its branches,
                          internal iliac arteries (lumen)
15    bowel_gas           gas in the stomach, small bowel and colon
16    bowel               bowel wall and content (stomach, small bowel, colon)
17    spleen              spleen
18    lung                lungs (bases in the abdominal field of view)
19    disc                intervertebral discs
20    vein                portal, superior mesenteric, splenic and renal veins
21    pancreas            pancreas
22    fluid               water-like fluid: urine (bladder, renal pelvis), bile (gallbladder)
23    myocardium          heart muscle (ventricular and atrial walls, septum)
24    heart_left          blood in the left atrium and ventricle
25    heart_right         blood in the right atrium and ventricle
26    pulmonary_artery    pulmonary trunk, left and right pulmonary arteries and their branches
                          in the lungs (lumen)
====  ==================  ==================================================================
"""

from __future__ import annotations

#: Tissue name -> code in the label map (int16 on disk).
LABELS: dict[str, int] = {
    "outside": 0,
    "soft_tissue": 1,
    "fat": 2,
    "muscle": 3,
    "cortical_bone": 4,
    "bone_marrow": 5,
    "liver": 6,
    "kidney_cortex": 7,
    "kidney_medulla": 8,
    "vena_cava": 9,
    "aortic_lumen": 10,
    "thrombus": 11,
    "calcification": 12,
    "aortic_wall": 13,
    "branch_artery": 14,
    "bowel_gas": 15,
    "bowel": 16,
    "spleen": 17,
    "lung": 18,
    "disc": 19,
    "vein": 20,
    "pancreas": 21,
    "fluid": 22,
    "myocardium": 23,
    "heart_left": 24,
    "heart_right": 25,
    "pulmonary_artery": 26,
}


#: Display colours (RGB) of the labels, for previews and legends.
LABEL_COLORS: dict[int, tuple[int, int, int]] = {
    0: (0, 0, 0),
    1: (190, 160, 150),
    2: (240, 220, 140),
    3: (200, 95, 95),
    4: (255, 255, 255),
    5: (205, 185, 155),
    6: (140, 70, 30),
    7: (255, 150, 40),
    8: (150, 40, 130),
    9: (30, 60, 210),
    10: (255, 0, 0),
    11: (255, 215, 0),
    12: (0, 255, 255),
    13: (255, 105, 180),
    14: (255, 110, 60),
    15: (60, 60, 60),
    16: (110, 165, 80),
    17: (120, 60, 180),
    18: (70, 95, 140),
    19: (80, 200, 190),
    20: (110, 150, 255),
    21: (235, 175, 205),
    22: (40, 190, 255),
    23: (170, 40, 60),
    24: (255, 60, 120),
    25: (90, 120, 230),
    26: (60, 90, 255),
}


#: Codes of a prepared case's enhancement mask (``enhancement.nrrd``, uint8), made from the registered
#: pair where no hand labels exist: ``vessel`` is enhanced blood (a strong rise to lumen-like HU),
#: ``enhancing_tissue`` any other enhancement (organs, veins, partial-volume rims).
ENHANCEMENT_CODES: dict[str, int] = {"none": 0, "vessel": 1, "enhancing_tissue": 2}


#: The regions the clinical ROI metrics score, by their names there -> code in :data:`LABELS`.
LABEL_CODES: dict[str, int] = {
    "outside": LABELS["outside"],
    "lumen": LABELS["aortic_lumen"],
    "thrombus": LABELS["thrombus"],
    "calcification": LABELS["calcification"],
    "wall": LABELS["aortic_wall"],
}

"""Ready-made questions: grading criteria per intended use (IFU) and the default questions of
the Turing, preference and detection tasks.

Every template is plain study-file data (the same dictionaries a study YAML would hold), so it
goes through the same validation as hand-written questions. Likert levels are anchored: every
level of every scale has its own label, 1 = worst, 5 = best.
"""

from __future__ import annotations

import copy

IFUS = ("aorta", "pulmonary", "neck-brain", "limb", "coronary")

#: Anatomy named in the generic criteria of each IFU.
_VESSELS = {
    "aorta": "the aorta",
    "pulmonary": "the pulmonary arteries",
    "neck-brain": "the neck and brain arteries",
    "limb": "the limb arteries",
    "coronary": "the coronary arteries",
}


def _levels(*labels: str) -> list[dict]:
    return [{"value": i + 1, "label": label} for i, label in enumerate(labels)]


def _likert(key: str, text: str, *labels: str) -> dict:
    assert len(labels) == 5, key
    return {"key": key, "type": "likert", "text": text, "required": True, "levels": _levels(*labels)}


def _conspicuity(key: str, what: str) -> dict:
    return _likert(
        key,
        f"Conspicuity of {what}",
        "Not visible: lumen not distinguishable from the vessel wall",
        "Poor: lumen faintly seen, not assessable",
        "Fair: lumen seen, assessment limited",
        "Good: lumen clearly seen, minor limitations",
        "Excellent: lumen sharply seen throughout",
    )


def _edge_sharpness(vessels: str) -> dict:
    return _likert(
        "edge_sharpness",
        f"Sharpness of the vessel edges of {vessels}",
        "Edges not identifiable",
        "Markedly blurred edges",
        "Moderately blurred edges",
        "Slightly blurred edges",
        "Sharp edges",
    )


def _noise_artefacts() -> dict:
    return _likert(
        "noise_artefacts",
        "Image noise and artefacts",
        "Severe: image non-diagnostic",
        "Marked: diagnosis impaired",
        "Moderate: diagnosis possible with effort",
        "Mild: no effect on diagnosis",
        "None or negligible",
    )


def _overall(vessels: str) -> dict:
    return _likert(
        "overall_confidence",
        f"Overall diagnostic confidence for assessing {vessels}",
        "No confidence: non-diagnostic",
        "Low confidence",
        "Moderate confidence",
        "High confidence",
        "Full confidence",
    )


def _tail() -> list[dict]:
    return [
        {
            "key": "non_diagnostic",
            "type": "yes_no",
            "text": "Is this image non-diagnostic for the intended use?",
            "required": True,
        },
        {"key": "comment", "type": "text", "text": "Comments (optional)", "required": False, "max_length": 2000},
    ]


def _specific(ifu: str) -> list[dict]:
    if ifu == "aorta":
        return [
            _conspicuity("lumen_conspicuity", "the aortic lumen"),
            _edge_sharpness("the aorta and its branch ostia"),
            _likert(
                "thrombus_delineation",
                "Delineation of mural thrombus, intimal flap or plaque from the lumen",
                "Not delineated",
                "Poorly delineated",
                "Partly delineated",
                "Well delineated",
                "Sharply delineated throughout",
            ),
            _conspicuity("branch_conspicuity", "the major aortic branches (supra-aortic, coeliac, mesenteric, renal)"),
        ]
    if ifu == "pulmonary":
        return [
            _conspicuity("central_conspicuity", "the main and lobar pulmonary arteries"),
            _conspicuity("segmental_conspicuity", "the segmental pulmonary arteries"),
            _conspicuity("subsegmental_conspicuity", "the subsegmental pulmonary arteries"),
            _edge_sharpness("the pulmonary arteries"),
        ]
    if ifu == "neck-brain":
        return [
            _conspicuity("cervical_conspicuity", "the carotid and vertebral arteries"),
            _conspicuity("willis_conspicuity", "the circle of Willis"),
            _conspicuity("distal_conspicuity", "the distal intracranial branches"),
            _edge_sharpness("the neck and brain arteries"),
        ]
    if ifu == "limb":
        return [
            _conspicuity("inflow_conspicuity", "the iliac and femoral arteries"),
            _conspicuity("runoff_conspicuity", "the popliteal and below-knee run-off arteries"),
            _likert(
                "calcification_delineation",
                "Delineation of the lumen next to wall calcification",
                "Lumen hidden by calcification",
                "Lumen mostly hidden",
                "Lumen partly assessable",
                "Lumen assessable with minor blooming",
                "Lumen fully assessable",
            ),
            _edge_sharpness("the limb arteries"),
        ]
    if ifu == "coronary":
        return [
            _conspicuity("proximal_conspicuity", "the proximal coronary segments"),
            _conspicuity("distal_conspicuity", "the distal coronary segments"),
            _edge_sharpness("the coronary arteries"),
            _likert(
                "motion_artefacts",
                "Coronary motion artefacts",
                "Severe: segments not assessable",
                "Marked",
                "Moderate",
                "Mild",
                "None",
            ),
        ]
    raise KeyError(ifu)


def grading_questions(ifu: str) -> list[dict]:
    """The grading criteria of one IFU (``aorta``, ``pulmonary``, ``neck-brain``, ``limb``,
    ``coronary``): IFU-specific 1-5 anchored Likert scales, then noise/artefacts, overall
    diagnostic confidence, a non-diagnostic flag and a free-text comment."""
    if ifu not in IFUS:
        raise KeyError(f"unknown IFU {ifu!r}; known: {', '.join(IFUS)}")
    return _specific(ifu) + [_noise_artefacts(), _overall(_VESSELS[ifu])] + _tail()


def _confidence(text: str) -> dict:
    return _likert("confidence", text, "Guessing", "Unsure", "Fairly sure", "Sure", "Certain")


TURING_QUESTIONS: list[dict] = [
    {
        "key": "synthetic_or_real",
        "type": "single_choice",
        "text": "Is this contrast image synthetic (computed from a non-contrast CT) or real (acquired with contrast)?",
        "required": True,
        "options": [{"value": "synthetic", "label": "Synthetic"}, {"value": "real", "label": "Real"}],
    },
    _confidence("How confident are you?"),
]

PREFERENCE_QUESTIONS: list[dict] = [
    {
        "key": "preferred",
        "type": "single_choice",
        "text": "Which image would you rather report from?",
        "required": True,
        "options": [
            {"value": "A", "label": "Image A"},
            {"value": "B", "label": "Image B"},
            {"value": "equal", "label": "No preference"},
        ],
    },
    {"key": "comment", "type": "text", "text": "Why? (optional)", "required": False, "max_length": 2000},
]


def detection_questions(finding: str) -> list[dict]:
    """Present/absent plus a 1-5 confidence, for ROC analysis of ``finding``."""
    return [
        {"key": "finding_present", "type": "yes_no", "text": f"Is {finding} present?", "required": True},
        _confidence("How confident are you in that decision?"),
    ]


def default_questions(task_type: str, *, ifu: str = "aorta", finding: str = "the finding") -> list[dict]:
    """The questions a task of ``task_type`` gets when the study file lists none (a fresh copy)."""
    if task_type == "grading":
        return grading_questions(ifu)
    if task_type == "turing":
        return copy.deepcopy(TURING_QUESTIONS)
    if task_type == "preference":
        return copy.deepcopy(PREFERENCE_QUESTIONS)
    if task_type == "detection":
        return detection_questions(finding)
    raise KeyError(task_type)


#: Keys of the decision and confidence questions that make a derived 1-10 ``rating``
#: (see :func:`DigitalContrastReaderLib.exports.tidy.analysis_table`), per task type, with the answer
#: value that counts as "positive" (synthetic for the Turing test, present for detection).
RATING_QUESTIONS: dict[str, tuple[str, str, object]] = {
    "turing": ("synthetic_or_real", "confidence", "synthetic"),
    "detection": ("finding_present", "confidence", True),
}

DEFAULT_INSTRUCTIONS = {
    "grading": "Grade the image on each criterion as you would for clinical reporting.",
    "turing": "Decide whether this contrast image was acquired with contrast or computed by software.",
    "preference": "Compare the two images and say which you would rather report from.",
    "detection": "Decide whether the finding is present and how confident you are.",
}

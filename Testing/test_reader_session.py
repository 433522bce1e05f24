"""A reading session on a real vtkMRMLScene: blind scenes, the right image on the right side,
answers that reach the store and the exports exactly.

The test study gives everything away in its file and folder names: case folders are called
``AI-contrast-pat0000x``..., images ``<case>_synthetic_unet-v2_synthetic-unet-v2.nrrd`` and so on,
under a folder ``synthetic-vs-real-contrast-cases``; one model's images are float32, the other's
compressed NIfTI. The session must show none of it.
"""

from __future__ import annotations

import json
import random
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from DigitalContrastLib.ct.volume import CTVolume

pytestmark = pytest.mark.mrml

MODEL_IDS = ("unet-v2", "gan-AI-v3")
SHAPE_ZYX = (6, 28, 28)
#: Lumen HU per source: every image of a case differs, so a node's voxels say which file it is.
LUMEN_HU = {"real": 330, "synthetic-unet-v2": 300, "synthetic-gan-AI-v3": 360, "noncontrast": 40}


def _case_volume(source: str, case_index: int, rng: np.random.Generator) -> CTVolume:
    z, y, x = np.mgrid[0:SHAPE_ZYX[0], 0:SHAPE_ZYX[1], 0:SHAPE_ZYX[2]]
    body = (y - 14) ** 2 + (x - 14) ** 2 < 12 ** 2
    lumen = (y - 14) ** 2 + (x - 14 - case_index) ** 2 < 4 ** 2
    array = np.where(body, 40.0, -1000.0)
    array[lumen] = LUMEN_HU[source]
    array += rng.normal(0, 8, array.shape)
    dtype = np.float32 if source == "synthetic-unet-v2" else np.int16  # a float file must not stand out
    return CTVolume(np.rint(array).astype(dtype), (0.8, 0.8, 2.0), (-11.2, -11.2, 0.0))


def write_revealing_study(root: Path, *, cases: int = 3, training_cases: int = 1, washout_days: float = 0,
                          tasks=("grading", "turing", "preference", "detection"), readers=("r01", "r02")) -> Path:
    """A study (``root/study/study.yaml``) whose file and folder names reveal every source."""
    import SimpleITK as sitk

    from DigitalContrastReaderLib.study.example import study_config_from_folder, write_study_file

    rng = np.random.default_rng(7)
    cases_dir = root / "synthetic-vs-real-contrast-cases"
    suffix = {"real": ".nrrd", "noncontrast": ".nrrd", "synthetic-unet-v2": ".nrrd", "synthetic-gan-AI-v3": ".nii.gz"}
    for k in range(cases):
        folder = cases_dir / f"AI-contrast-pat{k:04d}x"
        folder.mkdir(parents=True)
        for source in LUMEN_HU:
            sitk.WriteImage(_case_volume(source, k, rng).to_sitk(), str(folder / f"{source}{suffix[source]}"))
        (folder / "truth.json").write_text(json.dumps({"disease_present": k % 2}))
    study_dir = root / "study"
    config = study_config_from_folder(cases_dir, study_dir, study_id="blind-test", readers=readers, tasks=tasks,
                                      training_cases=training_cases, washout_days=washout_days)
    for case in config["cases"]:  # now put case id, source and model id into every file name
        for source in ("real", "noncontrast"):
            case[source] = _rename(study_dir, case[source], f"{case['id']}_{source}_contrast_")
        case["synthetic"] = {model: _rename(study_dir, rel, f"{case['id']}_synthetic_{model}_AI_")
                             for model, rel in case["synthetic"].items()}
    return write_study_file(config, study_dir / "study.yaml")


def _rename(study_dir: Path, relative: str, prefix: str) -> str:
    path = (study_dir / relative).resolve()
    target = path.with_name(prefix + path.name)
    path.rename(target)
    return str(Path(relative).with_name(target.name))


@pytest.fixture()
def revealing_study(tmp_path):
    from DigitalContrastReaderLib.store.sqlite import create_store
    from DigitalContrastReaderLib.study.config import load_study

    study = load_study(write_revealing_study(tmp_path))
    store = create_store(tmp_path / "store" / "study.sqlite", study)
    yield study, store
    store.close()


def _token(store, reader):
    """The reader's token: enrolled now, or a new one issued (the admin's two ways to give one)."""
    if reader in {r.reader_id for r in store.readers()}:
        return store.issue_token(reader)
    return store.enrol(reader).token


def _session(store, reader="r01", **options):
    from DigitalContrastLib.mrml.headless import make_headless_scene
    from DigitalContrastReaderLib.mrml.reader_display import mrml_reading_session

    if "token" not in options:
        options["token"] = _token(store, reader)
    scene, app_logic = make_headless_scene()
    return mrml_reading_session(scene, app_logic, store, reader, **options)


def _random_answers(form, rng: random.Random) -> dict:
    """Fill the form as a reader would (clicks, typing, keys), with random valid answers."""
    for spec in form.fields:
        if spec.widget == "radio" and spec.keyboard and form.current_key == spec.key and rng.random() < 0.5:
            form.press_key(rng.choice([c.shortcut for c in spec.choices]))
        elif spec.widget in ("radio", "yes_no"):
            form.set_value(spec.key, rng.choice(spec.choices).value)
        elif spec.widget == "checkboxes":
            for choice in rng.sample(spec.choices, 1):
                form.set_checked(spec.key, choice.value, True)
        elif spec.widget == "number":
            form.set_text(spec.key, str(spec.minimum or 0))
        elif spec.widget == "text" and rng.random() < 0.5:
            form.set_text(spec.key, f"note {rng.randint(0, 999)}")
    assert form.can_submit, form.status_text()
    return form.answers()


def _read_original(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return np.rint(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).astype(np.int16)


# ------------------------------------------------------------------------------------------------
def test_scene_reveals_nothing_after_any_item(revealing_study):
    """Blinding audit: every text of the scene (nodes, attributes, storage, subject hierarchy,
    layout, the scene as .mrml) after each item of a whole schedule."""
    from DigitalContrastReaderLib.mrml.scene_audit import audit_scene, forbidden_tokens, scene_strings
    from DigitalContrastReaderLib.reading.form import QuestionForm

    study, store = revealing_study
    session = _session(store)
    rng = random.Random(0)
    item = session.start()
    shown = 0
    layouts = set()
    while session.state == "reading":
        tokens = forbidden_tokens(study, [item])
        assert {"synthetic", "real", "contrast", "AI", "unet-v2", "gan-AI-v3", "AI-contrast-pat0001x"} <= set(tokens)
        assert any(t.endswith("_synthetic_unet-v2_AI_synthetic-unet-v2.nrrd") for t in tokens)
        leaks = audit_scene(session.display.scene, tokens)
        assert leaks == [], "\n".join(map(str, leaks))
        names = sorted(n.GetName() for n in _volume_nodes(session.display.scene))
        assert names == (["Image"] if item.layout == "single" else ["Image A", "Image B"])  # previous item removed
        layouts.add(item.layout)
        shown += 1
        item = session.submit_and_next(_random_answers(QuestionForm(item.questions), rng))
    assert session.state == "finished" and shown == len(store.items("r01")) and layouts == {"single", "pair"}

    # the audit does see what it is meant to see: plant one leak of each kind and find it
    import slicer

    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName("Image")
    session.display.scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName("/data/AI-contrast-pat0001x/scan.nrrd")
    session.display.scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    hierarchy = session.display.scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    item_id = hierarchy.GetItemByDataNode(node) or hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    hierarchy.SetItemAttribute(item_id, "source", "Real")
    node.SetDescription("made by unet-v2")
    found = {(leak.where.split()[-1], leak.token) for leak in audit_scene(session.display.scene, forbidden_tokens(study))}
    assert {("name", "AI-contrast-pat0001x"), ("attribute", "real"), ("description", "unet-v2"),
            (".mrml", "unet-v2")} <= found
    assert len(scene_strings(session.display.scene)) > 100


def _volume_nodes(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]


def test_each_item_shows_the_scheduled_image_on_the_scheduled_side(revealing_study):
    """Window/level, layout, linked views, neutral view labels and the image per side, all read
    back from the scene and compared with the schedule in the store's admin view."""
    from DigitalContrastReaderLib.mrml.reader_display import (
        NEUTRAL_VIEW_COLOR,
        READER_PAIR_LAYOUT_ID,
        READER_SINGLE_LAYOUT_ID,
    )
    from DigitalContrastReaderLib.reading.form import QuestionForm

    study, store = revealing_study
    session = _session(store, "r02")
    rng = random.Random(1)
    scene = session.display.scene
    item = session.start()
    sides_checked = {"Image": 0, "Image A": 0, "Image B": 0}
    a_sources = []
    while session.state == "reading":
        record = store.item(item.item_id)  # admin view: which source is on which side
        expected = {"Image": record.source_a} if record.layout == "single" else \
            {"Image A": record.source_a, "Image B": record.source_b}
        layout_node = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
        assert layout_node.GetViewArrangement() == (READER_SINGLE_LAYOUT_ID if record.layout == "single"
                                                    else READER_PAIR_LAYOUT_ID)
        on_screen = [v.get("singletontag") for v in
                     ElementTree.fromstring(layout_node.GetCurrentLayoutDescription()).iter("view")]
        shown = {}
        for view in on_screen:
            slice_node = scene.GetSingletonNode(view, "vtkMRMLSliceNode")
            composite = scene.GetSingletonNode(view, "vtkMRMLSliceCompositeNode")
            background = scene.GetNodeByID(composite.GetBackgroundVolumeID())
            handle = background.GetName()
            assert composite.GetLayoutName().startswith({"Image": "ReaderImage", "Image A": "ReaderImageA",
                                                         "Image B": "ReaderImageB"}[handle])
            assert composite.GetLinkedControl() == 1 and slice_node.GetViewGroup() == 0
            assert composite.GetForegroundVolumeID() is None and composite.GetLabelVolumeID() is None
            assert slice_node.GetLayoutLabel().split(" (")[0] == handle
            assert "#%02X%02X%02X" % tuple(round(255 * c) for c in slice_node.GetLayoutColor()) == NEUTRAL_VIEW_COLOR
            assert slice_node.GetOrientation() in ("Axial", "Coronal", "Sagittal")
            display = background.GetDisplayNode()
            assert (display.GetWindow(), display.GetLevel()) == (study.display["window"], study.display["level"])
            assert not display.GetAutoWindowLevel()
            shown.setdefault(handle, set()).add(slice_node.GetOrientation())
            from vtk.util import numpy_support

            image = background.GetImageData()
            nx, ny, nz = image.GetDimensions()
            voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(nz, ny, nx)
            original = _read_original(study.case(record.case_id).images[expected[handle]])
            assert voxels.dtype == np.int16 and np.array_equal(voxels, original), \
                f"{item.item_id}: {handle} does not show {expected[handle]}"
        assert set(shown) == set(expected)
        assert all(o == {"Axial", "Coronal", "Sagittal"} for o in shown.values())  # the study's layout.views
        for handle in expected:
            sides_checked[handle] += 1
        if record.layout == "pair":
            a_sources.append(record.source_a)
        item = session.submit_and_next(_random_answers(QuestionForm(item.questions), rng))
    assert sides_checked["Image A"] == sides_checked["Image B"] >= 2 and sides_checked["Image"] > 10
    assert len(set(a_sources)) == 2  # counterbalanced: the synthetic image is on each side sometimes


def test_simulated_reader_session_store_and_export_hold_exactly_the_answers(tmp_path):
    """A whole schedule with a 28-day washout: random answers through the form, interactions
    through the scene; the store and the tidy export hold exactly those answers and timings."""
    from DigitalContrastReaderLib.exports.bundle import export_all
    from DigitalContrastReaderLib.exports.tidy import read_tidy_csv
    from DigitalContrastReaderLib.reading.form import QuestionForm
    from DigitalContrastReaderLib.reading.simulate import SimulatedClock
    from DigitalContrastReaderLib.store.sqlite import create_store
    from DigitalContrastReaderLib.study.config import load_study

    study = load_study(write_revealing_study(tmp_path, cases=3, training_cases=1, washout_days=28,
                                             tasks=("grading", "turing"), readers=("r01",)))
    store_clock = SimulatedClock()
    store = create_store(tmp_path / "study.sqlite", study, clock=store_clock)
    monotonic = [0.0]
    session = _session(store, idle_after_seconds=30, clock=lambda: monotonic[0])
    rng = random.Random(42)
    given, expected_seconds, waits = {}, {}, 0
    item = session.start()
    assert session.progress().text().startswith("Training item 1 of")
    while session.state != "finished":
        if session.state == "washout":
            progress = session.progress()
            assert "(washout)" in progress.text() and progress.opens_at
            from datetime import datetime

            store_clock.jump_to(datetime.fromisoformat(progress.opens_at))
            item = session.next()
            waits += 1
            continue
        # 4 s looking, scroll (interaction), 100 s away (30 count), window/level (interaction), 3 s
        monotonic[0] += 4
        shown = session.display.shown
        slice_node = shown.slice_node(session.display.scene, shown.layout.view_names[0])
        slice_node.SetSliceOffset(slice_node.GetSliceOffset() + 2.0)
        monotonic[0] += 100
        display = shown.nodes["Image"].GetDisplayNode()
        display.SetWindowLevel(display.GetWindow() + 50, display.GetLevel())
        monotonic[0] += 3
        answers = _random_answers(QuestionForm(item.questions), rng)
        receipt = session.submit(answers)
        assert receipt.item_id == item.item_id
        given[item.item_id] = answers
        expected_seconds[item.item_id] = 4 + 30 + 3
        store_clock.advance(40)
        item = session.next()
    assert waits >= 1  # the washout between the real and the synthetic wave was honoured

    items = {i.item_id: i for i in store.items("r01")}
    assert set(given) == set(items)
    stored = {}
    for response in store.responses():
        stored.setdefault(response.item_id, {})[response.question_key] = response.value
    assert stored == given
    for item_id, record in items.items():
        assert record.active_seconds == pytest.approx(expected_seconds[item_id])
        assert record.shown_at and record.first_interaction_at and record.submitted_at and record.visits == 1
    assert store.integrity_check().ok

    export_all(store, tmp_path / "export")
    tidy = read_tidy_csv(tmp_path / "export" / "responses_tidy.csv")
    exported = {}
    for row in tidy.itertuples():
        exported.setdefault(row.item_id, {})[row.question_key] = json.loads(row.value)
        assert row.active_seconds == pytest.approx(expected_seconds[row.item_id])
    assert exported == given
    assert set(tidy.loc[tidy["training"].astype(bool), "item_id"]) == {i for i, r in items.items() if r.training}


def test_reopening_resumes_at_the_next_unfinished_item_in_the_same_order(revealing_study):
    from DigitalContrastReaderLib.reading.form import QuestionForm
    from DigitalContrastReaderLib.store.sqlite import open_store

    study, store = revealing_study
    session = _session(store)
    item = session.start()
    order = [i.item_id for i in store.schedule("r01").items]
    rng = random.Random(5)
    for _ in range(4):
        item = session.submit_and_next(_random_answers(QuestionForm(item.questions), rng))
    session.close()
    assert _volume_nodes(session.display.scene) == []
    db = store.db_path
    store.close()

    with open_store(db) as reopened:  # a new Slicer: new scene, store opened again
        again = _session(reopened)
        resumed = again.start()
        assert resumed.item_id == order[4] == item.item_id
        assert again.progress().items_done == 4
        seen = [resumed.item_id]
        while again.state == "reading" and len(seen) < 8:
            seen.append(again.submit_and_next(_random_answers(QuestionForm(again.current_item.questions), rng)).item_id)
        assert seen == order[4:4 + len(seen)]


def test_a_reader_signs_in_with_an_enrolled_code_and_its_token(revealing_study):
    from DigitalContrastReaderLib.study.errors import AnswerError, TokenError

    _study, store = revealing_study
    with pytest.raises(AnswerError, match="not listed"):
        _session(store, "r99", token="anything").start()
    with pytest.raises(AnswerError, match="not enrolled"):
        _session(store, "r01", token="anything").start()
    assert store.readers() == []
    token = store.enrol("r01").token
    with pytest.raises(TokenError, match="Enter your token"):
        _session(store, "r01", token=" ").start()
    with pytest.raises(TokenError, match="is wrong"):
        _session(store, "r01", token=token[:-1] + ("A" if token[-1] != "A" else "B")).start()
    events = len(store.events())
    assert _session(store, "r01", token=token).start() is not None
    assert len(store.events()) == events + 1  # the first item shown, nothing before


def test_submit_refuses_incomplete_answers_and_keeps_the_item(revealing_study):
    from DigitalContrastReaderLib.study.errors import AnswerError

    _study, store = revealing_study
    session = _session(store)
    item = session.start()
    with pytest.raises(AnswerError):
        session.submit({})
    assert session.state == "reading" and session.current_item.item_id == item.item_id
    assert store.responses() == [] and store.item(item.item_id).submitted_at is None
    with pytest.raises(AnswerError):
        session.next()  # not submitted yet


@pytest.mark.realdata
def test_real_ct_files_and_a_dicom_series_load_blind_with_their_hu(tmp_path, real_data):
    """Real scanner data: a NIfTI CTA and a JPEG 2000 DICOM series (whose tags say contrast was
    given) as the real images, float32 files as the synthetic ones."""
    import SimpleITK as sitk

    from DigitalContrastReaderLib.mrml.scene_audit import audit_scene, forbidden_tokens
    from DigitalContrastReaderLib.store.sqlite import create_store
    from DigitalContrastReaderLib.study.config import load_study
    from DigitalContrastReaderLib.study.example import study_config_from_folder, write_study_file

    cases = tmp_path / "cases"
    one = cases / "cta-real-contrast-001"
    one.mkdir(parents=True)
    shutil.copy(real_data / "cta_chest_arterial.nii.gz", one / "real.nii.gz")
    image = sitk.ReadImage(str(real_data / "cta_chest_arterial.nii.gz"))
    sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32) * 0.95, str(one / "synthetic.nrrd"))
    two = cases / "dicom-contrast-002"
    two.mkdir()
    shutil.copytree(real_data / "dicom_abdomen_contrast", two / "real")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(two / "real")))
    series = reader.Execute()
    sitk.WriteImage(sitk.Cast(series, sitk.sitkFloat32), str(two / "synthetic.nii.gz"))
    config = study_config_from_folder(cases, tmp_path, tasks=("grading",), readers=("r01",), washout_days=0)
    study = load_study(write_study_file(config, tmp_path / "study.yaml"))
    store = create_store(tmp_path / "study.sqlite", study)
    session = _session(store)
    item = session.start()
    checked = set()
    while session.state == "reading":
        record = store.item(item.item_id)
        node = session.display.shown.nodes["Image"]
        assert audit_scene(session.display.scene, forbidden_tokens(study, [item]) + ["dicom_abdomen", "cta_chest"]) == []
        from DigitalContrastLib.mrml.volume_nodes import node_to_volume

        shown = node_to_volume(node).array
        path = study.case(record.case_id).images[record.source_a]
        if path.is_dir():
            original = sitk.GetArrayFromImage(series)
        else:
            original = np.rint(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).astype(np.int16)
        assert shown.dtype == np.int16 and np.array_equal(shown, original)
        checked.add((record.case_id, record.source_a))
        item = session.submit_and_next({"lumen_conspicuity": 4, "edge_sharpness": 4, "thrombus_delineation": 4,
                                        "branch_conspicuity": 4, "noise_artefacts": 4, "overall_confidence": 4,
                                        "non_diagnostic": False})
    assert len(checked) == 4 and store.integrity_check().ok
    store.close()


def test_reader_layouts_are_neutral_grids_and_3d_is_reported_not_shown():
    from DigitalContrastReaderLib.mrml.reader_display import READER_PAIR_LAYOUT_ID, reader_layout

    layout = reader_layout(("Image A", "Image B"), ["coronal", "3d", "axial"])
    assert layout.layout_id == READER_PAIR_LAYOUT_ID and layout.ignored_views == ("3d",)
    assert layout.view_names == ("ReaderImageACoronal", "ReaderImageBCoronal", "ReaderImageAAxial", "ReaderImageBAxial")
    assert layout.views_by_handle["Image B"] == ("ReaderImageBCoronal", "ReaderImageBAxial")
    root = ElementTree.fromstring(layout.xml)
    labels = [p.text for p in root.iter("property") if p.get("name") == "viewlabel"]
    colors = {p.text for p in root.iter("property") if p.get("name") == "viewcolor"}
    assert labels == ["Image A (coronal)", "Image B (coronal)", "Image A (axial)", "Image B (axial)"]
    assert len(colors) == 1  # one frame colour: colour never tells the images apart
    assert reader_layout(("Image",), ["axial"]).view_names == ("ReaderImageAxial",)


def test_an_unreadable_image_is_one_sentence_and_leaves_no_node(revealing_study, tmp_path):
    from DigitalContrastReaderLib.mrml.reader_display import read_image_blind
    from DigitalContrastReaderLib.study.errors import StudyError

    broken = tmp_path / "broken.nrrd"
    broken.write_bytes(b"NRRD0004\nthis is not a volume\n")
    with pytest.raises(StudyError, match="could not be read") as caught:
        read_image_blind(broken)
    assert "broken" not in str(caught.value)  # the sentence names no file: the reader must not see it
    _study, store = revealing_study

    def failing_reader(path):
        raise StudyError("An image of this item could not be read (test); tell the study admin.")

    session = _session(store, image_reader=failing_reader)
    with pytest.raises(StudyError):
        session.start()
    assert _volume_nodes(session.display.scene) == []
    hierarchy = session.display.scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    if hierarchy is not None:
        import vtk

        children = vtk.vtkIdList()
        hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), children, True)
        assert children.GetNumberOfIds() == 0

"""What the module panel shows about models and devices, from cards and the worker's probe."""

from __future__ import annotations

import sys

import pytest

from DigitalContrastLib.models.choices import available_models, card_text, default_model_id, device_text

CARD = {
    "id": "aorta-phantom-v1", "version": "1.0.0", "ifu": "aorta", "title": "Aorta CTA from NCCT (phantom-trained)",
    "intended_use": "Demonstrates the pipeline on\nprocedural phantoms.", "limitations": ["Not for clinical use.",
                                                                                      "Trained on phantoms only."],
    "licence": "Apache-2.0",
}


def test_card_text_names_version_ifu_intended_use_and_every_limitation():
    text = card_text(CARD, "/models/aorta-phantom-v1")
    assert "Model aorta-phantom-v1 version 1.0.0, intended use: aorta" in text
    assert "Intended use: Demonstrates the pipeline on procedural phantoms." in text
    assert "  - Not for clinical use." in text and "  - Trained on phantoms only." in text
    assert "Licence: Apache-2.0" in text and "Folder: /models/aorta-phantom-v1" in text


def test_available_models_lists_the_shipped_model():
    choices, note = available_models()
    assert default_model_id() in [choice.model_id for choice in choices], note
    for choice in choices:
        assert choice.model_id in choice.label and "Model " + choice.model_id in choice.card_text


def test_without_jsonschema_the_panel_gets_an_install_note_instead_of_an_error(monkeypatch):
    """A stock 3D Slicer has no jsonschema until the first install (Testing/test_stock_slicer.py runs it for real)."""
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import jsonschema now raises ImportError
    choices, note = available_models()
    assert choices == [] and "needs the Python package jsonschema" in note and "press Apply" in note


@pytest.mark.process
def test_device_text_from_a_real_probe_of_the_worker():
    from DigitalContrastLib.worker.process import probe_worker

    hello = probe_worker(timeout_s=120)
    text = device_text(hello)
    print(text)
    assert text.startswith(("CPU only", "GPU:", "PyTorch"))
    assert device_text(None) == "not probed yet"
    gpu = {"torch": {"installed": "2.13.0", "imported": True, "version": "2.13.0+cu128", "cuda": "12.8"},
           "device": {"kind": "cuda", "name": "NVIDIA H100", "free_memory_mb": 80000, "total_memory_mb": 81559}}
    assert device_text(gpu) == "GPU: NVIDIA H100 (78.1 of 79.6 GB free), PyTorch 2.13.0+cu128"
    assert device_text({"torch": {"installed": None}, "device": {"name": "Xeon"}}).startswith("PyTorch is not installed")

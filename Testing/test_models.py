"""Model cards, the model search path, safetensors weights: checksums first, pickle never."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from model_fixtures import tiny_card_data, write_tiny_model

from DigitalContrastLib.commands.cli import main
from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import EXIT_MODEL, ModelError
from DigitalContrastLib.models import cards as models
from DigitalContrastLib.models import weights
from DigitalContrastLib.synthesis.api import load_engine


@pytest.fixture
def isolated_search_path(tmp_path, monkeypatch):
    """No user folder and no env entries from the machine running the tests."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(models.MODEL_PATH_ENV, raising=False)
    return tmp_path


def test_a_valid_card_loads_and_summarises(tmp_path):
    card = write_tiny_model(tmp_path / "tiny-test")
    assert card.id == "tiny-test" and card.version == "0.0.1" and card.ifu == "aorta"
    summary = card.summary()
    assert summary["verified"] is True and summary["intended_use"] == "Software tests only."
    assert len(card.weights_sha256) == 64 and card.data["weights"]["size_bytes"] == card.weights_path.stat().st_size


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.pop("intended_use"), "intended_use"),
        (lambda d: d.update(version="v1"), "version"),
        (lambda d: d["weights"].update(file="model.pt"), "weights/file"),
        (lambda d: d["inference"].update(overlap=1.5), "inference/overlap"),
        (lambda d: d["input"].pop("scale_hu"), "input/scale_hu"),
    ],
)
def test_an_invalid_card_is_refused_naming_the_file_and_the_field(tmp_path, edit, field):
    card = write_tiny_model(tmp_path / "tiny-test")
    data = json.loads(card.path.read_text())
    edit(data)
    card.path.write_text(json.dumps(data))
    with pytest.raises(ModelError) as caught:
        models.load_card(card.path)
    message = caught.value.message
    assert str(card.path) in message and f"'{field}'" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence


def test_network_classes_come_from_an_allow_list(tmp_path):
    from DigitalContrastLib.models.network import build_network

    with pytest.raises(ModelError, match="allowed MONAI networks"):
        build_network("os.system", {})
    with pytest.raises(ModelError, match="not accepted by MONAI UNet"):
        build_network("UNet", {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [4, 8],
                               "strides": [2], "__import__": "os"})


def test_tampered_weights_are_refused_before_loading(tmp_path):
    card = write_tiny_model(tmp_path / "tiny-test")
    engine = load_engine(str(card.folder), device="cpu")
    assert engine.card.id == "tiny-test"
    data = bytearray(card.weights_path.read_bytes())
    data[-1] ^= 0x01  # one byte of one weight
    card.weights_path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="fails its checksum") as caught:
        load_engine(str(card.folder), device="cpu")  # also when an engine for it is cached
    assert caught.value.code == "checksum_mismatch" and str(card.weights_path) in caught.value.message
    assert card.summary()["verified"] is False


def test_missing_weights_are_refused(tmp_path):
    card = write_tiny_model(tmp_path / "tiny-test")
    card.weights_path.unlink()
    with pytest.raises(ModelError, match="does not exist"):
        load_engine(str(card.folder), device="cpu")


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_weights_are_refused_unread_and_run_no_code(tmp_path):
    import torch

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": _Payload(marker)}, evil)  # a zip-format PyTorch checkpoint
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    with pytest.raises(ModelError, match="pickle") as caught:
        weights.check_safetensors_file(evil)
    assert caught.value.code == "pickle_refused" and str(evil) in caught.value.message

    # the same bytes under a .safetensors name, with a card whose checksum matches them
    for payload in (evil, raw):
        card = write_tiny_model(tmp_path / f"model-{payload.stem}")
        card.weights_path.write_bytes(payload.read_bytes())
        data = json.loads(card.path.read_text())
        data["weights"].update(sha256=file_sha256(card.weights_path), size_bytes=card.weights_path.stat().st_size)
        card.path.write_text(json.dumps(data))
        with pytest.raises(ModelError, match="pickle"):
            load_engine(str(card.folder), device="cpu")
    assert not marker.exists(), "unpickling ran the payload"


def test_search_path_order_duplicates_and_invalid_cards(isolated_search_path, monkeypatch):
    root = isolated_search_path
    user_dir = models.user_model_dir()
    assert user_dir == root / "xdg" / "DigitalContrast" / "models"
    write_tiny_model(user_dir / "tiny-test", version="1.0.0")
    env_a, env_b = root / "env-a", root / "env-b"
    write_tiny_model(env_a / "tiny-test", version="2.0.0")  # shadowed by the user folder
    write_tiny_model(env_b / "other", id="other-model", version="0.2.0")
    (env_b / "broken").mkdir()
    (env_b / "broken" / "model_card.json").write_text("{not json")
    monkeypatch.setenv(models.MODEL_PATH_ENV, os.pathsep.join([str(env_a), str(env_b)]))

    sources = [s for s, _ in models.search_path()]
    assert sources[-3:] == ["user", "env", "env"]
    inventory = models.discover_models()
    assert inventory.models["tiny-test"].version == "1.0.0" and inventory.models["tiny-test"].source == "user"
    assert inventory.duplicates == {"tiny-test": [str((env_a / "tiny-test" / "model_card.json").resolve())]}
    assert inventory.models["other-model"].source == "env"
    assert [Path(b["path"]).parent.name for b in inventory.invalid] == ["broken"]
    assert models.resolve_model("other-model").version == "0.2.0"
    with pytest.raises(ModelError, match="is not installed") as caught:
        models.resolve_model("no-such-model")
    assert str(env_b) in caught.value.message


def test_shipped_model_folder_is_found_first(isolated_search_path):
    shipped = models.shipped_model_dirs()
    assert shipped and shipped[0] == Path(__file__).resolve().parents[1] / "model_weights"
    assert models.search_path()[0] == ("shipped", shipped[0])


def test_models_cli_lists_cards_with_verification(isolated_search_path, monkeypatch, capsys):
    env = isolated_search_path / "env"
    write_tiny_model(env / "tiny-test")
    monkeypatch.setenv(models.MODEL_PATH_ENV, str(env))
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    row = next(r for r in listing["models"] if r["id"] == "tiny-test")
    assert row["verified"] is True and row["source"] == "env" and row["ifu"] == "aorta"
    assert row["intended_use"] == "Software tests only."
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "tiny-test" in text and "verified: yes" in text


def test_synthesize_cli_reports_a_missing_model_with_exit_code_3(tmp_path, capsys, isolated_search_path):
    from model_fixtures import body_volume

    from DigitalContrastLib.ct.volume import CTVolume  # noqa: F401 (body_volume builds one)

    volume = body_volume()
    src = tmp_path / "in.nrrd"
    volume.to_sitk()
    import SimpleITK as sitk

    sitk.WriteImage(volume.to_sitk(), str(src))
    code = main(["synthesize", str(src), str(tmp_path / "out.nrrd"), "--model", "no-such-model"])
    assert code == EXIT_MODEL
    assert "is not installed" in capsys.readouterr().err
    assert not (tmp_path / "out.nrrd").exists()


def test_card_data_template_is_valid():
    models.validate_card_data(tiny_card_data(), "tiny card")


def test_bench_reports_a_missing_model_with_exit_code_3_and_writes_nothing(tmp_path, capsys, isolated_search_path):
    out = tmp_path / "results.json"
    assert main(["bench", "--model", "no-such-model", "--size", "32", "32", "16", "--out", str(out)]) == EXIT_MODEL
    err = capsys.readouterr().err
    assert "no-such-model" in err and "Traceback" not in err
    assert not out.exists()

"""The shipped model behind the service gives what it gives locally (same voxels within 1 HU, same grid),
and the labelled DICOM series comes back as a zip."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
from service_support import cli, start_service

pytestmark = [pytest.mark.process, pytest.mark.slow]
pytest.importorskip("fastapi", reason="the service extra is not installed (pip install -e .[service])")
pytest.importorskip("torch", reason="the engine extra is not installed")


def test_a_phantom_synthesized_on_the_server_matches_a_local_run_within_1_hu(tmp_path):
    """Both on torch eager, asked for by the client: --backend reaches the server's worker."""
    from DigitalContrastLib.ct.io import write_volume
    from DigitalContrastLib.phantoms.generator import make_phantom

    case = make_phantom(3, size_xyz=(96, 96, 40), spacing_xyz_mm=(3.6, 3.6, 3.0))
    ncct = write_volume(case.noncontrast, tmp_path / "ncct.nrrd")
    local = cli("synthesize", str(ncct), str(tmp_path / "local.nrrd"), "--device", "cpu", "--backend", "torch",
                "--json")
    assert local.returncode == 0, local.stderr
    service = start_service(tmp_path, users=("alice",), dummy=False, extra=("--device", "cpu"))
    try:
        remote = cli("synthesize", str(ncct), str(tmp_path / "remote.nrrd"), "--server", service.url,
                     "--backend", "torch", "--json", env={"DIGITAL_CONTRAST_TOKEN": service.tokens["alice"]})
        assert remote.returncode == 0, remote.stderr
        provenance = json.loads(remote.stdout)
        status, _, body = service.request("GET", f"/v1/jobs/{provenance['server']['job_id']}/dicom", user="alice")
    finally:
        service.stop()
    here, there = sitk.ReadImage(str(tmp_path / "local.nrrd")), sitk.ReadImage(str(tmp_path / "remote.nrrd"))
    for read in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(here, read)() == getattr(there, read)(), read
    assert there.GetPixelID() == sitk.sitkInt16
    difference = np.abs(sitk.GetArrayFromImage(here).astype(int) - sitk.GetArrayFromImage(there).astype(int))
    print(f"parity: max |difference| {difference.max()} HU over {difference.size} voxels, {int((difference > 0).sum())} differ")
    assert difference.max() <= 1, difference.max()
    local_provenance = json.loads(local.stdout)
    assert provenance["model"] == local_provenance["model"] and provenance["device"] == local_provenance["device"]
    assert provenance["server"]["url"] == service.url and provenance["server"]["device"] == "cpu"
    assert provenance["model"]["id"] == "aorta-phantom-v1"
    assert provenance["backend"] == local_provenance["backend"] == "torch"
    # the labelled DICOM series, zipped
    assert status == 200
    import pydicom

    with zipfile.ZipFile(io.BytesIO(body)) as zipped:
        names = zipped.namelist()
        first = pydicom.dcmread(io.BytesIO(zipped.read(names[0])))
    assert len(names) == 40
    assert first.SyntheticData == "YES" and list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "SYNTHETIC" in first.SeriesDescription and "aorta-phantom-v1" in first.DerivationDescription

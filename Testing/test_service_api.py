"""The synthesis service's HTTP API on a real server (uvicorn in a subprocess, real dummy workers):
tokens, users kept apart, and every bad upload refused with one sentence and a 4xx."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from ct_test_inputs import ct_like_volume, write_dicom_series
from service_support import add_token, cli, job_files, start_service
from worker_support import write_mr_like, write_tiny_ct

pytestmark = [pytest.mark.process, pytest.mark.slow]
pytest.importorskip("fastapi", reason="the service extra is not installed (pip install -e .[service])")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    running = start_service(tmp_path_factory.mktemp("api"), dummy_seconds=1.0, extra=("--max-upload-mb", "1"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ncct(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "ncct.nrrd"
    write_tiny_ct(path)
    return path


def one_sentence(body: dict) -> str:
    detail = body["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail, detail
    assert detail.rstrip(")").endswith(".") and detail.count(". ") <= 1, detail
    assert isinstance(body["code"], str) and isinstance(body["exit_code"], int)
    return detail


def no_job_folders(service) -> list[str]:
    return sorted(p.name for p in (service.data_dir / "jobs").iterdir())


# ------------------------------------------------------------------------------------------ tokens
def test_add_token_prints_the_token_alone_and_the_file_keeps_only_salted_hashes(tmp_path):
    tokens = tmp_path / "tokens.json"
    first, second = add_token(tokens, "carol"), add_token(tokens, "carol")
    assert first != second and first.startswith("dc_") and len(first.split()) == 1
    text = tokens.read_text()
    assert first not in text and first.split("_")[2] not in text and second.split("_")[2] not in text
    entries = json.loads(text)["tokens"]
    assert [e["user"] for e in entries] == ["carol", "carol"] and all(len(e["salt"]) == 32 for e in entries)
    assert (tokens.stat().st_mode & 0o777) == 0o600
    refused = cli("serve", "--tokens", str(tokens), "--add-token", "no spaces allowed")
    assert refused.returncode == 4 and refused.stdout == "" and "user name" in refused.stderr


@pytest.mark.parametrize("token", [None, "dc_00000000_" + "A" * 43, "not-a-token"])
def test_a_missing_or_wrong_token_gets_401_with_one_sentence_and_nothing_is_written(service, ncct, token):
    before = no_job_folders(service)
    status, headers, body = service.request("POST", "/v1/jobs?filename=ncct.nrrd", token=token,
                                            body=ncct.read_bytes())
    assert status == 401 and headers.get("www-authenticate", headers.get("WWW-Authenticate")) == "Bearer"
    assert "token" in one_sentence(json.loads(body))
    assert no_job_folders(service) == before
    for route in ("/v1/jobs", "/v1/models", "/v1/jobs/0123456789abcdef", "/v1/jobs/0123456789abcdef/result"):
        assert service.request("GET", route, token=token)[0] == 401


def test_a_valid_token_of_a_user_removed_from_the_file_stops_working(tmp_path, ncct):
    running = start_service(tmp_path, users=("dave",))
    try:
        assert running.json("GET", "/v1/jobs", user="dave")[0] == 200
        tokens_file = running.data_dir / "tokens.json"
        data = json.loads(tokens_file.read_text())
        tokens_file.write_text(json.dumps({**data, "tokens": []}))
        assert running.json("GET", "/v1/jobs", user="dave")[0] == 401
    finally:
        running.stop()


# ------------------------------------------------------------------------------------------ users
def test_user_b_can_neither_see_nor_fetch_nor_cancel_user_a_s_job(service, ncct):
    status, job = service.submit(ncct, "alice")
    assert status == 201, job
    job_id = job["id"]
    for method, route in (("GET", ""), ("GET", "/events"), ("GET", "/result"), ("GET", "/provenance"),
                          ("GET", "/dicom"), ("POST", "/cancel"), ("DELETE", "")):
        code, body = service.json(method, f"/v1/jobs/{job_id}{route}", user="bob")
        assert code == 404, (method, route, body)
        assert job_id in one_sentence(body)
    assert job_id not in [j["id"] for j in service.json("GET", "/v1/jobs", user="bob")[1]["jobs"]]
    done = service.wait_until(job_id, "alice")
    assert done["status"] == "ok", done  # bob's cancel did nothing
    assert service.request("GET", f"/v1/jobs/{job_id}/result", user="alice")[0] == 200
    assert [j["id"] for j in service.json("GET", "/v1/jobs", user="alice")[1]["jobs"]].count(job_id) == 1


def test_health_needs_no_token_and_names_the_device_queue_and_workers(service):
    status, health = service.json("GET", "/v1/health")
    assert status == 200 and health["status"] == "ok"
    assert health["device"]["kind"] == "cpu" and health["queue_length"] >= 0 and len(health["workers"]) == 1
    status, models = service.json("GET", "/v1/models", user="alice")
    assert status == 200 and models["default"] == "dummy" and models["models"][0]["id"] == "dummy"


# ------------------------------------------------------------------------------------------ bad uploads
def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


def _series_zip(tmp_path: Path, count: int) -> bytes:
    members = {}
    for k in range(count):
        files = write_dicom_series(tmp_path / f"s{k}", ct_like_volume((20, 48, 48), seed=k), seed=k + 1,
                                   spacing_xyz_mm=(3.0, 3.0, 3.0))
        members.update({f"series{k}/{f.name}": f.read_bytes() for f in files})
    return _zip(members)


def bad_uploads(tmp_path: Path, ncct: Path) -> dict[str, tuple[str, bytes, int, str]]:
    """name -> (filename, body, expected status, a word the sentence must hold)."""
    write_mr_like(tmp_path / "mr.nrrd")
    whole = ncct.read_bytes()
    big = tmp_path / "big.nrrd"
    write_tiny_ct(big, shape_zyx=(40, 128, 128))
    return {
        "non-CT volume": ("mr.nrrd", (tmp_path / "mr.nrrd").read_bytes(), 422, "mr.nrrd"),
        "not a volume format": ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(200), 415, "photo.png"),
        "truncated NRRD": ("cut.nrrd", whole[: len(whole) // 2], 422, "cut.nrrd"),
        "zip with two series": ("two.zip", _series_zip(tmp_path, 2), 422, "2 DICOM series"),
        "zip leaving its folder": ("evil.zip", _zip({"../../evil.dcm": b"x" * 10, "ok/a.dcm": b"y"}), 422, "evil.zip"),
        "zip with an absolute path": ("abs.zip", _zip({"/tmp/abs.dcm": b"x"}), 422, "abs.zip"),
        "damaged zip": ("broken.zip", b"PK\x03\x04" + bytes(100), 422, "broken.zip"),
        "over the size limit": ("big.nrrd", big.read_bytes(), 413, "limit"),
        "empty body": ("empty.nrrd", b"", 422, "empty"),
    }


def test_every_bad_upload_gets_one_sentence_and_a_4xx_never_a_500_and_leaves_nothing(service, ncct, tmp_path):
    before = no_job_folders(service)
    for name, (filename, body, expected, word) in bad_uploads(tmp_path, ncct).items():
        status, headers, raw = service.request("POST", f"/v1/jobs?filename={filename}", user="alice", body=body)
        answer = json.loads(raw)
        assert status == expected, (name, status, answer)
        sentence = one_sentence(answer)
        assert word in sentence, (name, sentence)
        assert str(service.data_dir) not in sentence, (name, sentence)  # no server paths
        assert no_job_folders(service) == before, name
    assert not (service.data_dir / "evil.dcm").exists() and not Path("/tmp/abs.dcm").exists()


def test_a_zip_of_one_dicom_series_is_synthesized_with_its_dicom_facts(service, tmp_path):
    body = _series_zip(tmp_path, 1)
    (tmp_path / "one.zip").write_bytes(body)
    status, job = service.submit(tmp_path / "one.zip", "alice")
    assert status == 201, job
    done = service.wait_until(job["id"], "alice")
    assert done["status"] == "ok", done
    assert done["input_name"] == "one.zip"
    assert (service.data_dir / "jobs" / job["id"] / "dicom_meta.json").is_file()
    assert "upload.zip" not in job_files(service, job["id"]) and "input" not in job_files(service, job["id"])


def test_bad_query_values_are_refused_with_one_sentence(service, ncct):
    for query, word in (("filename=ncct.nrrd&overlap=1.5", "overlap"), ("filename=a/b.nrrd", "file name"),
                        ("overlap=0.5", "filename"), ("filename=ncct.nrrd&model=..%2Fetc", "model"),
                        ("filename=ncct.nrrd&backend=tensorrt", "backend")):
        status, body = service.json("POST", f"/v1/jobs?{query}", user="alice", body=ncct.read_bytes())
        assert status == 422, (query, body)
        assert word in one_sentence(body), (query, body)


def test_the_queue_limit_per_user_refuses_with_429(tmp_path, ncct):
    running = start_service(tmp_path, users=("erin",), dummy_seconds=3.0, extra=("--max-queued", "2"))
    try:
        assert running.submit(ncct, "erin")[0] == 201 and running.submit(ncct, "erin")[0] == 201
        status, body = running.submit(ncct, "erin")
        assert status == 429 and "2 jobs" in one_sentence(body)
    finally:
        running.stop()


def test_an_upload_without_a_length_is_cut_at_the_limit_with_413(service):
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(service.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    before = no_job_folders(service)
    connection.putrequest("POST", "/v1/jobs?filename=stream.nrrd")
    connection.putheader("Authorization", f"Bearer {service.tokens['alice']}")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    try:
        for _ in range(40):  # 2.5 MiB in 64 KiB chunks, over the 1 MiB limit, with no Content-Length
            connection.send(b"%x\r\n" % 65536 + bytes(65536) + b"\r\n")
        connection.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may stop reading once it has refused
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 413 and "limit" in one_sentence(body)
    assert no_job_folders(service) == before


def test_the_workers_are_one_per_gpu_at_most_and_on_the_cpu_without_one():
    from DigitalContrastLib.common.errors import JobError
    from DigitalContrastLib.service.devices import plan_devices

    two_gpus = {"torch": {"cuda_available": True, "device_count": 2}, "device": {"kind": "cuda", "name": "GPU"}}
    assert plan_devices("auto", None, hello=two_gpus).devices == ("cuda:0", "cuda:1")
    assert plan_devices("auto", 1, hello=two_gpus).devices == ("cuda:0",)
    with pytest.raises(JobError, match="one worker per GPU"):
        plan_devices("auto", 3, hello=two_gpus)
    with pytest.raises(JobError, match="one GPU"):
        plan_devices("cuda:1", 2, hello=two_gpus)
    assert plan_devices("cpu", 2, hello=two_gpus).devices == ("cpu", "cpu")
    no_gpu = {"torch": {"cuda_available": False}, "device": {"kind": "cpu"}}
    assert plan_devices("auto", None, hello=no_gpu).devices == ("cpu",)
    with pytest.raises(JobError, match="no GPU"):
        plan_devices("cuda", None, hello=no_gpu)

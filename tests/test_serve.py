"""python -m skinclf.serve as a clinic uses it: started on a free loopback port with a small trained model, it answers
as predict does, refuses bad requests with a 4xx and goes on serving, shows its page in Chromium, and stops on
SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pandas as pd
import pytest
from conftest import COMMAND_ENV, command_line, run_in_process
from PIL import Image
from test_referral import not_dermoscopy

from skinclf.benchmark.serving import LOOPBACK, free_port, round_of_requests
from skinclf.config.schema import ServeSettings
from skinclf.serving.api import LesionAPI
from skinclf.serving.uploads import RequestError

#: The limits the test server runs with: small enough to be crossed by small requests.
MAX_IMAGES, MAX_BYTES, MAX_PIXELS = 4, 400_000, 100 * 100
#: The recent images the server's set alarm tests.
RECENT = 24


@dataclass(frozen=True)
class Server:
    url: str
    ckpt: Path
    process: subprocess.Popen
    log: Path


@pytest.fixture(scope="module")
def server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    port, ckpt, log = free_port(), trained_run / "checkpoints" / "last.ckpt", folder / "server.log"
    limits = [
        f"serve.max_images_per_request={MAX_IMAGES}",
        f"serve.max_request_bytes={MAX_BYTES}",
        f"serve.max_image_pixels={MAX_PIXELS}",
        f"serve.recent_images={RECENT}",
    ]
    with log.open("w") as output:
        process = subprocess.Popen(
            command_line("serve", f"ckpt={ckpt}", f"serve.port={port}", *limits, f"hydra.run.dir={folder / 'run'}"),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=COMMAND_ENV,
            start_new_session=True,
        )
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 180
        while not healthy(url):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not come up:\n" + log.read_text()[-3000:]
            time.sleep(0.5)
        yield Server(url, ckpt, process, log)
    finally:  # SIGTERM to the server's process alone, as kill, docker stop and systemd send it
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            left_running = any_left(process.pid, within_s=10)
            if left_running:
                os.killpg(process.pid, signal.SIGKILL)
    # it stops cleanly within seconds (it waited forever before), and its workers with it
    text = log.read_text()
    assert process.returncode == 0 and "stopped (SIGTERM)" in text and "Traceback" not in text, text[-3000:]
    assert not left_running, "processes of the server were left running"


def any_left(session: int, within_s: float) -> bool:
    """Whether a process of the server's session (its process group) still runs after within_s seconds."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            os.killpg(session, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.2)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return answer.read().startswith(b"ok")
    except OSError:
        return False


def request(url: str, body: bytes | None = None, content_type: str = "application/json") -> tuple[int, dict]:
    """An HTTP request (POST with a body, else GET): its status and JSON answer."""
    headers = {"Content-Type": content_type} if body is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def multipart(files: list[tuple[str, str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, file name, content) files and plain fields, and its content type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
        for field, name, content in files
    ]
    parts += [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in (fields or {}).items()
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def as_json(images: list[tuple[str, bytes]], **more: object) -> bytes:
    return json.dumps(
        {"images": [{"name": n, "data": base64.b64encode(c).decode()} for n, c in images], **more}
    ).encode()


@pytest.fixture(scope="module")
def some_images(learnable_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six test images (both classes) in one folder, as a user would send them."""
    folder = tmp_path_factory.mktemp("to_serve")
    for label in ("benign", "malignant"):
        for path in sorted((learnable_root / "test" / label).iterdir())[:3]:
            shutil.copy(path, folder / f"{label}_{path.name}")
    return folder


def test_answers_equal_predict_for_the_same_images(server: Server, some_images: Path, tmp_path: Path) -> None:
    run_in_process("predict", f"ckpt={server.ckpt}", f"input={some_images}", f"hydra.run.dir={tmp_path}")
    expected = pd.read_csv(tmp_path / "predictions.csv").assign(name=lambda t: t["path"].map(lambda p: Path(p).name))
    expected = expected.set_index("name")
    files = sorted(some_images.iterdir())
    status, by_form = request(
        f"{server.url}/predict", *multipart([("image", p.name, p.read_bytes()) for p in files[:4]])
    )
    assert status == 200, by_form
    status, by_json = request(f"{server.url}/predict", as_json([(p.name, p.read_bytes()) for p in files[4:]]))
    assert status == 200, by_json
    answers = by_form["predictions"] + by_json["predictions"]
    assert [a["name"] for a in answers] == [p.name for p in files]
    decision_columns = [c for c in expected.columns if c.startswith("decision_")]
    assert len(decision_columns) == 4  # one per target recall of the run
    for answer in answers:
        row = expected.loc[answer["name"]]
        assert answer["probability"] == pytest.approx(row["probability"], abs=1e-6)
        assert answer["decisions"] == {c.removeprefix("decision_"): row[c] for c in decision_columns}
        assert answer["ood_score"] == pytest.approx(row["ood_score"], rel=1e-5)
        assert 0 <= answer["unusual"] <= 1
        assert answer["refer"] == bool(row["refer"])
    assert by_form["model"]["name"] == by_json["model"]["name"] == "resnet18_albu"


def test_model_card_says_how_it_decides(server: Server, trained_run: Path) -> None:
    status, card = request(f"{server.url}/model")
    assert status == 200
    recorded = json.loads((trained_run / "metrics.json").read_text())["run"]["decision_policy"]
    assert card["decision_policy"]["thresholds"] == pytest.approx(recorded["thresholds"])
    assert card["decision_policy"]["referral"]["threshold"] == pytest.approx(recorded["referral"]["threshold"])
    assert set(card["operating_points"]) == {f"at_recall_{r}" for r in recorded["thresholds"]}
    assert card["input"]["crop_size"] == 32
    assert card["run"]["name"] == "resnet18_albu"
    assert f"at http://{LOOPBACK}:" in server.log.read_text()  # loopback unless told otherwise


def png(width: int, height: int) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (width, height), (180, 120, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_requests_get_a_4xx_and_the_server_goes_on(server: Server, some_images: Path) -> None:
    image = sorted(some_images.iterdir())[0]
    content = image.read_bytes()
    cases = {
        "not an image": (multipart([("image", "notes.txt", b"just some text")]), 415, "notes.txt is not an image"),
        "truncated": (multipart([("image", "cut.jpg", content[: len(content) * 2 // 3])]), 422, "cut.jpg could not"),
        "too many pixels": (multipart([("image", "big.png", png(200, 200))]), 413, "serve.max_image_pixels"),
        "wrong field": (multipart([("file", image.name, content)]), 400, 'field "image"'),
        "empty form": (multipart([], {"explain": "true"}), 400, "no image in the request"),
        "empty body": ((b"", "application/json"), 400, "send images as"),
        "not JSON": ((b"{images", "application/json"), 400, "send images as"),
        "unknown key": ((as_json([(image.name, content)], colour="red"), "application/json"), 400, "colour"),
        "not base64": ((b'{"images": [{"name": "a.jpg", "data": "%%%"}]}', "application/json"), 400, "not base64"),
        "too many images": (multipart([("image", f"{i}.jpg", content) for i in range(5)]), 413, "max_images"),
        "too large": (multipart([("image", "huge.jpg", b"0" * (MAX_BYTES + 1))]), 413, "max_request_bytes"),
    }
    for case, ((body, content_type), status, message) in cases.items():
        answered, answer = request(f"{server.url}/predict", body, content_type)
        assert (answered, case) == (status, case), answer
        assert message in answer["error"], (case, answer)
    status, answer = request(f"{server.url}/predict", *multipart([("image", image.name, content)]))
    assert status == 200 and 0 <= answer["predictions"][0]["probability"] <= 1


def test_the_page_takes_an_image_and_shows_its_decisions(browser: object, server: Server, some_images: Path) -> None:
    image = sorted(some_images.iterdir())[-1]
    _, expected = request(f"{server.url}/predict", as_json([(image.name, image.read_bytes())]))
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    fetched, errors = [], []
    page.on("request", lambda r: fetched.append(r.url))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(server.url + "/")
    page.wait_for_selector("#card table")
    page.set_input_files("#image", str(image))
    page.check("#explain")
    page.click("button[type=submit]")
    page.wait_for_selector("td[data-point]", timeout=60_000)
    shown = {cell.get_attribute("data-point"): cell.inner_text() for cell in page.query_selector_all("td[data-point]")}
    assert shown == expected["predictions"][0]["decisions"]
    probability = page.inner_text(".probability")
    assert f"{expected['predictions'][0]['probability']:.4f}" in probability
    assert "referred" in page.inner_text("#result").lower()
    assert "more unusual than" in page.inner_text("#result") and "% of the images it was checked on" in page.inner_text(
        "#result"
    )
    overlay = page.query_selector("img[alt='where the model looked']")
    assert overlay is not None and overlay.evaluate("i => i.complete && i.naturalWidth > 0")
    assert "the model's validation split" in page.inner_text("#card")
    assert all(url.startswith(server.url) or url.startswith("data:") for url in fetched), fetched
    assert not errors
    page.close()


def test_an_exported_onnx_model_answers_as_its_checkpoint(server: Server, some_images: Path, tmp_path: Path) -> None:
    """ckpt=model.onnx: onnxruntime on the same eval dataset, with the decision policy its JSON fixed; no referral and
    no maps (a request for them is refused)."""
    run_in_process("export", f"ckpt={server.ckpt}", "format=onnx", f"hydra.run.dir={tmp_path}")
    limits = ServeSettings("127.0.0.1", 8000, "cpu", 1, 8, 0.01, 60, MAX_BYTES, MAX_IMAGES, MAX_PIXELS, 0)
    api = LesionAPI(str(tmp_path / "model.onnx"), None, None, limits, tmp_path)
    api.setup("cpu")
    files = sorted(some_images.iterdir())[:MAX_IMAGES]
    payload = {"images": [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in files]}
    exported = api.encode_response(api.predict([api.decode_request(payload)])[0])["predictions"]
    _, served = request(f"{server.url}/predict", as_json([(p.name, p.read_bytes()) for p in files]))
    for onnx_answer, answer in zip(exported, served["predictions"], strict=True):
        assert onnx_answer["probability"] == pytest.approx(answer["probability"], abs=1e-4)  # the export's tolerance
        assert onnx_answer["decisions"] == answer["decisions"]
        assert "refer" not in onnx_answer
    refused = api.decode_request({**payload, "explain": True})
    assert isinstance(refused, RequestError) and refused.status == 400
    assert api.served.card()["decision_policy"]["thresholds"] == pytest.approx(
        request(f"{server.url}/model")[1]["decision_policy"]["thresholds"]
    )


def test_the_serve_bench_times_concurrent_clients(server: Server, some_images: Path) -> None:
    """bench.mode=serve's rounds, against the running server: every request answered, figures that hang together."""
    bodies = [as_json([(p.name, p.read_bytes())]) for p in sorted(some_images.iterdir())] * 2
    measured = round_of_requests(server.url, bodies, clients=3)
    assert (measured["clients"], measured["requests"]) == (3, 12)
    assert 0 < measured["latency_p50_ms"] <= measured["latency_p99_ms"]
    assert measured["images_per_second"] > 0


def test_recent_requests_unlike_the_model_s_images_raise_the_set_alarm(server: Server, tmp_path: Path) -> None:
    """The last RECENT images answered, tested as a set against the model's own validation: flat colours, text,
    generated scenes and photographs are not like dermoscopy; GET /model and /health say so."""
    kinds = not_dermoscopy(tmp_path / "odd", count=RECENT // 4)
    files = [tmp_path / "odd" / path for paths in kinds.values() for path in paths]
    for start in range(0, len(files), MAX_IMAGES):
        status, _ = request(
            f"{server.url}/predict", as_json([(p.name, p.read_bytes()) for p in files[start : start + MAX_IMAGES]])
        )
        assert status == 200
    recent = request(f"{server.url}/model")[1]["recent_requests"]
    assert recent["alarm"] and recent["images"] == RECENT and recent["p_value"] < 0.01
    with urllib.request.urlopen(f"{server.url}/health", timeout=10) as answer:
        said = answer.read().decode()
    assert said.startswith(
        f"ok; warning: these {RECENT} recent images are not like the images the model was checked on"
    )

"""The server: LitServe's app with POST /predict (:mod:`skinclf.serving.api`), GET /health (LitServe's readiness, and
a warning where the recent requests drifted), GET /model (the model card's facts and the set alarm of the recent
requests) and the page at /; every request body bounded in size, and a multipart form turned into the JSON that
/predict reads."""

from __future__ import annotations

import base64
import json
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import litserve
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skinclf.config.schema import EvaluationSettings, ExplainSettings, ServeSettings
from skinclf.serving.api import LesionAPI
from skinclf.serving.recent import recent_drift
from skinclf.serving.served import served_model
from skinclf.serving.uploads import USAGE


class BoundedUploads:
    """ASGI middleware on every POST: refuse a body over ``max_bytes`` (413) before reading more of it, or one that is
    neither JSON nor a form (400); give /predict a multipart form (fields ``image``, and ``explain``) as JSON, so that
    what reaches the model's workers can be sent to them (uploaded files cannot)."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_images: int) -> None:
        self.app, self.max_bytes, self.max_images = app, max_bytes, max_images

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await self.read_body(receive)
        if body is None:
            limit = f"more than serve.max_request_bytes={self.max_bytes}: send fewer or smaller images"
            await JSONResponse({"error": f"the request is {limit}"}, status_code=413)(scope, receive, send)
            return
        headers = dict(scope["headers"])
        try:
            if headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
                body = await self.form_as_json(scope, body)
            else:
                json.loads(body)
        except (ValueError, HTTPException) as error:  # json.JSONDecodeError is one; a malformed form is the other
            message = error.detail if isinstance(error, HTTPException) else str(error)
            if isinstance(error, json.JSONDecodeError):
                message = f"the body is not JSON: {USAGE}"
            await JSONResponse({"error": message}, status_code=400)(scope, receive, send)
            return
        headers[b"content-type"] = b"application/json"
        headers[b"content-length"] = str(len(body)).encode()
        scope = {**scope, "headers": list(headers.items())}
        await self.app(scope, replay(body), send)

    async def read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is larger than allowed."""
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def form_as_json(self, scope: Scope, body: bytes) -> bytes:
        """A multipart form's images and explain field as /predict's JSON (unknown fields are kept, to be refused)."""
        # one file more than allowed: the count is refused by /predict with its limit named
        form = await Request(scope, replay(body)).form(max_files=self.max_images + 1, max_fields=16)
        payload: dict[str, Any] = {"images": []}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "image":
                    raise ValueError(f'the file field is called "{key}": send each image as a field "image"')
                data = base64.b64encode(await value.read()).decode()
                payload["images"].append({"name": value.filename or "image", "data": data})
            else:
                payload[key] = value
        return json.dumps(payload).encode()


def replay(body: bytes) -> Receive:
    """An ASGI receive that gives the body read already."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def page() -> str:
    """The page at /: drop an image, see the decision at each operating point, the referral, the map and the card."""
    return files("skinclf.serving").joinpath("page.html").read_text(encoding="utf-8")


def server(
    ckpt: str, evaluation: EvaluationSettings, explain: ExplainSettings, serve: ServeSettings
) -> litserve.LitServer:
    """LitServe's server for the model, with the routes of the module docstring; its model card is read once here, and
    the set alarm of the recent requests at each GET of /health and /model."""
    served = served_model(ckpt, evaluation, explain, serve)
    card, validation_scores = served.card(), served.validation_scores
    recent_folder = Path(tempfile.mkdtemp(prefix="skinclf-serve-recent-"))
    api = LesionAPI(ckpt, evaluation, explain, serve, recent_folder)
    litserver = litserve.LitServer(
        api,
        accelerator=serve.accelerator,
        workers_per_device=serve.workers,
        timeout=serve.timeout,
        middlewares=[
            (BoundedUploads, {"max_bytes": serve.max_request_bytes, "max_images": serve.max_images_per_request})
        ],
        disable_openapi_url=True,
    )
    app = litserver.app
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != "/"]
    app.add_api_route("/", lambda: HTMLResponse(page()), methods=["GET"], include_in_schema=False)

    def drift() -> dict:
        return recent_drift(recent_folder, validation_scores, serve.recent_images)

    litservers_health = next(r.endpoint for r in app.router.routes if getattr(r, "path", None) == "/health")

    async def health(request: Request) -> Response:
        """LitServe's readiness (ok, or 503 not ready), and where the recent requests drifted, the alarm's sentence."""
        answer = await litservers_health(request)
        alarm = drift()
        if answer.status_code != 200 or not alarm["alarm"]:
            return answer
        return Response(content=f"ok; warning: {alarm['sentence']}", status_code=200)

    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != "/health"]
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/model", lambda: JSONResponse({**card, "recent_requests": drift()}), methods=["GET"])
    return litserver

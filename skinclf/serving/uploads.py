"""What a request to POST /predict holds: its images and whether it asks for the maps, or why it is refused (the
HTTP status and a message that says what to send instead), decided from the JSON body and each image's header."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from skinclf.config.schema import ServeSettings


@dataclass(frozen=True)
class Upload:
    """One image as a request sent it: its name (the file's name, or the one given in JSON) and its bytes."""

    name: str
    content: bytes


#: What /predict takes, for its refusals.
USAGE = 'send images as multipart fields "image", or JSON {"images": [{"name": "a.jpg", "data": "<base64>"}]}'


class RequestError(Exception):
    """A request the server answers with an HTTP error instead of predictions; ``status`` is its code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def uploads_of(payload: Any, limits: ServeSettings) -> tuple[list[Upload], bool]:
    """The images of a request's JSON body (``{"images": [{"name": ..., "data": <base64>}], "explain": false}``; the
    server turns a multipart form into it), and whether it asks for the maps; refused with what is wrong."""
    if not isinstance(payload, dict):
        raise RequestError(400, f"the request is not a JSON object: {USAGE}")
    unknown = sorted(set(payload) - {"images", "explain"})
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(unknown)}: {USAGE} (and optionally explain)")
    entries = payload.get("images")
    if not isinstance(entries, list) or not entries:
        raise RequestError(400, f"no image in the request: {USAGE}")
    if len(entries) > limits.max_images_per_request:
        raise RequestError(
            413,
            f"{len(entries)} images in one request, more than "
            f"serve.max_images_per_request={limits.max_images_per_request}",
        )
    explain = payload.get("explain", False)
    if explain not in (True, False, "true", "false"):
        raise RequestError(400, f"explain={explain!r}: true or false")
    uploads = [upload_of(entry, i) for i, entry in enumerate(entries)]
    for upload in uploads:
        check_image(upload, limits.max_image_pixels)
    return uploads, explain in (True, "true")


def upload_of(entry: Any, index: int) -> Upload:
    """One entry of the JSON images list, its base64 decoded."""
    if not isinstance(entry, dict) or not isinstance(entry.get("data"), str):
        raise RequestError(400, f'images[{index}] has no "data": give each image as {{"name": ..., "data": <base64>}}')
    try:
        content = base64.b64decode(entry["data"], validate=True)
    except ValueError as error:
        raise RequestError(400, f"images[{index}]: its data is not base64 ({error})") from None
    name = str(entry.get("name") or f"image_{index}")
    return Upload(Path(name).name or f"image_{index}", content)


def check_image(upload: Upload, max_pixels: int) -> None:
    """Refuse what is not an image, or one with more pixels than the server decodes, from its header alone."""
    try:
        with Image.open(io.BytesIO(upload.content)) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise RequestError(415, f"{upload.name} is not an image Pillow can read") from None
    except OSError as error:
        raise RequestError(415, f"{upload.name} is not an image Pillow can read ({error})") from None
    except Image.DecompressionBombError as error:
        raise RequestError(413, f"{upload.name}: {error}") from None
    if width * height > max_pixels:
        raise RequestError(
            413, f"{upload.name} has {width}x{height} pixels, more than serve.max_image_pixels={max_pixels}"
        )

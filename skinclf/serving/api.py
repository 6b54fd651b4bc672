"""POST /predict as a LitServe API: requests that arrive together are predicted in one batch.

A request that cannot be answered is carried through the batch as a :class:`RequestError` value and answered with
its HTTP error alone: raising would fail every request of the batch with a 500.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import litserve
from fastapi.responses import JSONResponse

from skinclf.config.schema import EvaluationSettings, ExplainSettings, ServeSettings
from skinclf.core.quiet import quiet_third_parties
from skinclf.serving.recent import RecentScores
from skinclf.serving.served import served_model
from skinclf.serving.uploads import RequestError, Upload, uploads_of

Decoded = tuple[list[Upload], bool] | RequestError


class LesionAPI(litserve.LitAPI):
    """The model's answers for the images of each request (see :class:`ServedModel`); built in each worker process
    from its settings (which is all that is pickled)."""

    def __init__(
        self,
        ckpt: str,
        evaluation: EvaluationSettings,
        explain: ExplainSettings,
        serve: ServeSettings,
        recent_folder: Path,
    ) -> None:
        """``recent_folder``: where each worker keeps the novelty scores of the images it answered lately."""
        super().__init__(max_batch_size=serve.max_batch_size, batch_timeout=serve.batch_timeout, api_path="/predict")
        self.ckpt, self.evaluation_settings, self.explain_settings, self.limits = ckpt, evaluation, explain, serve
        self.recent_folder = recent_folder

    def setup(self, device: str) -> None:
        quiet_third_parties()
        # Ctrl-C reaches every process of the terminal's group: this worker leaves the shutdown to the server, which
        # stops it (SIGTERM), instead of printing KeyboardInterrupt's traceback from the middle of its loop
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.served = served_model(self.ckpt, self.evaluation_settings, self.explain_settings, self.limits)
        if self.limits.recent_images:
            self.served.recent = RecentScores(self.recent_folder, self.limits.recent_images)

    # ``request`` unannotated: LitServe then reads the body (JSON; BoundedUploads has turned a form into it) and hands
    # this worker the parsed payload
    def decode_request(self, request, **kwargs: Any) -> Decoded:
        try:
            uploads, explain = uploads_of(request, self.limits)
        except RequestError as refused:
            return refused
        if explain and not self.served.explains:
            return RequestError(400, "explain=true needs the model's checkpoint: an exported model shows no maps")
        return uploads, explain

    def batch(self, inputs: list[Decoded]) -> list[Decoded]:
        return inputs

    def predict(self, x: list[Decoded], **kwargs: Any) -> list[list[dict[str, Any]] | RequestError]:
        decoded = [d for d in x if not isinstance(d, RequestError)]
        answers = iter(self.served.answer([d[0] for d in decoded], [d[1] for d in decoded]) if decoded else [])
        return [d if isinstance(d, RequestError) else next(answers) for d in x]

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def encode_response(self, output: list[dict[str, Any]] | RequestError, **kwargs: Any) -> Any:
        if isinstance(output, RequestError):
            return JSONResponse({"error": str(output)}, status_code=output.status)
        return {"predictions": output, "model": self.served.identity}

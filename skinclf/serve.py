"""Serve: ``python -m skinclf.serve ckpt=<checkpoint | ensemble folder | model.onnx written by skinclf.export>``.

Starts an HTTP server for the model (see :mod:`skinclf.serving`) on ``serve.host:serve.port``, loopback by default:
POST /predict, GET /health, GET /model and a page at /. It answers as predict does, with the decision policy the
model gives for the evaluation settings (its recorded ones unless given), and runs until stopped (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import litserve

from skinclf.config.schema import ServeConfig
from skinclf.core.errors import SkinclfError, in_this_process_only
from skinclf.entry import command, given_keys, trained_model
from skinclf.serving.app import server


@command("serve")
def main(settings: ServeConfig, run_folder: Path) -> None:
    if settings.ckpt.endswith(".onnx"):  # an export: its decision policy was fixed when it was written
        if given_keys("evaluation"):
            raise SkinclfError(
                f"ckpt={settings.ckpt} is an exported model: its thresholds were fixed by skinclf.export; give "
                + ", ".join(f"evaluation.{key}" for key in given_keys("evaluation"))
                + " to export, and serve the new file"
            )
        ckpt, evaluation = settings.ckpt, settings.evaluation
    else:
        model, evaluation = trained_model(settings)
        ckpt = str(model.path)
    litserver = server(ckpt, evaluation, settings.explain, settings.serve)
    where = f"http://{settings.serve.host}:{settings.serve.port}"
    print(f"serving {ckpt} at {where}: the page at {where}/, POST {where}/predict, GET {where}/model", flush=True)
    print(f"stopped ({run_until_stopped(litserver, settings.serve.host, settings.serve.port)})")


def run_until_stopped(litserver: litserve.LitServer, host: str, port: int) -> str:
    """Serve until Ctrl-C or SIGTERM (a scheduler's, ``kill``'s, ``docker stop``'s); which of them stopped it.

    SIGTERM is turned into the KeyboardInterrupt that LitServe shuts down on. Its other way out sends the workers a
    last message through its queue manager, whose connection the signal may have cut in the middle of a call: it
    then waits for an answer that never comes, and the server does not stop.
    """
    terminated = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal terminated
        terminated = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, in_this_process_only(stop))
    try:
        litserver.run(host=host, port=port, num_api_servers=1, generate_client_file=False, log_level="warning")
    finally:
        signal.signal(signal.SIGTERM, previous)
    return "SIGTERM" if terminated else "Ctrl-C"


if __name__ == "__main__":
    main()

"""``python -m skinclf.bench bench.mode=serve bench.serve.ckpt=<model>``: the server's throughput and latency.

Starts ``python -m skinclf.serve`` on a free loopback port, sends bench.serve.requests requests (one image each, JSON)
from each count of concurrent clients in bench.serve.clients, and times ``predict`` on the same images in this process
(the model's own predict, the same batch size as the server's largest batch). Reports images per second of each, their
ratio, and the latency percentiles of the requests. Bounded: loopback only, a fixed count of requests, and
bench.serve.max_seconds for the server to start and for each round.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from skinclf.benchmark.timing import machine_facts
from skinclf.config.schema import BenchConfig, ServeBenchSettings
from skinclf.core.atomic import write_json
from skinclf.core.errors import SkinclfError
from skinclf.data.image_sets import Images
from skinclf.trained import load_model
from skinclf.trained.inference import Inference, inference_trainer

LOOPBACK = "127.0.0.1"
#: predict's batch size (conf/predict.yaml).
PREDICT_BATCH_SIZE = 64


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, seconds: float) -> None:
    """Return once GET /health answers ok; stop if the server exits or takes longer than allowed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SkinclfError(f"the server stopped before it served (status {server.returncode}): see its log")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.read().startswith(b"ok"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SkinclfError(f"the server did not answer /health within bench.serve.max_seconds={seconds}")


def post(url: str, body: bytes) -> float:
    """Send one /predict request; its latency in seconds."""
    request = urllib.request.Request(f"{url}/predict", body, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as answer:
        answer.read()
    return time.perf_counter() - started


def round_of_requests(url: str, bodies: list[bytes], clients: int) -> dict[str, float]:
    """Every body sent once from ``clients`` threads: images per second and latency percentiles (ms)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = np.array(list(pool.map(lambda body: post(url, body), bodies)))
    seconds = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(bodies),
        "images_per_second": len(bodies) / seconds,
        "latency_p50_ms": float(np.percentile(latencies, 50) * 1000),
        "latency_p99_ms": float(np.percentile(latencies, 99) * 1000),
    }


def in_process_images_per_second(images: Images, ckpt: str) -> float:
    """predict's own speed on the images, in this process (its batch size, no loader workers), after one untimed
    pass."""
    model = load_model(ckpt)
    inference = Inference(inference_trainer("cpu", progress_bar=False), PREDICT_BATCH_SIZE, num_workers=0)
    model.predict(images, inference, "none")
    started = time.perf_counter()
    model.predict(images, inference, "none")
    return len(images.table) / (time.perf_counter() - started)


def bench_images(settings: ServeBenchSettings) -> Images:
    """The first bench.serve.requests images of the model's test split (repeated if it has fewer)."""
    test = load_model(settings.ckpt).split("test")
    rows = np.resize(np.arange(len(test.table)), settings.requests)
    return Images(test.root, test.table.iloc[rows].reset_index(drop=True)[["path"]], test.described)


def run_serve_bench(settings: BenchConfig, run_folder: Path) -> dict:
    """Serve the model in a child process, send the requests, compare with predict in this process; bench.json."""
    bench = settings.bench.serve
    if bench.ckpt is None:
        raise SkinclfError("bench.mode=serve times a trained model: give bench.serve.ckpt=<checkpoint | ensemble>")
    images = bench_images(bench)
    bodies = [
        json.dumps(
            {"images": [{"name": Path(p).name, "data": base64.b64encode((images.root / p).read_bytes()).decode()}]}
        ).encode()
        for p in images.table["path"]
    ]
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    arguments = [f"ckpt={bench.ckpt}", f"serve.port={port}", f"serve.max_batch_size={bench.max_batch_size}"]
    log = (run_folder / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "skinclf.serve", *arguments, f"hydra.run.dir={run_folder / 'server'}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the server and its workers, stopped together
    )
    try:
        wait_until_healthy(url, server, bench.max_seconds)
        post(url, bodies[0])  # the first request warms the worker
        rounds = [round_of_requests(url, bodies, clients) for clients in bench.clients]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
    in_process = in_process_images_per_second(images, bench.ckpt)
    for measured in rounds:
        measured["ratio_to_in_process_predict"] = measured["images_per_second"] / in_process
    results = {
        "mode": "serve",
        "machine": machine_facts(torch.device("cpu")),
        "ckpt": str(bench.ckpt),
        "images": len(images.table),
        "max_batch_size": bench.max_batch_size,
        "in_process_predict_images_per_second": in_process,
        "rounds": rounds,
    }
    write_json(run_folder / "bench.json", results)
    return results


def print_serve_table(results: dict) -> None:
    table = pd.DataFrame(results["rounds"]).rename(columns=lambda c: c.replace("_", " "))
    print(f"in-process predict: {results['in_process_predict_images_per_second']:.1f} images/s")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))

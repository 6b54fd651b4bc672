"""The benchmark runs on the synthetic dataset and writes a well-formed bench.json (no speed asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_in_process, synthetic_overrides


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_writes_its_figures(learnable_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty torch home"))  # no ImageNet weights at hand
    result = run_in_process(
        "bench",
        *(o for o in synthetic_overrides(learnable_root) if o != "model.weights=null"),  # speed needs no weights
        *(
            "model.preprocessing.resize_size=36",
            "model.preprocessing.crop_size=32",
            "data.batch_size=16",
            "data.num_workers=0",
        ),
        *("bench.rounds=2", "bench.batches=2", "bench.warmup_batches=1"),
        *("bench.pipeline_batches=2", "bench.worker_counts=[0,1]"),
        f"hydra.run.dir={tmp_path}",
    )

    bench = json.loads((tmp_path / "bench.json").read_text())
    assert {row["source"] for row in bench["pipeline"]} == {"decode JPEG", "uint8 cache"}
    assert {row["workers"] for row in bench["pipeline"]} == {0, 1}
    assert set(bench["images_per_s"]) == {"model_step", "bare_loop", "lightning_loop"}
    assert all(rate > 0 for rate in bench["images_per_s"].values())
    assert len(bench["rounds"]) == 2 and set(bench["rounds"][0]) == set(bench["images_per_s"])
    assert bench["ratios"]["lightning_loop / bare_loop"] > 0
    assert "cache / decode, 0 workers" in bench["ratios"]
    assert bench["machine"]["device"] == "cpu" and "torch" in bench["machine"]["versions"]
    assert bench["peak_host_memory_mb"]["main_process"] > 0 and bench["cache_mb"] > 0
    assert "(c) Lightning training loop" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_prepare_bench_times_skinclf_against_the_floor_and_reuses_its_images(tmp_path: Path) -> None:
    photographs = tmp_path / "photographs"
    sizes = ("bench.prepare.images=12", "bench.prepare.width=640", "bench.prepare.height=480")
    for run in ("first", "again"):  # the second run reuses the generated images
        result = run_in_process(
            "bench",
            *(
                "bench.mode=prepare",
                "model.weights=null",
                "model.preprocessing.resize_size=64",
                "model.preprocessing.crop_size=56",
                *sizes,
            ),
            f"bench.prepare.folder={photographs}",
            f"hydra.run.dir={tmp_path / run}",
        )
        bench = json.loads((tmp_path / run / "bench.json").read_text())
        assert {"floor, one process", "skinclf", "skinclf, whole decode"} <= set(bench["seconds"])
        assert all(seconds > 0 for seconds in bench["seconds"].values())
        assert "12 JPEGs of 640x480" in bench["config"] and "skinclf, whole decode" in result.stdout
    assert len(list(photographs.rglob("*.jpg"))) == 12

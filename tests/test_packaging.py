"""The built wheel carries the Hydra configs: the commands work from an installed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_wheel_ships_the_config_groups(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in ("skinclf", "conf", "hydra_plugins"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", str(source)]
    subprocess.run([*build, "--wheel-dir", str(tmp_path / "wheels")], check=True, cwd=tmp_path, timeout=150)
    wheel = next((tmp_path / "wheels").glob("skinclf-*.whl"))
    with zipfile.ZipFile(wheel) as pure_wheel:  # a pure-Python wheel installs by unpacking (what pip --target does)
        pure_wheel.extractall(tmp_path / "site")

    # run from tmp_path so that neither the checkout nor its editable install can be picked up
    installed = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    where = subprocess.run(
        [sys.executable, "-c", "import skinclf.conf; print(skinclf.conf.__file__)"],
        cwd=tmp_path,
        env=installed,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(tmp_path / "site"))
    # the files beside the code: report.html's template and the server's page
    site = tmp_path / "site" / "skinclf"
    assert (site / "reports" / "templates" / "report.html.j2").is_file() and (site / "serving" / "page.html").is_file()
    assert (site / "conf" / "serve.yaml").is_file()
    shown = subprocess.run(
        [sys.executable, "-m", "skinclf.train", "experiment=rx50_albu", "--cfg", "job", "--resolve"],
        cwd=tmp_path,
        env=installed,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "arch: resnext50_32x4d" in shown.stdout and "resize_size: 232" in shown.stdout
    # Hydra finds the resumable sweeper of hydra/sweeper=lr_aug in the installed package
    sweeper = "hydra_plugins.skinclf_sweeper.resumable_optuna_sweeper.ResumableOptunaSweeper"
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from hydra.core.plugins import Plugins; print({sweeper!r} in Plugins.instance().class_name_to_class)",
        ],
        cwd=tmp_path,
        env=installed,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.stdout.strip() == "True", found.stderr

"""report.html opened in a real browser (Chromium through Playwright): every picture shows, nothing is fetched,
and the page holds what a reader looks for, for one run and for runs compared.

Chromium comes from the system (`make test` installs Debian's where it may) or from `playwright install chromium`;
without either these tests are skipped, and say why."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_in_process

from skinclf.metrics.figures import recall_key

pytest.importorskip("playwright.sync_api", reason="playwright is not installed: make install")


class Page:
    """A report opened in the browser, with what it asked the network for and what it logged as errors."""

    def __init__(self, browser: object, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.fetched: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.fetched.append(request.url))
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(path.as_uri())

    def images(self) -> list[dict]:
        """Every picture's alt text, natural width and the width it is drawn at."""
        return self.page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, loaded: i.complete && i.naturalWidth > 0,"
            " width: i.getBoundingClientRect().width}))"
        )

    def texts(self, selector: str) -> list[str]:
        return [element.inner_text().strip() for element in self.page.query_selector_all(selector)]

    def assert_self_contained(self) -> None:
        """Every picture shows within the page's width, nothing but the file itself is fetched, no script error."""
        images = self.images()
        assert images and all(image["loaded"] for image in images), [i["alt"] for i in images if not i["loaded"]]
        assert all(0 < image["width"] <= 1280 for image in images)
        assert [url for url in self.fetched if not url.startswith(("file:", "data:"))] == []
        assert self.errors == []


def test_a_run_report_shows_its_figures_audit_errors_and_model_card(browser: object, diagnosis_run: Path) -> None:
    metrics = json.loads((diagnosis_run / "metrics.json").read_text())
    page = Page(browser, diagnosis_run / "report.html")
    page.assert_self_contained()

    alts = [image["alt"] for image in page.images()]
    pictures = (
        "Precision-recall",
        "ROC",
        "Reliability",
        "Confusion matrix",
        "Risk-coverage",
        "the most confident errors",
    )
    for picture in pictures:
        assert any(picture in alt for alt in alts), (picture, alts)
    assert sorted(alt for alt in alts if alt.startswith("recall by")) == [
        "recall by age_approx",
        "recall by anatom_site_general",
        "recall by sex",
    ]
    headings = page.texts("h3")
    for heading in ("Operating points", "Referral", "Audit by subgroup", "The most confident errors", "Model card"):
        assert heading in headings
    referral = metrics["referral"]  # how many referred, and the operating points on the images kept
    assert f"{referral['referred']} of the evaluated images" in page.page.inner_text("p.referral")
    kept = page.page.query_selector_all("h3:text('Referral') + p.referral + table tr")[1:]
    assert len(kept) == len(metrics["operating_points"])

    # one row per target recall, each threshold with its interval
    policy = metrics["run"]["decision_policy"]
    stated = page.page.inner_text("h3:text('Operating points') + p.policy")  # how the thresholds were chosen
    assert f"({policy['images']} images, {policy['malignant']} malignant) by the rule {policy['rule']}" in stated
    rows = page.page.query_selector_all("h3:text('Operating points') + p.policy + table tr")[1:]
    targets = [recall_key(point["target_recall"]) for point in metrics["operating_points"]]
    assert [row.query_selector("td").inner_text().split()[0] for row in rows] == targets
    assert all("[" in row.query_selector_all("td")[1].inner_text() for row in rows)

    card = page.page.inner_text("dl.card")
    training = metrics["training_data"]
    assert f"{training['images']} images, {training['malignant']} malignant" in card
    assert "resnet18" in card and "Intended use" in card and "limitations found" in card
    assert page.texts(".summary div")[0].startswith(f"test AUROC {metrics['test/auroc']:.3f}")


def test_the_report_of_runs_compares_them_side_by_side(
    browser: object, trained_run: Path, diagnosis_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    run_in_process("report", f"runs=[{trained_run},{diagnosis_run}]", f"hydra.run.dir={out}")
    page = Page(browser, out / "report.html")
    page.assert_self_contained()

    assert page.page.title() == "skinclf: 2 runs compared"
    rows = page.page.query_selector_all("h2:text('The runs compared') + table tr")[1:]
    common = Path(os.path.commonpath([trained_run, diagnosis_run]))
    labels = [str(run.relative_to(common)) for run in (trained_run, diagnosis_run)]  # each below the common folder
    assert [row.query_selector("td").inner_text() for row in rows] == labels
    for row, run in zip(rows, (trained_run, diagnosis_run), strict=True):
        auroc = json.loads((run / "metrics.json").read_text())["test/auroc"]
        assert f"{auroc:.3f}" in row.inner_text()
    assert any(image["alt"] == "the runs' test precision-recall curves" for image in page.images())
    side_by_side = page.page.query_selector_all("h3:text('The audits by subgroup, side by side') + div figure")
    assert len(side_by_side) == 3  # the diagnosis run's three audited columns; the other run audits none
    assert len(page.texts("h2")) == 3  # the comparison, then each run

"""`moesim report`: terminal summary and a self-contained HTML page whose SVG plots render offline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from moesim.cli import cli
from moesim.sweep.report import PLOT_IDS, render_html, summary_rows
from moesim.sweep.store import open_sweep
from sweep_testing import write_fake_sweep


@pytest.fixture()
def sweep(tmp_path):
    return write_fake_sweep(tmp_path / "sweep")


def _svgs(page: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r'<svg id="([^"]+)".*?</svg>', page, re.S)}


def test_html_is_self_contained_with_every_plot(sweep):
    meta, table = open_sweep(sweep)
    page = render_html(meta, table)
    svgs = _svgs(page)
    for plot_id in PLOT_IDS:
        assert plot_id in svgs, plot_id
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    for body in svgs.values():
        ET.fromstring(body)  # each plot is well-formed XML


def test_plots_carry_the_data(sweep):
    meta, table = open_sweep(sweep)
    svgs = _svgs(render_html(meta, table))
    # the largest model is the first focus model: one heat-map cell per (device, quant) best point
    heat = svgs["plot-tok-s-by-device-quant-0"]
    assert heat.count('class="cell"') == 3 * 2
    assert "huge-moe" in heat
    assert svgs["plot-hit-rate-vs-vram"].count("<circle") >= 1
    assert svgs["plot-memory-tiers"].count('class="bar"') >= 2
    grades = svgs["plot-grades"]
    assert grades.count('class="bar"') == 6


def test_same_sweep_same_page(sweep):
    meta, table = open_sweep(sweep)
    assert render_html(meta, table) == render_html(meta, table)


def test_summary_rows(sweep):
    _, table = open_sweep(sweep)
    rows = summary_rows(table)
    assert [r["model"] for r in rows] == ["huge-moe", "tiny-moe"]
    tiny = rows[1]
    assert tiny["best_grade"] == "S"
    assert sum(tiny["grades"].values()) == tiny["cells"] == 9


def test_report_cli_json_and_terminal(sweep, tmp_path):
    html = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", str(sweep), "-o", str(html), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["html"] == str(html) and data["points"] > 0
    assert html.read_text().startswith("<!DOCTYPE html>")
    result = CliRunner().invoke(cli, ["report", str(sweep)])
    assert result.exit_code == 0
    assert "tiny-moe" in result.output and "huge-moe" in result.output


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(sweep, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium); skipping the rendering check")
    html = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(sweep), "-o", str(html)])
    assert result.exit_code == 0, result.output
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", html.as_uri()]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for plot_id in PLOT_IDS:
        assert f'id="{plot_id}"' in dom, plot_id
    # the browser parsed the SVG as SVG (rects and texts survive in the serialised DOM)
    assert dom.count("<rect") >= 20 and dom.count("<title>") >= 10
    shot = tmp_path / "shot.png"
    done = subprocess.run(args[:-2] + [f"--screenshot={shot}", "--window-size=1200,2400", html.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 10_000

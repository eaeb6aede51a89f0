"""The report in the real browser CI installs (Debian's headless chromium): hostile sample text stays text, and
every table fits a 1,400-pixel window, for one run and for two side by side."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.synthetic_run import write_records
from tests.test_analysis_commands import chromium
from tests.test_show import hostile_record
from tpt.cli import main
from tpt.config import GenerateConfig, PipelineConfig, SourceConfig

WINDOW = 1400
ATTACKS = ("<script>document.body.setAttribute('data-owned', 'script')</script>",
           "<img src=x onerror=\"document.body.setAttribute('data-owned', 'img')\">",
           "</blockquote></details></section><svg onload=\"document.body.setAttribute('data-owned', 'svg')\">")
# Measures every table against the box it sits in; added to a copy of the page, whose policy would stop it.
MEASURE = ("<script>document.title = JSON.stringify({page: document.documentElement.scrollWidth, tables: "
           "[...document.querySelectorAll('table')].map(t => [t.scrollWidth, t.parentElement.clientWidth])})</script>")


def dom(page: Path, width: int = WINDOW) -> str:
    """The page's DOM after chromium has loaded it (and run whatever it was allowed to run)."""
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run", f"--window-size={width},1000",
                           "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120)
    return done.stdout


def test_hostile_sample_text_stays_text(tmp_path):
    chromium()
    config = PipelineConfig(sources=[SourceConfig(name="web", path="web.jsonl")], generate=GenerateConfig(),
                            output={"dir": str(tmp_path / "run")})
    write_records(config.output.dir, [hostile_record(i, attack) for i, attack in enumerate(ATTACKS)], config)
    assert main(["report", config.output.dir, "--label", ATTACKS[0], "--output", str(tmp_path / "report")]) == 0
    page = tmp_path / "report" / "report.html"
    assert "Content-Security-Policy" in page.read_text()
    loaded = dom(page)
    body = loaded.split("<body", 1)[1]
    assert "data-owned" not in body.split(">", 1)[0]  # nothing ran
    assert not re.search(r"<(script|svg)\b", body) and not re.search(r"<[^>]*\son(error|load)=", body)  # no element came from the text
    assert all(re.match(r"<img alt=\"[^\"<]*\" src=\"data:image/png;base64,", tag) for tag in re.findall(r"<img\b[^>]*>", body))
    assert loaded.count("&lt;script&gt;document.body.setAttribute") >= 3  # the samples and the run name, shown as text
    assert loaded.count("&lt;img src=x onerror=") >= 2 and "&lt;svg onload=" in loaded


def measured(report: Path) -> dict:
    page = report.read_text()
    copy = report.with_name("measured.html")
    copy.write_text(re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", page).replace("</body>", MEASURE + "</body>"))
    return json.loads(re.search(r"<title>(.*)</title>", dom(copy)).group(1).replace("&quot;", '"'))


@pytest.mark.parametrize("compare", [False, True])
def test_tables_fit_a_1400_pixel_window(full_run, short_budget_run, tmp_path, compare):
    chromium()
    runs = [full_run[0].output.dir, *([short_budget_run[0].output.dir] if compare else [])]
    assert main(["report", *runs, "--output", str(tmp_path / "report")]) == 0
    widths = measured(tmp_path / "report" / "report.html")
    assert len(widths["tables"]) >= (30 if compare else 6)
    assert widths["page"] <= WINDOW
    assert all(table <= box for table, box in widths["tables"]), widths["tables"]

"""bench/svgplot.py: the SVG is well-formed and draws what it was given (bench/ is outside testpaths)."""

from __future__ import annotations

import doctest
import xml.etree.ElementTree as ET
from types import ModuleType

import pytest

from tests.conftest import REPO
from tests.tools.scripts import load_script

NS = {"svg": "http://www.w3.org/2000/svg"}
SERIES = {
    "cold": [(1e5, 2500.0), (1e3, 3400.0), (1e4, 3100.0), (1e6, 1900.0)],  # unsorted on purpose
    "warm": [(1e3, 9000.0), (1e4, 8800.0), (1e5, 7000.0)],
}


@pytest.fixture(scope="module")
def svgplot() -> ModuleType:
    return load_script(REPO / "bench" / "svgplot.py")


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_doctests(svgplot: ModuleType) -> None:
    failed, tried = doctest.testmod(svgplot, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 3 and failed == 0


def test_line_chart_draws_each_series_in_x_order(svgplot: ModuleType) -> None:
    root = ET.fromstring(svgplot.line_chart(SERIES, title="Throughput", x_label="meters", y_label="readings/s"))
    lines = root.findall("svg:polyline", NS)
    assert len(lines) == len(SERIES)
    for line, points in zip(lines, SERIES.values(), strict=True):
        coords = [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]
        assert len(coords) == len(points)
        xs = [x for x, _ in coords]
        assert xs == sorted(xs) and len(set(xs)) == len(xs)
    # SVG y grows downwards: the warm series' largest value is the highest point.
    warm = [tuple(map(float, p.split(","))) for p in lines[1].get("points", "").split()]
    assert min(y for _, y in warm) == warm[0][1]
    labels = texts(root)
    for wanted in ["Throughput", "meters", "readings/s", "cold", "warm", "1k", "10k", "100k", "1M", "0", "10,000"]:
        assert wanted in labels


def test_log_ticks_are_powers_of_ten_equally_spaced(svgplot: ModuleType) -> None:
    root = ET.fromstring(svgplot.line_chart(SERIES, title="t", x_label="x", y_label="y"))
    xs = {t.text: float(t.get("x", 0)) for t in root.iter("{http://www.w3.org/2000/svg}text")}
    gaps = [xs[b] - xs[a] for a, b in [("1k", "10k"), ("10k", "100k"), ("100k", "1M")]]
    assert max(gaps) - min(gaps) <= 0.2  # coordinates are written to 0.1 px


def test_side_by_side_is_one_document(svgplot: ModuleType) -> None:
    panels = [svgplot.line_chart(SERIES, title=f"panel {k}", x_label="x", y_label="y", width=400) for k in range(2)]
    doc = svgplot.side_by_side(panels, title="machine: 2 cores")
    assert doc.startswith("<?xml")
    root = ET.fromstring(doc)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("width") == "800"
    assert len(root.findall(".//svg:polyline", NS)) == 2 * len(SERIES)
    assert {"machine: 2 cores", "panel 0", "panel 1"} <= set(texts(root))


def test_nice_ticks_round_up_from_zero(svgplot: ModuleType) -> None:
    assert svgplot.nice_ticks(9000.0) == [0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0]
    assert svgplot.nice_ticks(0.9)[-1] >= 0.9
    assert svgplot.nice_ticks(0.0) == [0.0, 1.0]

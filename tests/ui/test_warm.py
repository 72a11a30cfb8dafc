"""The page shell ``babysit ui`` serves: Streamlit's own, plus Streamlit's full plotly bundle
imported at once on the pages that draw ``st.plotly_chart`` (not on the Run and Compare pages,
which draw in babysit's own chart frame). In process, on the real
Streamlit package; the served-over-HTTP side is in tests/e2e/test_serve_process.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from streamlit import file_util

from babysit.ui import warm
from babysit.ui.views import PAGES


@pytest.fixture
def served():
    original = file_util.get_static_dir
    folder = warm.page_shell()
    try:
        yield Path(original()), folder
    finally:
        file_util.get_static_dir = original
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def test_the_shell_asks_for_plotly_on_the_pages_that_draw_it(served):
    streamlit_static, folder = served
    assert folder is not None and file_util.get_static_dir() == str(folder)
    shell = (folder / "index.html").read_text()
    main = re.search(r'<script type="module"[^>]*src="[^"]+"></script>', shell)
    assert main
    # Streamlit's full plotly bundle: imported after the app's own script, on the pages that
    # still draw st.plotly_chart only
    bundle = re.search(r'import\("\./(static/js/PlotlyChart\.[^"]+\.js)"\)', shell)
    assert bundle and (folder / bundle.group(1)).is_file() and bundle.start() > main.end()
    assert not re.search(r'<link[^>]*PlotlyChart', shell)    # the other pages load none of it
    pattern = re.search(r"if \(/(.+)/\.test\(location\.pathname\)\) import\(", shell)
    full = re.compile(pattern.group(1).replace("\\/", "/"))
    for path in ("/lineage", "/study", "/base/study", "/lineage/"):
        assert full.search(path), path
    # the Run and Compare pages draw in babysit's chart frame: no full bundle there
    for path in ("/", "/runs", "/run", "/compare", "/running", "/study/x"):
        assert not full.search(path), path
    # the rest is Streamlit's own shell and files, unchanged
    original = (streamlit_static / "index.html").read_text()
    assert shell.count("<script") == original.count("<script") + 1
    for entry in streamlit_static.iterdir():
        if entry.name != "index.html":
            assert (folder / entry.name).resolve() == entry.resolve()


def test_the_chart_pages_are_pages():
    assert set(warm.CHART_PAGES) <= set(PAGES) and "runs" not in warm.CHART_PAGES
    assert set(warm.FRAME_CHART_PAGES) <= set(PAGES) and "runs" not in warm.FRAME_CHART_PAGES
    assert not set(warm.CHART_PAGES) & set(warm.FRAME_CHART_PAGES)


def test_an_unexpected_shell_changes_nothing(tmp_path, monkeypatch):
    (tmp_path / "static" / "js").mkdir(parents=True)
    (tmp_path / "index.html").write_text("<html><script src='x.js'></script></html>")
    monkeypatch.setattr(file_util, "get_static_dir", lambda: str(tmp_path))
    assert warm.page_shell() is None                   # no plotly bundle, no module script
    assert file_util.get_static_dir() == str(tmp_path)

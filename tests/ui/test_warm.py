"""The page shell ``babysit ui`` serves: Streamlit's own, plus plotly's bundle asked for at once
(preloaded everywhere, imported on the pages that draw charts). In process, on the real
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
    folder = warm.preload_plotly()
    try:
        yield Path(original()), folder
    finally:
        file_util.get_static_dir = original
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def test_the_shell_asks_for_plotly_before_the_app_starts(served):
    streamlit_static, folder = served
    assert folder is not None and file_util.get_static_dir() == str(folder)
    shell = (folder / "index.html").read_text()
    bundle = re.search(r'<link rel="modulepreload" crossorigin href="\./(static/js/PlotlyChart'
                       r'\.[^"]+\.js)">', shell)
    assert bundle and (folder / bundle.group(1)).is_file()
    main = re.search(r'<script type="module"[^>]*src="[^"]+"></script>', shell)
    assert main and shell.index(bundle.group(0)) < main.start()
    # the import comes after the app's own script, for the chart pages only
    importer = shell.index(f'import("./{bundle.group(1)}")')
    assert importer > main.end()
    pattern = re.search(r"if \(/(.+)/\.test\(location\.pathname\)\)", shell).group(1)
    js_regex = re.compile(pattern.replace("\\/", "/"))
    for path in ("/run", "/compare", "/lineage", "/study", "/base/run", "/run/"):
        assert js_regex.search(path), path
    for path in ("/", "/runs", "/running", "/rerun", "/run/x"):
        assert not js_regex.search(path), path
    # the rest is Streamlit's own shell and files, unchanged
    original = (streamlit_static / "index.html").read_text()
    assert shell.replace(bundle.group(0) + "\n    ", "", 1).count("<script") == \
        original.count("<script") + 1
    for entry in streamlit_static.iterdir():
        if entry.name != "index.html":
            assert (folder / entry.name).resolve() == entry.resolve()


def test_the_chart_pages_are_pages():
    assert set(warm.CHART_PAGES) <= set(PAGES) and "runs" not in warm.CHART_PAGES


def test_an_unexpected_shell_changes_nothing(tmp_path, monkeypatch):
    (tmp_path / "static" / "js").mkdir(parents=True)
    (tmp_path / "index.html").write_text("<html><script src='x.js'></script></html>")
    monkeypatch.setattr(file_util, "get_static_dir", lambda: str(tmp_path))
    assert warm.preload_plotly() is None                   # no plotly bundle, no module script
    assert file_util.get_static_dir() == str(tmp_path)

"""``python -m babysit.ui.warm run app.py ...``: Streamlit's own command line, after importing
and exercising what the pages need, so the first chart of a fresh dashboard comes fast.

Streamlit imports a page's modules only when the first browser connects; plotly then builds
its validators on the first figure, pandas and SQLAlchemy load their parts: seconds a user waits
at the first page. Done here, before the server listens, they are in ``sys.modules`` (shared by
every session) by the time anyone connects.

The browser side gets the same treatment: :func:`preload_plotly` has the page shell ask for
Streamlit's plotly bundle as soon as it loads (see its docstring).
"""

from __future__ import annotations

import atexit
import re
import shutil
import sys
import tempfile
from pathlib import Path

#: The dashboard's pages (``babysit.ui.views.PAGES``) that draw plotly charts.
CHART_PAGES = ("run", "compare", "lineage", "study")


def warm() -> None:
    """Import the pages and draw one small figure of each kind (nothing is kept)."""
    import pandas as pd

    # streamlit.emojis: the page icon is an emoji, and the first st.set_page_config of the
    # server compiles Streamlit's emoji patterns on import (0.1 s of the first page)
    import streamlit.emojis  # noqa: F401

    from babysit.ui import compare_figures, panels, state  # noqa: F401 - imported to warm them
    from babysit.ui.views import compare, lineage, run, runs, study  # noqa: F401

    df = pd.DataFrame({"step": [0, 1, 0, 1], "name": ["loss", "loss", "hp/lr", "hp/lr"],
                       "value": [2.0, 1.0, 0.1, 0.1], "time": 0.0, "day": 1, "branch": 0,
                       "superseded": False})
    panels.panels_figure(df).to_json()
    compare_figures.compare_panels_figure({1: df}, ["loss"]).to_json()


def preload_plotly() -> Path | None:
    """Serve Streamlit's page shell with plotly's bundle asked for at once; returns the folder
    served instead of Streamlit's own (None: unchanged).

    Streamlit fetches its 4.7 MB plotly bundle only when a chart's element reaches the browser,
    a second after navigation, then downloads it (0.7 s on 2 cores) and evaluates it (0.45 s)
    before it can draw the first curve. The shell served here lists it as a ``modulepreload``
    (downloaded and compiled from the start), and on the pages that draw charts (``/run``,
    ``/compare``, ...) also imports it, so it is evaluated while the page waits for its
    websocket and the server's first answer. The Runs page only preloads it: evaluating it
    there delayed its table by about 0.45 s. Measured (fresh tabs, interleaved, 5 each, 1,000-
    step run): first curve 3.16 s with Streamlit's shell, 2.89 s preloaded, 2.27 s imported.

    The folder is Streamlit's static folder as links, with its own index.html; Streamlit serves
    it through ``file_util.get_static_dir``, which this replaces for this process (the server's
    only, before it starts). If Streamlit's layout changes (no single plotly bundle, not one
    module script in the shell), nothing is replaced and the dashboard serves as before.
    """
    from streamlit import file_util

    static = Path(file_util.get_static_dir())
    shell = (static / "index.html").read_text(encoding="utf-8")
    bundles = sorted((static / "static" / "js").glob("PlotlyChart.*.js"))
    main_script = re.findall(r'<script type="module"[^>]*></script>', shell)
    if len(bundles) != 1 or len(main_script) != 1:
        return None
    bundle = f"./static/js/{bundles[0].name}"
    pages = "|".join(CHART_PAGES)
    shell = shell.replace(main_script[0], (
        f'<link rel="modulepreload" crossorigin href="{bundle}">\n    {main_script[0]}\n'
        f'    <script type="module">/* babysit: a page with charts evaluates plotly now */\n'
        f'      if (/(^|\\/)({pages})\\/?$/.test(location.pathname)) import("{bundle}");\n'
        f'    </script>'))
    served = Path(tempfile.mkdtemp(prefix="babysit-static-"))
    atexit.register(shutil.rmtree, served, ignore_errors=True)
    for entry in static.iterdir():
        if entry.name != "index.html":
            (served / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (served / "index.html").write_text(shell, encoding="utf-8")
    file_util.get_static_dir = lambda: str(served)
    return served


def main() -> None:
    import logging

    # Importing the pages and drawing figures before the server runs makes Streamlit warn
    # ("missing ScriptRunContext", "No runtime found, using MemoryCacheStorageManager") from
    # loggers it creates on the way: true and harmless here, and a wall of warnings to a
    # newcomer. Warnings and below are off while warming; errors still show.
    logging.disable(logging.WARNING)
    try:
        for step in (warm, preload_plotly):
            try:
                step()
            except Exception as exc:  # warming is an optimisation: never a reason not to serve
                print(f"babysit: warming the dashboard failed at {step.__name__} ({exc!r}); "
                      "serving anyway", file=sys.stderr)
    finally:
        logging.disable(logging.NOTSET)
    # Warming read Streamlit's config before the command line's flags; applying them now makes
    # Streamlit say "please restart streamlit" for its server options. No server runs yet, so
    # they do take effect: the message would only mislead.
    logging.getLogger("streamlit.config").addFilter(
        lambda record: "To have these changes be reflected" not in record.getMessage())
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()

"""``python -m babysit.ui.warm run app.py ...``: Streamlit's own command line, after importing
and exercising what the pages need, so the first chart of a fresh dashboard comes fast.

Streamlit imports a page's modules only when the first browser connects; plotly then builds
its validators on the first figure, pandas and SQLAlchemy load their parts: seconds a user waits
at the first page. Done here, before the server listens, they are in ``sys.modules`` (shared by
every session) by the time anyone connects.

The browser side gets the same treatment: :func:`page_shell` has the page shell ask for each
page's chart code as soon as it loads (see its docstring).
"""

from __future__ import annotations

import atexit
import re
import shutil
import sys
import tempfile
from pathlib import Path

#: The dashboard's pages (``babysit.ui.views.PAGES``) that draw ``st.plotly_chart`` charts.
CHART_PAGES = ("lineage", "study")
#: The pages that draw their charts in babysit's own frame (``babysit.ui.chart``): they load
#: plotly's basic bundle there, and nothing from the shell.
FRAME_CHART_PAGES = ("run", "compare")


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


def page_shell() -> Path | None:
    """Serve Streamlit's page shell with plotly's bundle imported at once on the pages that draw
    ``st.plotly_chart``; returns the folder served instead of Streamlit's own (None: unchanged).

    Streamlit fetches its 4.7 MB plotly bundle only when a chart's element reaches the browser,
    a second after navigation, then downloads and evaluates it before it can draw. Imported
    while the page waits for its websocket, the first curve came at 2.27 s instead of 3.16 s
    (fresh tabs, interleaved, 5 each, 1,000-step run). Only ``CHART_PAGES`` load it: the Run
    and Compare pages draw in babysit's own frame with plotly's basic bundle
    (``babysit.ui.chart``), and the full bundle, even only preloaded, cost the Run page's first
    curve 0.3 s once it no longer used it. Prefetching the frame's bundle from the shell was
    measured too and not kept (2.71 s against 2.40 s without, median of 8 tabs each).

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
        f'{main_script[0]}\n'
        f'    <script type="module">/* babysit: a page with plotly charts evaluates plotly now */\n'
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
        for step in (warm, page_shell):
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

"""``python -m babysit.ui.warm run app.py ...``: Streamlit's own command line, after importing
and exercising what the pages need, so the first chart of a fresh dashboard comes fast.

Streamlit imports a page's modules only when the first browser connects; plotly then builds
its validators on the first figure, pandas and SQLAlchemy load their parts: seconds a user waits
at the first page. Done here, before the server listens, they are in ``sys.modules`` (shared by
every session) by the time anyone connects.
"""

from __future__ import annotations

import sys


def warm() -> None:
    """Import the pages and draw one small figure of each kind (nothing is kept)."""
    import pandas as pd

    from babysit.ui import compare_figures, panels, state  # noqa: F401 - imported to warm them
    from babysit.ui.views import compare, lineage, run, runs, study  # noqa: F401

    df = pd.DataFrame({"step": [0, 1, 0, 1], "name": ["loss", "loss", "hp/lr", "hp/lr"],
                       "value": [2.0, 1.0, 0.1, 0.1], "time": 0.0, "day": 1, "branch": 0,
                       "superseded": False})
    panels.panels_figure(df).to_json()
    compare_figures.compare_panels_figure({1: df}, ["loss"]).to_json()


def main() -> None:
    import logging

    # Importing the pages and drawing figures before the server runs makes Streamlit warn
    # ("missing ScriptRunContext", "No runtime found, using MemoryCacheStorageManager") from
    # loggers it creates on the way: true and harmless here, and a wall of warnings to a
    # newcomer. Warnings and below are off while warming; errors still show.
    logging.disable(logging.WARNING)
    try:
        warm()
    except Exception as exc:      # warming is an optimisation: never a reason not to serve
        print(f"babysit: warming the dashboard failed ({exc!r}); serving anyway",
              file=sys.stderr)
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

"""The dashboard's router: ``babysit ui`` runs ``streamlit run babysit/ui/app.py``.

Pages live in ``babysit.ui.views``, one module with a ``render()`` each; they draw and collect
input and steer runs through the same ``babysit.Client`` as the CLI, with ``source="ui"``.
"""

from __future__ import annotations

import sqlalchemy.exc
import streamlit as st

from babysit.errors import BabysitError
from babysit.ui import state
from babysit.ui.views import all_pages, password_box


def main() -> None:
    st.set_page_config(page_title="babysit", page_icon="🍼", layout="wide")
    page = st.navigation(all_pages())
    root, url = state.store_location()
    st.sidebar.caption(f"store: `{url or root}`")
    password_box()
    try:
        page.run()
    except (BabysitError, sqlalchemy.exc.SQLAlchemyError) as exc:
        # a store that breaks mid-page (locked, from a newer babysit, gone) is a message,
        # not a traceback
        st.error(f"Cannot read the babysit store: {exc}")


if __name__ == "__main__":
    main()

"""The dashboard's router: ``babysit ui`` runs ``streamlit run babysit/ui/app.py``.

Pages live in ``babysit.ui.views``, one module with a ``render()`` each; they draw and collect
input and steer runs through the same ``babysit.Client`` as the CLI, with ``source="ui"``.
Before any page: connections that may not even look are turned away, and the token of the link
``babysit ui`` printed is taken off the address bar and checked (``babysit.ui.auth``).
"""

from __future__ import annotations

import sqlalchemy.exc
import streamlit as st

from babysit.errors import BabysitError
from babysit.ui import auth, state, text
from babysit.ui.views import all_pages


def _store_label(root: str, url: str | None) -> str:
    if url is None:
        return root
    try:
        # a server URL may carry a database password: never show it to someone who only looks
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(store URL)"


def main() -> None:
    st.set_page_config(page_title="babysit", page_icon="🍼", layout="wide")
    refused = auth.refusal()
    if refused:
        st.error(text.md(refused))
        st.stop()
    auth.admit()
    page = st.navigation(all_pages())
    root, url = state.store_location()
    st.sidebar.caption("store: " + text.md(_store_label(root, url)))
    auth.sidebar()
    try:
        page.run()
    except (BabysitError, sqlalchemy.exc.SQLAlchemyError) as exc:
        # a store that breaks mid-page (locked, from a newer babysit, gone) is a message,
        # not a traceback
        st.error("Cannot read the babysit store: " + text.md(exc))


if __name__ == "__main__":
    main()

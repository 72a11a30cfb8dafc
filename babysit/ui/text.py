r"""User-supplied text (run, metric and study names, config keys and values, tags, notes,
error messages that quote them) shown as text, never as markup.

Two renderers interpret what the dashboard hands them: Streamlit's Markdown (every
``st.markdown``/``st.caption``/``st.title``/``st.info``..., and the labels of widgets, metrics,
expanders and page links: they render links and images) and plotly's SVG text (legends, titles,
axis titles, hover labels, text traces: a subset of HTML, ``<a href>`` included, with entities).
A run named ``![t](http://host/track.png)`` must not fetch that URL, and a metric named
``<a href="...">`` must not become a live link. Everything that comes from a user goes through
``md`` before Streamlit sees it and through ``plot`` before plotly sees it; plain-text sinks
(``st.dataframe`` cells, ``st.code``, ``st.text``, selectbox options) need nothing.

>>> print(md("![t](track.png)"))
\!\[t\]\(track\.png\)
>>> plot('<a href="http://x">loss</a>')
'&lt;a href="http://x"&gt;loss&lt;/a&gt;'
"""

from __future__ import annotations

import re
import string
from typing import Any

#: every ASCII punctuation character: CommonMark lets a backslash make each one literal, which
#: also breaks what GFM and Streamlit would otherwise recognise inside a name: autolinked URLs
#: (``http\:``, ``www\.``), e-mail autolinks (``\@``), LaTeX (``\$``), directives (``\:red\[``)
_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_URL_SCHEME = re.compile(r"\\:\\/")               # escaped "://"
_WWW = re.compile(r"(?i)\b(www)\\\.")                # escaped "www."
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# C0/C1 control characters (terminal escapes among them) shown as visible symbols, never sent raw
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible_controls(text: str) -> str:
    # U+2400 + code is the "symbol for" that control character (␛ for ESC)
    return _CONTROL.sub(lambda m: chr(0x2400 + ord(m.group()) if ord(m.group()) < 0x20
                                      else 0x2421 if ord(m.group()) == 0x7F else 0xFFFD), text)


def plain(value: Any) -> str:
    """``value`` as one line of plain text: control characters made visible, line breaks spaces.

    >>> plain("a\\x1b[31mred\\nb")
    'a␛[31mred b'
    """
    return _visible_controls(_LINE_BREAKS.sub(" ", "" if value is None else str(value)))


def md(value: Any) -> str:
    """``value`` as literal text inside Streamlit Markdown (bodies and widget labels).

    Every ASCII punctuation character is backslash-escaped, so nothing in it can open a link,
    an image, HTML, emphasis, a heading, LaTeX or a Streamlit directive; the text reads the same.
    GFM finds bare URLs and e-mail addresses in the text *after* escapes are resolved, so a
    word joiner (U+2060, invisible) goes inside ``://``, after ``www`` and after ``@``.

    >>> md("lr*2 <b>")
    'lr\\\\*2 \\\\<b\\\\>'
    """
    text = _MD_SPECIAL.sub(r"\\\1", plain(value))
    text = _URL_SCHEME.sub("\\:\u2060\\/", text)
    text = _WWW.sub(lambda m: m.group(1) + "\u2060\\.", text)
    return text.replace("\\@", "\\@\u2060")


def plot(value: Any) -> str:
    """``value`` as literal text inside a plotly label, legend entry, title or hover text.

    Plotly reads ``<tags>`` and ``&entities;`` in every text it draws and ``%{...}`` in
    templates: ``&``, ``<``, ``>`` and the ``%`` of ``%{`` become entities, which it shows as
    the characters.

    >>> plot("a&b 25% %{y}")
    'a&amp;b 25% &#37;{y}'
    """
    text = plain(value)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("%{", "&#37;{"))


def shorten(value: Any, limit: int = 80) -> str:
    """``value`` as plain text of at most ``limit`` characters (a … marks the cut).

    For labels and legends, where a 100 kB config value would push everything else away; the
    whole value stays readable in the tables.

    >>> shorten("x" * 100, 10)
    'xxxxxxxxx…'
    """
    text = plain(value)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"

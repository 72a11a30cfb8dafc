"""What an open Run page costs the machine: its live sections redraw every 2 s while the run has
a process and every 10 s once it has none (the Compare page: while one of its runs has one) (a finished run's tab left open cost 18% of a core in
Chromium at 2 s, for nothing), and a page drawn while the run trained slows down by itself when
the run ends. Read from the server's own AutoRerun messages, which set the browser's timers."""

from __future__ import annotations

import pytest

from babysit.ui.state import IDLE_REFRESH_S, REFRESH_S
from tests.conftest import wait_for
from tests.security.streamlit_socket import StreamlitSocket

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_the_run_page_redraws_slower_once_its_run_has_no_process(trainers, dashboards):
    _, run_id = trainers.start("--pace", "0.02", "--day", "20 steps")
    c = trainers.client
    trainers.wait_step(run_id, 5)
    board = dashboards(as_babysit_ui=True)
    query = f"run={run_id}&token={board.token}"
    with StreamlitSocket(board.url) as page, StreamlitSocket(board.url) as compare:
        page.run("run", query)
        # header, chart, console, controls: each on the live pace
        assert len(page.auto_reruns) == 4
        assert set(page.auto_reruns.values()) == {REFRESH_S}
        compare.run("compare", f"token={board.token}")          # one chart, of this run
        assert list(compare.auto_reruns.values()) == [REFRESH_S]

        c.stop(run_id)
        wait_for(lambda: c.run(run_id).status == "stopped", 30, "the run to stop")

        # the browser's timers fire: the header (the chart on Compare) sees the run has ended
        # (reads are cached for a second) and redraws the whole page, at the idle pace
        def timers_fire() -> bool:
            for fragment_id in list(page.auto_reruns):
                page.run("run", query, fragment_id=fragment_id)
            for fragment_id in list(compare.auto_reruns):
                compare.run("compare", f"token={board.token}", fragment_id=fragment_id)
            return set(page.auto_reruns.values()) | set(compare.auto_reruns.values()) == \
                {IDLE_REFRESH_S}
        wait_for(timers_fire, 30, "the pages to redraw at the idle pace")
        assert len(page.auto_reruns) == 4 and len(compare.auto_reruns) == 1

    with StreamlitSocket(board.url) as page:          # a fresh tab on the ended run
        page.run("run", query)
        assert len(page.auto_reruns) == 4
        assert set(page.auto_reruns.values()) == {IDLE_REFRESH_S}
    with StreamlitSocket(board.url) as compare:        # and on Compare, with no run training
        compare.run("compare", f"token={board.token}")
        assert list(compare.auto_reruns.values()) == [IDLE_REFRESH_S]

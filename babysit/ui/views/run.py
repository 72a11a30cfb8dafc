"""Run page: the babysitting view. Live curves, the knobs, pause/stop, rollback and fork."""

from __future__ import annotations

import functools
import itertools
import shlex
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from babysit.errors import BabysitError
from babysit.format import fmt
from babysit.hparams import describe_lr
from babysit.store import LIVE
from babysit.ui import actions, auth, chart, console, prefs, state
from babysit.ui.curves import chart_window
from babysit.ui.frames import metrics_csv
from babysit.ui.panels import group_panels, panels_figure, zoom_steps, zoomed
from babysit.ui.text import md
from babysit.ui.views import (
    OPEN_RUN,
    choose,
    control_access,
    load_runs,
    open_run,
    page,
    selected_run,
)

_FLASH = "run_flash"              # session_state key: the last action's outcome, see _say
#: how long the outcome of an action stays on screen: the controls redraw every 2 s, and a
#: confirmation gone at the next redraw is missed by a user who looked at the chart meanwhile
FLASH_S = 20.0
_ROLLBACKS = "run_rollbacks"      # session_state key: rollbacks made, the confirmation's key
_FIXED_KEYS = ("lr", "momentum")  # have their own buttons; the rest get an exact entry each
_CONSOLE_LINES = 200
#: console output and the launch command in a terminal's font: st.text without st.code's
#: highlighter. Drawn once per page, outside the fragments that redraw every few seconds.
_MONO_CSS = ("<style>.st-key-run_console [data-testid='stText'], "
             ".st-key-run_console [data-testid='stText'] *, "
             ".st-key-run_launch [data-testid='stText'], "
             ".st-key-run_launch [data-testid='stText'] * {font-family: 'Source Code Pro', "
             "monospace; font-size: 0.8rem; line-height: 1.4}</style>")
_PANELS = "run_panels"            # session_state key: the chosen panels, in order
_SPENT = "run_spent_tickets"      # session_state key: the click tickets already acted on
#: a ticket per drawn button (see _on_click); itertools.count is atomic under the GIL
_TICKETS = itertools.count(1)


def _run_row(runs: pd.DataFrame, run_id: int) -> dict[str, Any]:
    return runs[runs["id"] == run_id].iloc[0].to_dict()


def _now(row: dict[str, Any], run_id: int) -> dict[str, Any]:
    """What the trainer reports its optimizer uses (``effective``), else the configured hp."""
    effective = row.get("effective")
    if not isinstance(effective, dict):
        try:
            effective = state.effective(run_id)
        except BabysitError:
            effective = {}
    return effective or {}


def _lr_text(row: dict[str, Any], now: dict[str, Any]) -> str:
    """"lr 0.0125 · schedule ×0.25 of 0.05": the live lr beside the configured one."""
    hp = row.get("hp") or {}
    return describe_lr(now.get("lr"), hp.get("lr")).removeprefix("lr").strip() or "–"


def _momentum_now(row: dict[str, Any], now: dict[str, Any]) -> Any:
    return now.get("momentum", (row.get("hp") or {}).get("momentum"))


def live_header(run_id: int, live_drawn: bool) -> None:
    """Status, day, step, effective lr / momentum and heartbeat; refreshes on its own.

    ``live_drawn``: whether the run had a process when the page was drawn, which set how often
    the page's sections refresh (``state.refresh_s``). When that changes (the run ended, or was
    restarted), the whole page is drawn again at the other pace."""
    try:
        row = _run_row(state.runs(), run_id)
    except (BabysitError, IndexError) as exc:
        st.error(f"Cannot read run {run_id}: {md(exc)}")
        return
    if (row.get("status") in LIVE) != live_drawn:
        st.rerun()
    now = _now(row, run_id)
    age = row.get("heartbeat_age")
    cols = st.columns([1.8, 1.4, 1, 2.0, 1.1, 1.1])     # "day in progress" fits its column
    cols[0].metric("status", md(actions.status_mark(str(row["status"]))))
    live = str(row.get("status")) in LIVE
    cols[1].metric("day in progress" if live else "days saved",
                   md(day_text(row.get("day"), str(row.get("status"))).split(" ")[0]),
                   help=md(days_saved(row.get("day"), live)))
    cols[2].metric("step", row.get("step"))
    cols[3].metric("lr", md(_lr_text(row, now)))
    cols[4].metric("momentum", md(fmt(_momentum_now(row, now))))
    cols[5].metric("heartbeat", "–" if age is None or pd.isna(age) else f"{age:.0f}s ago")
    if row.get("status") in ("crashed", "diverged") and row.get("error"):
        st.error(f"Run {run_id} {md(row['status'])}: {md(row['error'])}")


def day_text(day: Any, status: str) -> str:
    """The header's day: "3 in progress" while the run trains (day = days saved), else "2 saved".

    >>> day_text(2, "running"), day_text(2, "finished")
    ('3 in progress', '2 saved')
    """
    try:
        n = int(day)
    except (TypeError, ValueError):
        return "–"
    return f"{n + 1} in progress" if status in LIVE else f"{n} saved"


def days_saved(day: Any, live: bool = True) -> str:
    """The header's hover, in the one vocabulary of days (README: "Days"): day N is the N-th
    stretch of training, a day checkpoint holds the state at the end of its day, day 0 is the
    start.

    >>> days_saved(2), days_saved(2, live=False), days_saved(0)
    ('day 3 in progress, 2 days saved', '2 days saved', 'day 1 in progress, 0 days saved')
    """
    try:
        n = int(day)
    except (TypeError, ValueError):
        return "no day saved yet"
    saved = f"{n} day{'s' if n != 1 else ''} saved"
    return f"day {n + 1} in progress, {saved}" if live else saved


def live_view(run_id: int) -> None:
    """Curves and audit log; redraws every couple of seconds on its own.

    A zoom or a pan of the chart re-reads that range of steps at full detail (down to single
    steps) and the redraw keeps it; a double click goes back to the whole run.
    """
    x = st.session_state.get("run_x", "step")
    # one zoom revision per run and x axis: another run or axis starts from the whole run
    zoom_key = f"run_{run_id}_{x}"
    window = chart_window(chart.zoom("run_figure", revision=zoom_key))
    try:
        whole = metrics = state.metrics(run_id)
        events = state.events(run_id)
        checkpoints = state.checkpoints(run_id)
        steps = zoom_steps(window, whole, checkpoints, x=x)
        if steps is not None:
            metrics = state.metrics(run_id, x_range=steps)
    except BabysitError as exc:
        st.error(f"Cannot read run {run_id}: {md(exc)}")
        return
    panels = st.session_state.get(_PANELS) or None
    figure = panels_figure(metrics, events, checkpoints, panels=panels,
                           log_y=set(st.session_state.get("run_log_panels") or ()), x=x,
                           show_superseded=bool(st.session_state.get("run_superseded", False)),
                           smoothing=float(st.session_state.get("run_smoothing", 0.0)),
                           whole=whole)
    figure.update_layout(uirevision=zoom_key)
    zoomed(figure, window if steps is not None else None)
    chart.draw(figure, key="run_figure", revision=zoom_key)
    box = lazy_expander(f"Events ({len(events)})", key="run_events_open")
    if box.open:
        with box:
            st.dataframe(actions.events_table(events), hide_index=True, width="stretch",
                         key="run_events")


def lazy_expander(label: str, *, key: str) -> Any:
    """A collapsed expander whose content the page builds only while it is open (build it
    under ``if box.open:``): closed, a fresh tab loads and draws none of it. The Events table
    and the About section (a json view, text fields) cost the Run page's first chart ~10%.

    Streamlit names an expander by its label as well as its key, so one whose label changes
    (a new event counted, new tags) would come back as a new, closed one: the label it was
    drawn with and whether it was open are kept, and an open one stays open."""
    kept = st.session_state.get(f"{key}_kept")          # (label, open) when last drawn
    if kept is not None and kept[0] != label:
        st.session_state[key] = kept[1]
    box = st.expander(label, key=key, on_change="rerun")
    st.session_state[f"{key}_kept"] = (label, bool(box.open))
    return box


def live_console(run_id: int) -> None:
    """The tail of the run's console output (its process log), live."""
    try:        # a Ray job's output comes from the cluster, which may be unreachable
        text = console.of_run(state.client(), run_id, lines=int(_CONSOLE_LINES))
    except BabysitError as exc:
        st.caption(f"Console output unavailable: {md(exc)}")
        return
    with st.expander("Console output", expanded=bool(text)):
        if text is None:
            st.caption("No console output saved for this run: runs started with "
                       "`babysit run`, restarts and forks save it in runs/<id>/process.log.")
        else:
            # st.text, not st.code: st.code's highlighter is 1.5 MB of JavaScript that a fresh
            # browser would fetch and parse beside the chart's plotly while the page opens;
            # monospace by _MONO_CSS
            with st.container(height=260, key="run_console"):
                st.text(text or "(nothing printed yet)")


def _act(where: Any, label: str, fn: Callable[[], str]) -> str | None:
    """Run one action: st.success with what the trainer applied, st.error with why not.

    Every action passes here, and here the session must have shown the token or the password:
    a disabled button is only a hint to the browser, a crafted websocket message can click it.
    """
    try:
        auth.require()
        with st.spinner(f"{md(label)}…"):
            message = fn()
    except BabysitError as exc:
        where.error(md(exc))
        return None
    state.refresh()
    # rerun the controls fragment only: its "now" values and day lists show the change at once,
    # the chart and the header refresh on their own; the message survives the rerun
    _say("success", message)
    try:
        st.rerun(scope="fragment")
    except StreamlitAPIException:      # a click that came with a full run (AppTest does that)
        st.rerun()
    return message


def _on_click(label: str, fn: Callable[[], str]) -> dict[str, Any]:
    """A button's ``on_click``: the action runs in the click's callback, before the fragment
    reruns, so a click costs one fragment run instead of two (one only to reach the button,
    one to show the result): half the wait between a click and its confirmation.

    The callback reads what was typed from ``st.session_state`` (the values of this click),
    never from variables of the run that drew the button.

    Each drawing of the button carries a new ticket, and a ticket acts once: in a CI run one
    click on lr ×0.5 reached the trainer as two nudges, 15 steps apart (the lr quartered).
    The store and the trainer hand each command over once, so the second most likely came from
    Streamlit running the callback again (its rerun coalescing has had such races:
    streamlit#16765); it was not reproduced here.
    A second real click is drawn with a new ticket: the callback of a click runs before its
    fragment redraws the button, and the next click is handled after that redraw."""
    return {"on_click": _clicked, "args": (label, fn, next(_TICKETS))}


def _spend(ticket: int) -> bool:
    """True the first time ``ticket`` is spent in this session, False after."""
    spent = st.session_state.setdefault(_SPENT, [])
    if ticket in spent:
        return False
    spent.append(ticket)
    del spent[:-64]                 # a click's ticket is spent within a run or two
    return True


def _clicked(label: str, fn: Callable[[], str], ticket: int | None = None) -> None:
    """Run one action (a button's callback): the trainer's account of it or why not is shown
    by the fragment run that follows. Every action passes here or through :func:`_act`, and
    the session must have shown the token or the password (a crafted message can click a
    disabled button). A ticket already spent (the same click delivered again) does nothing."""
    if ticket is not None and not _spend(ticket):
        return
    try:
        auth.require()
        message = fn()
    except BabysitError as exc:
        _say("error", str(exc))
        return
    state.refresh()
    _say("success", message)


def _say(kind: str, text: str) -> None:
    """Show an action's outcome above the controls for ``FLASH_S`` (until the next action)."""
    st.session_state[_FLASH] = (kind, text, time.monotonic() + FLASH_S)


def _typed(key: str) -> str:
    return str(st.session_state.get(key) or "")


def _set_typed(client: Any, run_id: int, name: str) -> str:
    """Set hyperparameter ``name`` to what its box (``hp_<name>``) holds at the click."""
    return actions.set_value(client, run_id, name, _typed(f"hp_{name}"))


def _knobs(client: Any, run_id: int, row: dict[str, Any], enabled: bool) -> None:
    hp = row.get("hp") or {}
    now = _now(row, run_id)
    off = not enabled
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown(f"**Learning rate** · now {md(_lr_text(row, now))}")
        b1, b2 = st.columns(2)
        b1.button("lr ×0.5", key="lr_half", disabled=off, width="stretch",
                  **_on_click("halving lr", lambda: actions.lr_times(client, run_id, 0.5)))
        b2.button("lr ×2", key="lr_double", disabled=off, width="stretch",
                  **_on_click("doubling lr", lambda: actions.lr_times(client, run_id, 2.0)))
        st.text_input("exact lr", key="lr_exact", placeholder="e.g. 0.01", disabled=off)
        st.button("Set lr", key="lr_set", disabled=off, **_on_click(
            "setting lr", lambda: actions.set_value(client, run_id, "lr", _typed("lr_exact"))))
    with c2:
        st.markdown(f"**Momentum** · now {md(fmt(_momentum_now(row, now)))}")
        b1, b2 = st.columns(2)
        b1.button("More momentum", key="momentum_more", disabled=off, width="stretch",
                  help="halves 1-β: 0.9 → 0.95", **_on_click(
                      "more momentum", lambda: actions.momentum_nudge(client, run_id, "more")))
        b2.button("Less momentum", key="momentum_less", disabled=off, width="stretch",
                  help="doubles 1-β: 0.95 → 0.9", **_on_click(
                      "less momentum", lambda: actions.momentum_nudge(client, run_id, "less")))
        st.text_input("exact momentum", key="momentum_exact", placeholder="e.g. 0.9",
                      disabled=off)
        st.button("Set momentum", key="momentum_set", disabled=off, **_on_click(
            "setting momentum",
            lambda: actions.set_value(client, run_id, "momentum", _typed("momentum_exact"))))
    with c3:
        st.markdown(f"**Process** · {md(actions.status_mark(str(row['status'])))}")
        st.button("Pause", key="run_pause", disabled=off, width="stretch",
                  **_on_click("pausing", lambda: actions.pause(client, run_id)))
        st.button("Resume", key="run_resume", disabled=off, width="stretch",
                  **_on_click("resuming", lambda: actions.resume(client, run_id)))
        st.button("Stop", key="run_stop", disabled=off, width="stretch",
                  help="stops at the next step; restart later with babysit restart",
                  **_on_click("stopping", lambda: actions.stop(client, run_id)))

    others = [k for k, v in hp.items() if k not in _FIXED_KEYS
              and isinstance(v, int | float) and not isinstance(v, bool)]
    others.sort(key=lambda k: (k != "weight_decay", k))
    if others:
        with st.expander("Other hyperparameters", expanded="weight_decay" in others):
            for name in others:
                a, b = st.columns([3, 1], vertical_alignment="bottom")
                unread = actions.unread_note(name, row.get("effective"))
                a.text_input(f"{md(name)} (now {md(fmt(hp[name]))})",
                             key=f"hp_{name}", disabled=off,
                                     help=f"{unread}: a nudge of it changes nothing the loop "
                                          "does" if unread else None)
                if unread:
                    a.caption(f"⚠ {md(name)}: {unread}", help="babysit records the last step "
                              "at which the loop read run.hp[key]")
                b.button(f"Set {md(name)}", key=f"hp_set_{name}", disabled=off, **_on_click(
                    f"setting {name}", functools.partial(_set_typed, client, run_id, name)))


def _checkpoint_table(checkpoints: pd.DataFrame) -> pd.DataFrame:
    if not len(checkpoints):
        return pd.DataFrame(columns=["end of day", "step", "time"])
    metrics = pd.DataFrame([m if isinstance(m, dict) else {} for m in checkpoints["metrics"]])
    metrics = metrics.apply(pd.to_numeric, errors="coerce")
    base = pd.DataFrame({
        "end of day": checkpoints["day"].astype(int), "step": checkpoints["step"].astype(int),
        "time": [time.strftime("%m-%d %H:%M:%S", time.localtime(t)) for t in checkpoints["time"]],
    })
    return pd.concat([base, metrics.reset_index(drop=True)], axis=1)


def _days(client: Any, run_id: int, row: dict[str, Any], enabled: bool) -> None:
    try:
        checkpoints = state.checkpoints(run_id)
    except BabysitError as exc:
        st.error(md(exc))
        return
    st.subheader("Days")
    if not len(checkpoints):
        st.caption("No day checkpoints yet: rollback and fork need at least one saved day.")
        return
    st.caption("Each row is a saved day: the state at the end of that day (day 0: the start), "
               "with the day's metric means.")
    st.dataframe(_checkpoint_table(checkpoints), hide_index=True, width="stretch",
                 key="run_days",
                 column_config={c: st.column_config.NumberColumn(c, format="%.4g")
                                for c in checkpoints["metrics"].iloc[-1] or {}})
    days = [int(d) for d in checkpoints["day"]]
    live = row.get("status") in LIVE
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**Roll back** this run to the end of a day")
        st.selectbox("roll back to the end of day", days, index=len(days) - 1,
                     key="rollback_day")
        st.text_input("overrides (key=value …)", key="rollback_overrides",
                      placeholder="lr=0.05", disabled=not enabled)
        # One tick, one rollback: each rollback draws a new checkbox (a new key), unticked.
        # Setting the old one back to False did not hold: a rerun the browser asked for before
        # it drew the unticked box brought its ticked state back.
        confirm = f"rollback_confirm_{st.session_state.get(_ROLLBACKS, 0)}"
        st.checkbox("Yes, roll back (later days stay in the store, superseded)",
                    key=confirm, disabled=not enabled)

        def do_rollback() -> str:
            message = actions.rollback(
                client, run_id, st.session_state.get("rollback_day"),
                confirmed=bool(st.session_state.get(confirm)),
                overrides=_typed("rollback_overrides"))
            st.session_state[_ROLLBACKS] = st.session_state.get(_ROLLBACKS, 0) + 1
            return message
        st.button("Roll back", key="run_rollback", disabled=not enabled or not live,
                  **_on_click("rolling back", do_rollback))
    with c2:
        st.markdown("**Fork** a new run from the end of a day")
        st.selectbox("fork from the end of day", days, index=len(days) - 1, key="fork_day")
        st.text_input("overrides (key=value …)", key="fork_overrides",
                      placeholder="lr=0.02 momentum=0.95", disabled=not enabled)

        def do_fork() -> str:
            message, child = actions.fork(client, run_id, st.session_state.get("fork_day"),
                                          _typed("fork_overrides"))
            st.session_state["last_fork"] = child      # offer a link to the new run
            return message
        st.button("Fork", key="run_fork", disabled=not enabled, **_on_click("forking", do_fork))
        child = st.session_state.get("last_fork")
        if child is not None and st.button(f"Open run #{child}", key="open_fork"):
            st.session_state.pop("last_fork", None)
            open_run(child)


def _download(run_id: int) -> None:
    try:
        metrics = state.metrics(run_id)
    except BabysitError:
        return
    panels = st.session_state.get(_PANELS) or None
    st.download_button(
        "Download shown metrics (CSV)", key="run_csv", mime="text/csv",
        file_name=f"run-{run_id}-metrics.csv",
        data=metrics_csv(metrics, panels,
                         superseded=bool(st.session_state.get("run_superseded", False))))


def _about(client: Any, run_id: int, row: dict[str, Any], enabled: bool) -> None:
    """The run's note and tags (editable), its full config and the command that launched it."""
    listed = row.get("tags")
    tags: list[str] = [str(t) for t in listed] if isinstance(listed, list) else []
    note = str(row.get("note") or "")
    title = "Note, tags, config and launch command"
    if tags:
        title += " · " + " ".join(f"#{t}" for t in tags)
    box = lazy_expander(md(title), key="run_about_open")
    if not box.open:
        return
    with box:
        where = st.container()
        a, b = st.columns([3, 2])
        new_note = a.text_area("note", value=note, key=f"run_note_{run_id}", height=90,
                               disabled=not enabled)
        new_tags = b.text_input("tags (space separated)", value=" ".join(tags),
                                key=f"run_tags_{run_id}", disabled=not enabled)
        if b.button("Save note and tags", key="run_note_save", disabled=not enabled):
            def save() -> str:
                client.set_note(run_id, new_note)
                saved = client.set_tags(run_id, str(new_tags).split())
                return f"saved the note and {len(saved)} tag(s) of run {run_id}"
            _act(where, "saving", save)
        try:
            record = state.record(run_id)
        except BabysitError as exc:
            st.error(md(exc))
            return
        c1, c2 = st.columns(2)
        c1.markdown("**config**")
        c1.json(dict(record.config or {}), expanded=True)
        c2.markdown("**launch command**")
        launch = record.launch or {}
        argv = [str(launch.get("executable") or ""), *map(str, launch.get("argv") or [])]
        with c2.container(key="run_launch"):            # st.text: see live_console
            st.text(shlex.join(a for a in argv if a) if launch.get("argv") else
                    "(started from an interactive session)")
        if launch.get("cwd"):
            c2.caption(f"in {md(launch['cwd'])}")


def _panel_names(run_id: int, project: str) -> list[str]:
    """The panels the run can show, in the picker's order; the chosen ones (remembered per
    project) kept in session state to those, before the chart reads them."""
    try:
        present = [str(n) for n in state.metrics(run_id)["name"].unique()
                   if not str(n).startswith("hp/")]
    except BabysitError:
        present = []
    names = [n for _, group in group_panels(n for n in present if not n.startswith("sys/"))
             for n in group] + sorted(n for n in present if n.startswith("sys/"))
    root = state.store_location()[0]
    if st.session_state.get("run_panels_project") != project:
        saved = prefs.load_panels(root, project) or []
        st.session_state[_PANELS] = [n for n in saved if n in names]
        st.session_state["run_panels_project"] = project
    st.session_state[_PANELS] = [n for n in st.session_state.get(_PANELS) or [] if n in names]
    return names


def _view_controls(names: list[str], project: str) -> None:
    """x axis, smoothing, rolled-back branches, and the panel picker remembered per project."""
    v1, v2, v3 = st.columns([2, 2, 1.4])
    v1.radio("x axis", ["step", "day", "time"], key="run_x", horizontal=True)
    v2.slider("smoothing", 0.0, 0.99, 0.0, 0.01, key="run_smoothing")
    v3.toggle("show rolled-back branches", key="run_superseded",
              help="after a rollback the x range fits the live branch; this brings back the "
                   "abandoned one")
    p1, p2 = st.columns([3, 2])
    chosen = p1.multiselect("panels (in this order; empty = all)", names, key=_PANELS,
                            help="remembered for this project")
    p2.multiselect("log y", names, key="run_log_panels")
    root = state.store_location()[0]
    if list(chosen) != (prefs.load_panels(root, project) or []):
        prefs.save_panels(root, project, list(chosen))


def render() -> None:
    top = st.container()          # the title goes above whatever load_runs says
    runs = load_runs()
    if runs is None:
        top.title("Run")
        return
    top.page_link(page("runs"), label="← All runs", icon=None)
    live_ids = [int(i) for i, s in zip(runs["id"], runs["status"], strict=False) if s in LIVE]
    run_id = choose("Run", runs.to_dict("records"), selected_run(runs["id"], live_ids), "run",
                    OPEN_RUN)
    if run_id is None:
        return
    row = _run_row(runs, run_id)
    st.title(f"Run #{run_id} {md(row.get('name') or '')}")
    if row.get("parent_id") is not None and not pd.isna(row.get("parent_id")):
        st.caption(f"forked from run #{int(row['parent_id'])} at the end of day "
                   f"{int(row['parent_day'])}")

    # The chart is what the page is opened for: it is sent to the browser first, into its
    # place below the view controls and the header, which follow (their values are read from
    # session state, set before any widget is drawn). A fresh tab then loads the chart's code
    # and draws it while the rest of the page's elements still arrive.
    view, header, chart_slot = st.container(), st.container(), st.container()
    project = str(row.get("project") or "")
    names = _panel_names(run_id, project)
    # the live sections redraw on their own, at a pace set by whether the run has a process
    live = row.get("status") in LIVE
    every = state.refresh_s(live)
    with chart_slot:
        st.fragment(live_view, run_every=every)(run_id)
    with view:
        _view_controls(names, project)
    with header:
        st.fragment(live_header, run_every=every)(run_id, live)
    _download(run_id)
    st.html(_MONO_CSS)
    st.fragment(live_console, run_every=every)(run_id)
    st.divider()
    st.fragment(controls, run_every=every)(run_id)


def controls(run_id: int) -> None:
    """The knobs, the Days table and the rollback / fork day lists, refreshed on their own.

    A click reruns this fragment only: the chart above keeps drawing, the page does not move.
    """
    try:
        row = _run_row(state.runs(), run_id)
    except (BabysitError, IndexError) as exc:
        st.error(f"Cannot read run {run_id}: {md(exc)}")
        return
    allowed, why = control_access()
    # one slot whatever it holds: a page that gains the right to steer (a reloaded tab proving
    # itself) redraws its elements in place instead of shifting them all by one
    note = st.empty()
    if not allowed:
        note.info(why)
    elif row.get("status") not in LIVE:
        hint = "restart it (babysit restart)" if row.get("status") in ("crashed", "stopped") \
            else "fork it from a day below to train further"
        note.caption(f"Run {run_id} is {md(row.get('status'))}: no process to steer; {hint}.")
    feedback = st.container()
    flash = st.session_state.get(_FLASH)
    if flash and time.monotonic() < flash[2]:
        (feedback.success if flash[0] == "success" else feedback.error)(md(flash[1]))
    elif flash:
        del st.session_state[_FLASH]
    try:
        client = state.client()
    except BabysitError as exc:
        st.error(f"Cannot open the babysit store: {md(exc)}")
        return
    steerable = allowed and row.get("status") in LIVE
    _knobs(client, run_id, row, steerable)
    _days(client, run_id, row, allowed)
    _about(client, run_id, row, allowed)

"""Run page: the babysitting view. Live curves, the knobs, pause/stop, rollback and fork."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from babysit.errors import BabysitError
from babysit.store import LIVE
from babysit.ui import actions, auth, state
from babysit.ui.figures import run_figure
from babysit.ui.text import md
from babysit.ui.views import OPEN_RUN, control_access, load_runs, open_run, selected_run

_FLASH = "run_flash"              # session_state key: the last action's success line
_FIXED_KEYS = ("lr", "momentum")   # have their own buttons; the rest get an exact entry each


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def _run_row(runs: pd.DataFrame, run_id: int) -> dict[str, Any]:
    return runs[runs["id"] == run_id].iloc[0].to_dict()


@st.fragment(run_every=state.REFRESH_S)
def live_view(run_id: int) -> None:
    """Status line, curves and audit log; redraws every couple of seconds on its own."""
    try:
        row = _run_row(state.runs(), run_id)
        metrics = state.metrics(run_id)
        events = state.events(run_id)
        checkpoints = state.checkpoints(run_id)
    except BabysitError as exc:
        st.error(f"Cannot read run {run_id}: {md(exc)}")
        return
    hp = row.get("hp") or {}
    age = row.get("heartbeat_age")
    cols = st.columns([1.6, 0.8, 1, 1, 1, 1.1])
    cols[0].metric("status", md(actions.status_mark(str(row["status"]))))
    cols[1].metric("day", row.get("day"))
    cols[2].metric("step", row.get("step"))
    cols[3].metric("lr", md(_fmt(hp.get("lr"))))
    cols[4].metric("momentum", md(_fmt(hp.get("momentum"))))
    cols[5].metric("heartbeat", "–" if age is None or pd.isna(age) else f"{age:.0f}s ago")
    if row.get("status") in ("crashed", "diverged") and row.get("error"):
        st.error(f"Run {run_id} {md(row['status'])}: {md(row['error'])}")
    figure = run_figure(metrics, events, checkpoints,
                        x=st.session_state.get("run_x", "step"),
                        log_y=bool(st.session_state.get("run_log_y", False)),
                        smoothing=float(st.session_state.get("run_smoothing", 0.0)))
    st.plotly_chart(figure, key="run_figure", width="stretch")
    with st.expander(f"Events ({len(events)})", expanded=False):
        st.dataframe(actions.events_table(events), hide_index=True, width="stretch",
                     key="run_events")


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
    # rerun so every "now" value on the page shows the change; the message survives the rerun
    st.session_state[_FLASH] = message
    st.rerun()
    return message


def _knobs(client: Any, run_id: int, row: dict[str, Any], enabled: bool, feedback: Any) -> None:
    hp = row.get("hp") or {}
    off = not enabled
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown(f"**Learning rate** · now {md(_fmt(hp.get('lr')))}")
        b1, b2 = st.columns(2)
        if b1.button("lr ×0.5", key="lr_half", disabled=off, width="stretch"):
            _act(feedback, "halving lr", lambda: actions.lr_times(client, run_id, 0.5))
        if b2.button("lr ×2", key="lr_double", disabled=off, width="stretch"):
            _act(feedback, "doubling lr", lambda: actions.lr_times(client, run_id, 2.0))
        text = st.text_input("exact lr", key="lr_exact", placeholder="e.g. 0.01", disabled=off)
        if st.button("Set lr", key="lr_set", disabled=off):
            _act(feedback, "setting lr", lambda: actions.set_value(client, run_id, "lr", text))
    with c2:
        st.markdown(f"**Momentum** · now {md(_fmt(hp.get('momentum')))}")
        b1, b2 = st.columns(2)
        if b1.button("More momentum", key="momentum_more", disabled=off, width="stretch",
                     help="halves 1-β: 0.9 → 0.95"):
            _act(feedback, "more momentum",
                 lambda: actions.momentum_nudge(client, run_id, "more"))
        if b2.button("Less momentum", key="momentum_less", disabled=off, width="stretch",
                     help="doubles 1-β: 0.95 → 0.9"):
            _act(feedback, "less momentum",
                 lambda: actions.momentum_nudge(client, run_id, "less"))
        mtext = st.text_input("exact momentum", key="momentum_exact", placeholder="e.g. 0.9",
                              disabled=off)
        if st.button("Set momentum", key="momentum_set", disabled=off):
            _act(feedback, "setting momentum",
                 lambda: actions.set_value(client, run_id, "momentum", mtext))
    with c3:
        st.markdown(f"**Process** · {md(actions.status_mark(str(row['status'])))}")
        if st.button("Pause", key="run_pause", disabled=off, width="stretch"):
            _act(feedback, "pausing", lambda: actions.pause(client, run_id))
        if st.button("Resume", key="run_resume", disabled=off, width="stretch"):
            _act(feedback, "resuming", lambda: actions.resume(client, run_id))
        if st.button("Stop", key="run_stop", disabled=off, width="stretch",
                     help="stops at the next step; restart later with babysit restart"):
            _act(feedback, "stopping", lambda: actions.stop(client, run_id))

    others = [k for k, v in hp.items() if k not in _FIXED_KEYS
              and isinstance(v, int | float) and not isinstance(v, bool)]
    others.sort(key=lambda k: (k != "weight_decay", k))
    if others:
        with st.expander("Other hyperparameters", expanded="weight_decay" in others):
            for name in others:
                a, b = st.columns([3, 1], vertical_alignment="bottom")
                value = a.text_input(f"{md(name)} (now {md(_fmt(hp[name]))})",
                                     key=f"hp_{name}", disabled=off)
                if b.button(f"Set {md(name)}", key=f"hp_set_{name}", disabled=off):
                    _act(feedback, f"setting {name}",
                         lambda n=name, v=value: actions.set_value(client, run_id, n, v))


def _checkpoint_table(checkpoints: pd.DataFrame) -> pd.DataFrame:
    if not len(checkpoints):
        return pd.DataFrame(columns=["day", "step", "time"])
    metrics = pd.DataFrame([m if isinstance(m, dict) else {} for m in checkpoints["metrics"]])
    metrics = metrics.apply(pd.to_numeric, errors="coerce")
    base = pd.DataFrame({
        "day": checkpoints["day"].astype(int), "step": checkpoints["step"].astype(int),
        "time": [time.strftime("%m-%d %H:%M:%S", time.localtime(t)) for t in checkpoints["time"]],
    })
    return pd.concat([base, metrics.reset_index(drop=True)], axis=1)


def _days(client: Any, run_id: int, row: dict[str, Any], enabled: bool, feedback: Any) -> None:
    try:
        checkpoints = state.checkpoints(run_id)
    except BabysitError as exc:
        st.error(md(exc))
        return
    st.subheader("Days")
    if not len(checkpoints):
        st.caption("No day checkpoints yet: rollback and fork need at least one finished day.")
        return
    st.dataframe(_checkpoint_table(checkpoints), hide_index=True, width="stretch",
                 key="run_days",
                 column_config={c: st.column_config.NumberColumn(c, format="%.4g")
                                for c in checkpoints["metrics"].iloc[-1] or {}})
    days = [int(d) for d in checkpoints["day"]]
    live = row.get("status") in LIVE
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**Roll back** this run to the end of a day")
        day = st.selectbox("day to roll back to", days, index=len(days) - 1, key="rollback_day")
        over = st.text_input("overrides (key=value …)", key="rollback_overrides",
                             placeholder="lr=0.05", disabled=not enabled)
        sure = st.checkbox("Yes, roll back (later days stay in the store, superseded)",
                           key="rollback_confirm", disabled=not enabled)
        if st.button("Roll back", key="run_rollback", disabled=not enabled or not live):
            _act(feedback, "rolling back", lambda: actions.rollback(
                client, run_id, day, confirmed=sure, overrides=over))
    with c2:
        st.markdown("**Fork** a new run from a day")
        fday = st.selectbox("day to fork from", days, index=len(days) - 1, key="fork_day")
        fover = st.text_input("overrides (key=value …)", key="fork_overrides",
                              placeholder="lr=0.02 momentum=0.95", disabled=not enabled)
        if st.button("Fork", key="run_fork", disabled=not enabled):
            def do_fork() -> str:
                message, child = actions.fork(client, run_id, fday, fover)
                st.session_state["last_fork"] = child      # offer a link to the new run
                return message
            _act(feedback, "forking", do_fork)
        child = st.session_state.get("last_fork")
        if child is not None and st.button(f"Open run #{child}", key="open_fork"):
            st.session_state.pop("last_fork", None)
            open_run(child)


def render() -> None:
    runs = load_runs()
    if runs is None:
        st.title("Run")
        return
    ids = sorted((int(i) for i in runs["id"]), reverse=True)
    live_ids = [int(i) for i, s in zip(runs["id"], runs["status"], strict=False) if s in LIVE]
    current = selected_run(ids, live_ids)
    labels = {int(r["id"]): f"#{int(r['id'])} {r['name']} · {r['status']}"
              for r in runs.to_dict("records")}
    run_id = st.selectbox("Run", ids, index=ids.index(current) if current in ids else 0,
                          format_func=lambda i: labels.get(i, f"#{i}"))
    if run_id is None:
        return
    run_id = int(run_id)
    if st.session_state.get(OPEN_RUN) != run_id or st.query_params.get("run") != str(run_id):
        st.session_state[OPEN_RUN] = run_id
        st.query_params["run"] = str(run_id)
    row = _run_row(runs, run_id)
    st.title(f"Run #{run_id} {md(row.get('name') or '')}")
    if row.get("parent_id") is not None and not pd.isna(row.get("parent_id")):
        st.caption(f"forked from run #{int(row['parent_id'])} at day {int(row['parent_day'])}")

    v1, v2, v3 = st.columns([2, 1, 2])
    v1.radio("x axis", ["step", "day", "time"], key="run_x", horizontal=True)
    v2.toggle("log y", key="run_log_y")
    v3.slider("smoothing", 0.0, 0.99, 0.0, 0.01, key="run_smoothing")

    chart = st.container()
    st.divider()
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
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        feedback.success(md(flash))
    try:
        client = state.client()
    except BabysitError as exc:
        st.error(f"Cannot open the babysit store: {md(exc)}")
        return
    steerable = allowed and row.get("status") in LIVE
    _knobs(client, run_id, row, steerable, feedback)
    _days(client, run_id, row, allowed, feedback)
    with chart:
        live_view(run_id)


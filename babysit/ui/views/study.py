"""Study page (caviar): define and launch a study, watch its runs, steer its autopilot.

Figures come from `babysit.ui.study_figures`, every check and command from
`babysit.ui.study_actions`; this page only lays them out and collects input.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from babysit.errors import BabysitError
from babysit.format import fmt
from babysit.store import LIVE
from babysit.study.space import SCALES, Space, SpaceError
from babysit.ui import auth, state, study_state
from babysit.ui import study_actions as sa
from babysit.ui.study_figures import (
    family_tree_figure,
    hp_scatter_figure,
    importance_figure,
    parallel_figure,
    study_curves_figure,
    wants_log,
)
from babysit.ui.text import md
from babysit.ui.views import choose, control_access, open_run, page, selected_id

OPEN_STUDY = "open_study"        # session_state key: id of the study shown
_FLASH = "study_flash"           # session_state key: the last action's success line
_ERROR = "study_error"           # session_state key: why the last autopilot switch failed
_STRATEGY_HELP = ("Options as key=value. random: seed. grid: n_per_param=3. coarse_to_fine: "
                  "batch_size=16 rounds=3 top_fraction=0.25. optuna: sampler=tpe "
                  "n_startup_trials=10. pbt: quantile=0.25 resample_probability=0.25.")
_STOPPING_HELP = ("One rule per line, checked at day ends: `patience:3` (no better in 3 days), "
                  "`threshold:2:1.5` (still worse than 1.5 at day 2), `walltime:600` (seconds), "
                  "`median:1` (worse than the median from day 1), `asha:1:3` (successive "
                  "halving from day 1, keep 1/3), or with names: `median min_days=1`.")


# --------------------------------------------------------------------------- helpers


def _act(where: Any, label: str, fn: Callable[[], str]) -> None:
    """Run one action: its message after a rerun (st.success), or st.error with why not.

    Every action passes here, and here the session must have shown the token or the password.
    """
    try:
        auth.require()
        with st.spinner(f"{md(label)}…"):
            message = fn()
    except (BabysitError, SpaceError) as exc:
        where.error(md(exc))
        return
    study_state.refresh()
    st.session_state[_FLASH] = message
    st.rerun()


def open_study(study_id: int) -> None:
    """Show ``study_id`` on the Study page (stops this script run)."""
    st.session_state[OPEN_STUDY] = int(study_id)
    st.switch_page(page("study"), query_params={"study": str(int(study_id))})


# --------------------------------------------------------------------------- new study


def _new_study_form(existing: list[str], allowed: bool) -> None:
    """Name, objective, space (rows or a spec file), strategy, budget, stopping, autopilot, command."""
    slots: dict[str, Any] = {}
    c1, c2, c3 = st.columns([2, 2, 1])
    name = c1.text_input("Study name", key="study_name", placeholder="e.g. lr-sweep")
    objective = c2.text_input("Objective metric", value="val_loss", key="study_objective",
                              help="a metric the trial logs; read at each day's end")
    direction = c3.radio("Direction", ["min", "max"], key="study_direction", horizontal=True)
    slots["name"], slots["objective"], slots["direction"] = c1.empty(), c2.empty(), c3.empty()

    st.markdown("**Search space** · each hyperparameter on its own scale")
    source = st.radio("Define it", ["table", "YAML / TOML / JSON"], key="study_space_source",
                      horizontal=True, label_visibility="collapsed")
    space_text, space_format = "", "yaml"
    rows: list[dict[str, Any]] = []
    if source == "table":
        edited = st.data_editor(
            pd.DataFrame(list(sa.DEFAULT_PARAMS)), key="study_space_rows", num_rows="dynamic",
            hide_index=True, width="stretch",
            column_config={
                "name": st.column_config.TextColumn("name", required=True),
                "scale": st.column_config.SelectboxColumn("scale", options=list(SCALES),
                                                          required=True),
                "low": st.column_config.TextColumn("low", help="e.g. 1e-4 (not for choice)"),
                "high": st.column_config.TextColumn("high", help="e.g. 1 (not for choice)"),
                "choices": st.column_config.TextColumn("choices", help="for scale choice: sgd, adam"),
            })
        rows = edited.to_dict("records")
        st.caption("log: 10^r (learning rates) · one_minus_log: 1 − 10^r, in β units "
                   "(momentum 0.9–0.999) · pow2: powers of two (batch size) · int · linear · "
                   "choice")
    else:
        upload = st.file_uploader("Space file", type=["yaml", "yml", "toml", "json"],
                                  key="study_space_file")
        space_text = st.text_area(
            "or paste the spec", key="study_space_text", height=140,
            placeholder="lr: {scale: log, low: 1e-4, high: 1}\n"
                        "momentum: {scale: one_minus_log, low: 0.9, high: 0.999}")
        if upload is not None:
            try:
                space_format = sa.spec_format(upload.name)
                space_text = upload.getvalue().decode("utf-8")
            except (SpaceError, UnicodeDecodeError) as exc:
                st.error(f"Cannot read {md(upload.name)}: {md(exc)}")
    slots["space"] = st.empty()

    c1, c2 = st.columns([1, 2])
    strategy = c1.selectbox("Strategy", list(sa.STRATEGY_KINDS), key="study_strategy")
    options = c2.text_input("Strategy options", key="study_strategy_options",
                            placeholder="e.g. seed=0", help=_STRATEGY_HELP)
    slots["strategy"] = st.empty()
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1.5])
    runs = c1.number_input("Runs", min_value=1, value=8, step=1, key="study_runs")
    days = c2.number_input("Days per run", min_value=1, value=4, step=1, key="study_days")
    parallel = c3.number_input("In parallel", min_value=1, value=2, step=1, key="study_parallel")
    autopilot = c4.radio("Autopilot", list(sa.AUTOPILOT_MODES), key="study_autopilot",
                         horizontal=True,
                         help="auto: PBT moves and early stops happen; supervised: each waits "
                              "for your approval here; off: none")
    slots["budget"], slots["autopilot"] = st.empty(), st.empty()
    stopping = st.text_area("Early stopping (optional)", key="study_stopping", height=68,
                            placeholder="median min_days=1", help=_STOPPING_HELP)
    slots["stopping"] = st.empty()
    commands = sa.trial_commands(state.client() if state.store_exists() else None)
    command = st.selectbox("Trial command", list(commands), key="study_command",
                           help="run once per trial, with the trial's hyperparameters in its "
                                "babysit config: the demo, or the command of a run or study "
                                "started from the CLI or Python (babysit study create ... -- "
                                "python train.py)")
    slots["command"] = st.empty()
    project = st.text_input("Project (optional)", key="study_project")

    if st.button("Launch study", key="study_launch", type="primary", disabled=not allowed):
        form = sa.StudyForm(
            name=name, objective=objective, direction=str(direction),
            space_source="text" if source != "table" else "form", param_rows=rows,
            space_text=space_text, space_format=space_format, strategy=str(strategy),
            strategy_options=options, runs=runs, days=days, parallel=parallel,
            stopping=stopping, autopilot=str(autopilot), command=str(command),
            project=project)
        try:
            request = sa.check_study_form(form, existing, commands)
        except sa.FormErrors as exc:
            for field, message in exc.errors.items():
                slots.get(field, st).error(md(message))
            return
        for note in request.notes:
            st.info(md(note))

        def launch() -> str:
            message, study_id = sa.create_and_launch(_writer(), request)
            st.session_state[OPEN_STUDY] = study_id
            st.query_params["study"] = str(study_id)
            return message
        _act(st, "launching", launch)


def _writer() -> Any:
    """The Client for commands; the first study of a fresh folder creates its store."""
    if state.store_exists():
        return state.client()
    from babysit.client import Client

    root, url = state.store_location()
    return Client(root, store_url=url, source="ui", create=True)


# --------------------------------------------------------------------------- one study


@st.fragment(run_every=state.REFRESH_S * 2)
def _live(study_id: int, objective: str, direction: str, x: str, log_y: bool) -> None:
    """The curves of every run and the parallel coordinates, redrawn on their own."""
    try:
        record = study_state.study(study_id)
        runs = study_state.study_runs(study_id)
        curves = {int(i): study_state.curve(int(i), objective) for i in runs["id"]}
    except BabysitError as exc:
        st.error(f"Cannot read study {study_id}: {md(exc)}")
        return
    st.plotly_chart(study_curves_figure(curves, runs, objective, direction, x=x, log_y=log_y),
                    key="study_curves", width="stretch")
    with st.expander("Parallel coordinates: every hyperparameter → objective", expanded=True):
        st.plotly_chart(parallel_figure(runs, Space.from_dict(record.space), objective, direction,
                                        log_y=log_y), key="study_parcoords", width="stretch")


@st.fragment(run_every=state.REFRESH_S * 2)
def _wait_for_runs(study_id: int) -> None:
    """Until the orchestrator has started a run: a note, and a page rerun once one shows."""
    st.info("No runs yet: they appear here as the study starts them.")
    try:
        if len(study_state.study_runs(study_id)):
            st.rerun()
    except BabysitError as exc:
        st.error(md(exc))


@st.fragment(run_every=state.REFRESH_S * 2)
def _live_header(study_id: int, allowed: bool) -> None:
    try:
        _header(study_state.study(study_id), study_state.study_runs(study_id), allowed)
    except BabysitError as exc:
        st.error(f"Cannot read study {study_id}: {md(exc)}")


def _header(record: Any, runs: pd.DataFrame, allowed: bool) -> None:
    """Status, progress, best run, and Launch / Stop study as the status allows."""
    budget = dict(record.budget or {})
    best = sa.best_run(runs, record.direction)
    done = len(sa.finished_runs(runs))
    live = int(runs["status"].isin(("starting", "running", "paused")).sum()) if len(runs) else 0
    cols = st.columns(5)
    cols[0].metric("status", md(record.status))
    cols[1].metric("runs done", f"{done} / {budget.get('runs', '?')}")
    cols[2].metric("running", f"{live} (≤ {budget.get('parallel', '?')})")
    cols[3].metric(f"best {md(record.objective)}",
                   md(fmt(best.get("best", best.get("objective")))) if best else "–")
    cols[4].metric("autopilot", md(record.autopilot))
    strategy = dict(record.strategy or {})
    kind = strategy.pop("kind", "?")
    extra = " ".join(f"{k}={v}" for k, v in strategy.items())
    parent = f" · follow-up of study #{record.parent_id}" if record.parent_id else ""
    st.caption(md(f"{record.direction} {record.objective} · {kind} {extra} · "
                  f"{budget.get('days', '?')} days per run{parent}"))
    if best:
        bid = int(best["id"])
        hp = ", ".join(f"{p}={fmt(best.get(p))}" for p in record.space if p in best)
        st.page_link(page("run"), label=md(f"Best run #{bid} {best.get('name', '')}: "
                     f"{record.objective} {fmt(best.get('best', best.get('objective')))} "
                     f"at day {fmt(best.get('best_day'))} ({hp})"),
                     icon=":material/emoji_events:", query_params={"run": str(bid)})
    feedback = st.container()
    try:
        waiting = int((study_state.decisions(record.id)["status"] == "proposed").sum())
    except BabysitError:
        waiting = 0
    if waiting:
        st.warning(f"{waiting} autopilot move(s) wait for your approval: see Autopilot below.")
    if record.status in ("created", "stopped") and st.button(
            "Launch", key=f"study_start_{record.id}", disabled=not allowed):
        _act(feedback, "launching", lambda: _launched(state.client(), record.id))
    if record.status == "running" and st.button(
            "Stop study", key=f"study_stop_{record.id}", disabled=not allowed,
            help="stops its runs and its autopilot; finished runs stay"):
        _act(feedback, "stopping", lambda: _stopped(state.client(), record.id))


def _hp_charts(record: Any, space: Space, runs: pd.DataFrame, log_y: bool) -> dict[str, list]:
    """One scatter per hyperparameter; returns the values of the points picked on each."""
    picked: dict[str, list] = {}
    cols = st.columns(2)
    for i, param in enumerate(space):
        with cols[i % 2]:
            event = st.plotly_chart(
                hp_scatter_figure(runs, param, record.objective, record.direction, log_y=log_y),
                key=f"study_hp_{record.id}_{param.name}", width="stretch", on_select="rerun",
                selection_mode=("box", "lasso"))
            try:
                points = event.selection.points
            except AttributeError:
                points = []
            values = sa.selection_values(points)
            if values:
                picked[param.name] = values
    return picked


def _follow_up(client: Any, record: Any, space: Space, picked: dict[str, list],
               existing: list[str], allowed: bool) -> None:
    st.markdown("**Next coarse-to-fine batch** · box- or lasso-select runs in the charts above")
    try:
        region = sa.region_from_selection(space, picked)
        narrowed = space.narrow_to(region) if region else None
    except (BabysitError, SpaceError) as exc:
        st.error(md(exc))
        return
    if not region or narrowed is None:
        st.caption("Nothing selected yet: the new study would search the same space.")
        return
    st.caption("Region: " + md("; ".join(f"{p.name} {p.describe()}" for p in narrowed
                                         if p.name in region)))
    n = sum(1 for name in existing if name.startswith(f"{record.name}-fine"))
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    name = c1.text_input("Name of the follow-up study", value=f"{record.name}-fine{n + 1}",
                         key=f"study_follow_name_{record.id}")
    runs = c2.number_input("Runs", min_value=1, value=int((record.budget or {}).get("runs", 8)),
                           key=f"study_follow_runs_{record.id}")
    feedback = st.container()
    if c3.button("Launch next batch", key=f"study_follow_{record.id}", disabled=not allowed):
        def launch() -> str:
            message, study_id = sa.follow_up(client, record, region, name=name, runs=runs,
                                             existing_names=existing)
            st.session_state[OPEN_STUDY] = study_id
            st.query_params["study"] = str(study_id)
            return message
        _act(feedback, "launching the next batch", launch)


def _autopilot(client: Any, record: Any, runs: pd.DataFrame, allowed: bool) -> None:
    st.subheader("Autopilot")
    feedback = st.container()
    modes = list(sa.AUTOPILOT_MODES)
    # the key carries the stored mode, so a switch made elsewhere (CLI) redraws the radio
    key = f"study_autopilot_{record.id}_{record.autopilot}"
    st.radio("Mode", modes, index=modes.index(record.autopilot)
             if record.autopilot in modes else 0, horizontal=True, key=key,
             disabled=not allowed, on_change=_switch_autopilot, args=(client, record.id, key),
             help="auto: exploits and early stops happen at day ends; supervised: each "
                  "waits for Approve below; off: none")
    error = st.session_state.pop(_ERROR, None)
    if error:
        feedback.error(md(error))
    _live_decisions(record.id, allowed)

    if len(runs) < 2:
        return
    st.markdown("**Exploit by hand** · copy one run's day weights into another, running run")
    ids = [int(i) for i in runs["id"]]
    live = [int(i) for i, s in zip(runs["id"], runs["status"], strict=True) if s in LIVE]
    if not live:
        st.caption("No run of this study is running: an exploit needs a live target.")
        return
    c1, c2, c3, c4 = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
    target = c1.selectbox("Target run (live)", live, key=f"study_exploit_target_{record.id}",
                          format_func=lambda i: f"#{i}")
    others = [i for i in ids if i != target] or ids
    donor = c2.selectbox("Donor run", others, key=f"study_exploit_donor_{record.id}",
                         format_func=lambda i: f"#{i}")
    try:
        days = [int(x) for x in state.checkpoints(int(donor))["day"]] if donor else []
    except BabysitError:
        days = []
    day = c3.selectbox("its day", days, index=len(days) - 1 if days else None,
                       key=f"study_exploit_day_{record.id}", placeholder="no checkpoint yet")
    overrides = c4.text_input("with (optional)", key=f"study_exploit_hp_{record.id}",
                              placeholder="lr=0.05")
    if st.button("Copy weights", key=f"study_exploit_{record.id}",
                 disabled=not allowed or day is None):
        _act(feedback, "exploiting", lambda: sa.manual_exploit(client, target, donor, day,
                                                              overrides))


@st.fragment(run_every=state.REFRESH_S * 2)
def _live_decisions(study_id: int, allowed: bool) -> None:
    """The moves waiting for approval, with Approve / Veto; new proposals show up on their own."""
    feedback = st.container()
    try:
        decisions = study_state.decisions(study_id)
        client = state.client()
    except BabysitError as exc:
        st.error(md(exc))
        return
    pending = decisions[decisions["status"] == "proposed"] if len(decisions) else decisions
    if not len(pending):
        st.caption("No decision waiting for approval.")
    for d in pending.to_dict("records"):
        did = int(d["id"])
        c1, c2, c3 = st.columns([6, 1, 1], vertical_alignment="center")
        c1.markdown(f"**{md(d['kind'])}** · {md(sa.describe_decision(d))}")
        if c2.button("Approve", key=f"study_approve_{did}", disabled=not allowed):
            _act(feedback, "approving", partial(sa.approve, client, did))
        if c3.button("Veto", key=f"study_veto_{did}", disabled=not allowed):
            _act(feedback, "vetoing", partial(sa.veto, client, did))
    if len(decisions):
        with st.expander(f"All decisions ({len(decisions)})"):
            table = decisions.assign(what=[sa.describe_decision(d)
                                           for d in decisions.to_dict("records")])
            st.dataframe(table[["id", "kind", "status", "what", "decided_by", "error"]].iloc[::-1],
                         hide_index=True, width="stretch", key=f"study_decisions_{study_id}")


@st.fragment(run_every=state.REFRESH_S * 2)
def _live_tree(study_id: int, direction: str, pbt: bool) -> None:
    """The PBT family tree (or any study's exploits), growing as the autopilot acts."""
    try:
        runs = study_state.study_runs(study_id)
        events = study_state.events([int(i) for i in runs["id"]])
    except BabysitError as exc:
        st.error(md(exc))
        return
    if pbt or (events["kind"] == "exploit").any():
        st.subheader("Family tree · who copied whom, at which day")
        st.plotly_chart(family_tree_figure(runs, events, direction), key="study_family",
                        width="stretch")


@st.fragment(run_every=state.REFRESH_S * 2)
def _live_runs(study_id: int) -> None:
    try:
        runs = study_state.study_runs(study_id)
        space = Space.from_dict(study_state.study(study_id).space)
    except BabysitError as exc:
        st.error(md(exc))
        return
    table = sa.runs_table(runs, space)
    event = st.dataframe(table, key=f"study_runs_{study_id}", hide_index=True, width="stretch",
                         on_select="rerun", selection_mode="single-row",
                         column_config={c: st.column_config.NumberColumn(c, format="%.4g")
                                        for c in [*space.names, "objective", "best"]
                                        if c in table.columns and space_is_numeric(space, c)})
    rows = list(event.selection.rows) if event is not None else []
    if st.button("Open run", key="study_open_run", disabled=not rows):
        open_run(int(table.iloc[rows[0]]["id"]))


def _switch_autopilot(client: Any, study_id: int, key: str) -> None:
    """on_change of the mode radio: runs before the page, which then shows the outcome."""
    try:
        auth.require()
        st.session_state[_FLASH] = sa.set_autopilot(client, study_id, st.session_state[key])
    except BabysitError as exc:
        st.session_state[_ERROR] = str(exc)
    study_state.refresh()


def _study_view(record: Any, existing: list[str], allowed: bool) -> None:
    try:
        runs = study_state.study_runs(record.id)
        client = state.client()
    except BabysitError as exc:
        st.error(f"Cannot read study {record.id}: {md(exc)}")
        return
    space = Space.from_dict(record.space)
    header = st.container()
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        st.success(md(flash))
    if not len(runs):
        with header:
            _header(record, runs, allowed)
        _wait_for_runs(record.id)
        return
    v1, v2, _ = st.columns([2, 1, 3])
    x = v1.radio("x axis", ["step", "day"], key="study_x", horizontal=True)
    # log y by default when one run's objective dwarfs the others' (a run that blew up)
    log_y = v2.toggle("log y", key=f"study_log_y_{record.id}",
                      value=wants_log(pd.to_numeric(runs["objective"], errors="coerce")))
    with header:
        _live_header(record.id, allowed)
    _live(record.id, record.objective, record.direction, str(x), bool(log_y))

    st.subheader("Each hyperparameter against the objective")
    picked = _hp_charts(record, space, runs, bool(log_y))
    _follow_up(client, record, space, picked, existing, allowed)

    _live_tree(record.id, record.direction, (record.strategy or {}).get("kind") == "pbt")
    _autopilot(client, record, runs, allowed)

    st.subheader("Which hyperparameters mattered")
    done = sa.finished_runs(runs)
    # only plain columns: the cache key hashes the frame, and dict cells (hp) do not hash
    done = done[[c for c in ("id", "status", *space.names, "objective", "best") if c in done]]
    ranked, why = _importance(done, dict(record.space), record.direction)
    if ranked is None:
        st.caption(why)
    else:
        st.plotly_chart(importance_figure(ranked), key="study_importance", width="stretch")

    st.subheader("Runs")
    _live_runs(record.id)


@st.cache_data(ttl=30, show_spinner=False)
def _importance(done: pd.DataFrame, space: dict, direction: str
                ) -> tuple[dict[str, float] | None, str]:
    # fANOVA fits a forest: once per new finished run (the cache key), not once per refresh
    return sa.study_importance(done, Space.from_dict(space), direction)


def space_is_numeric(space: Space, column: str) -> bool:
    return column not in space.names or space[column].scale != "choice"


def _launched(client: Any, study_id: int) -> str:
    pid = client.launch_study(study_id)
    return f"study #{study_id} launched (orchestrator pid {pid})"


def _stopped(client: Any, study_id: int) -> str:
    client.stop_study(study_id)
    return f"study #{study_id} stopped"


# --------------------------------------------------------------------------- the page


def render() -> None:
    st.title("Studies")
    allowed, why = control_access()
    note = st.empty()        # one slot either way: nothing below shifts when a tab proves itself
    if not allowed:
        note.info(why)
    studies = pd.DataFrame()
    if state.store_exists():
        try:
            studies = study_state.studies()
        except BabysitError as exc:
            st.error(f"Cannot read the babysit store: {md(exc)}")
            return
    names = [str(n) for n in studies["name"]] if len(studies) else []
    if not len(studies):
        st.info("No studies yet. A study trains many runs of one script, each with its own "
                "hyperparameters sampled on the right scale, and keeps the best. Define one "
                "below; the default trial is the built-in demo task.")
        _new_study_form(names, allowed)
        return
    with st.expander("New study", expanded=False):
        _new_study_form(names, allowed)
    study_id = choose("Study", studies.to_dict("records"),
                      selected_id(studies["id"], "study", OPEN_STUDY), "study", OPEN_STUDY)
    if study_id is None:
        return
    try:
        record = study_state.study(study_id)
    except BabysitError as exc:
        st.error(f"Cannot read study {study_id}: {md(exc)}")
        return
    _study_view(record, names, allowed)

"""What the Study page's forms and buttons do: check everything typed, then call the Client.

Pure Python, no Streamlit, like `babysit.ui.actions`: a study is created only after every
field of its form passed, so a bad range or a taken name creates nothing. The page launches no
command typed into it: a study's trials run the command of an existing run, of an existing study
(both created from the CLI or Python), or the built-in demo task (`command_choices`). Errors of a whole
form come back together as `FormErrors`, one message per field, for the page to show next to
each field; the other handlers raise ``BabysitError``s whose message the page shows as is.

>>> request = check_study_form(StudyForm(name="lr-sweep", param_rows=[
...     {"name": "lr", "scale": "log", "low": "1e-3", "high": "1"}]))
>>> request.space.to_dict()
{'lr': {'scale': 'log', 'low': 0.001, 'high': 1.0}}
"""

from __future__ import annotations

import math
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from babysit.errors import InvalidValue
from babysit.format import fmt, fmt_hp
from babysit.study.objective import best
from babysit.study.space import DIRECTIONS, SCALES, Space, SpaceError
from babysit.study.space import _YamlLoader as _SpaceYamlLoader  # reads 1e-4 as a number
from babysit.study.specs import (
    KINDS,
    budget_spec,
    check_pbt_space,
    donor_of,
    stop_spec,
    strategy_spec,
)

SOURCE = "ui"
#: how long the Copy weights button waits for the target run to load the checkpoint
ACTION_TIMEOUT_S = 30.0
#: random first: the form's default, and the right first study on a new problem
STRATEGY_KINDS = ("random", *(k for k in KINDS if k != "random"))
AUTOPILOT_MODES = ("auto", "supervised", "off")
#: the built-in demo task as a study's trial script (full speed; a day is 100 steps)
DEMO_COMMAND = (sys.executable, "-m", "babysit.demo", "--pace", "0", "--day", "100 steps")
#: its entry in the form's list of trial commands
DEMO_CHOICE = "the built-in demo task"
#: the form's starting rows: the demo's two optimizer knobs, each on its own scale
DEFAULT_PARAMS = (
    {"name": "lr", "scale": "log", "low": "0.001", "high": "1", "choices": ""},
    {"name": "momentum", "scale": "one_minus_log", "low": "0.5", "high": "0.99", "choices": ""},
)
_METRIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_./\-]{0,199}$")
_MAX_NAME = 200      # the store's column width


class FormErrors(InvalidValue):
    """Some fields of a form are wrong: ``errors`` maps each field to its message."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class StudyForm:
    """The New study form as typed in the browser (text where the user types text)."""

    name: str = ""
    objective: str = "val_loss"
    direction: str = "min"
    space_source: str = "form"                       # "form" (param_rows) or "text" (space_text)
    param_rows: Sequence[Mapping[str, Any]] = DEFAULT_PARAMS
    space_text: str = ""
    space_format: str = "yaml"                       # yaml (also reads JSON) or toml
    strategy: str = "random"
    strategy_options: str = ""
    runs: Any = 8
    days: Any = 4
    parallel: Any = 2
    stopping: str = ""
    autopilot: str = "auto"
    command: str = DEMO_CHOICE                       # a key of `command_choices`
    project: str = ""


@dataclass(frozen=True)
class StudyRequest:
    """A checked study, ready for `Client.create_study`."""

    name: str
    objective: str
    direction: str
    space: Space
    strategy: dict[str, Any]
    budget: dict[str, int]
    stopping: tuple[dict[str, Any], ...]
    autopilot: str
    command: list[str]
    project: str | None = None
    parent: int | None = None
    cwd: str | None = None                  # the trial's folder (default: the dashboard's)
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- the search space


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _scalar(text: str) -> Any:
    """One value as YAML reads it: 0.1 and 1e-4 are numbers, true a bool, sgd a string."""
    try:
        return yaml.load(text, Loader=_SpaceYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return text


def _bound(value: Any, where: str, label: str) -> float | int:
    if isinstance(value, bool):
        raise SpaceError(f"{where}: {label} must be a number, got {value!r}")
    if isinstance(value, int | float | np.integer | np.floating):
        return value.item() if isinstance(value, np.generic) else value
    parsed = _scalar(str(value).strip())
    if isinstance(parsed, bool) or not isinstance(parsed, int | float):
        raise SpaceError(f"{where}: {label} must be a number, got {str(value).strip()!r}")
    return parsed


def space_from_rows(rows: Iterable[Mapping[str, Any]]) -> Space:
    """The space of the form's table: a row per hyperparameter (name, scale, low, high, choices).

    Blank rows are skipped; ``choices`` is a comma-separated list ("sgd, adam"). The same
    `Space.from_dict` checks as a spec file apply, and each message names the row.

    >>> space_from_rows([{"name": "opt", "scale": "choice", "choices": "sgd, adam"}]).to_dict()
    {'opt': {'scale': 'choice', 'choices': ['sgd', 'adam']}}
    >>> space_from_rows([{"name": "lr", "scale": "log", "low": "1", "high": "0.1"}])
    Traceback (most recent call last):
    babysit.study.space.SpaceError: param 'lr': low must be < high, got low=1.0, high=0.1
    """
    spec: dict[str, Any] = {}
    for i, row in enumerate(rows, start=1):
        values = {k: row.get(k) for k in ("name", "scale", "low", "high", "choices")}
        if all(_blank(v) for v in values.values()):
            continue
        name = "" if _blank(values["name"]) else str(values["name"]).strip()
        if not name:
            raise SpaceError(f"row {i}: the hyperparameter needs a name")
        where = f"param {name!r}"
        if name in spec:
            raise SpaceError(f"{where} appears twice; one row per hyperparameter")
        scale = "" if _blank(values["scale"]) else str(values["scale"]).strip()
        if scale not in SCALES:
            raise SpaceError(f"{where}: pick a scale, one of {', '.join(SCALES)} (got {scale!r})")
        entry: dict[str, Any] = {"scale": scale}
        for label in ("low", "high"):
            if not _blank(values[label]):
                entry[label] = _bound(values[label], where, label)
        if not _blank(values["choices"]):
            text = str(values["choices"])
            entry["choices"] = [_scalar(c.strip()) for c in text.split(",") if c.strip()]
        spec[name] = entry
    if not spec:
        raise SpaceError("add at least one hyperparameter to search")
    return Space.from_dict(spec)


def space_from_text(text: str, fmt: str = "yaml") -> Space:
    """A space spec pasted or uploaded as YAML (JSON reads as YAML too) or TOML.

    >>> space_from_text("lr: {scale: log, low: 1e-4, high: 1}")["lr"].low
    0.0001
    """
    if not text or not text.strip():
        raise SpaceError("the space spec is empty; paste YAML such as "
                         "'lr: {scale: log, low: 1e-4, high: 1}'")
    return Space.from_text(text, fmt)


def spec_format(filename: str | None) -> str:
    """The spec format of an uploaded file, from its name ("space.toml" -> "toml").

    >>> spec_format("space.yml"), spec_format("space.toml")
    ('yaml', 'toml')
    """
    suffix = Path(filename or "").suffix.lower()
    formats = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}
    if suffix not in formats:
        raise SpaceError(f"a space file ends in .yaml, .yml, .toml or .json, got {filename!r}")
    return formats[suffix]


# --------------------------------------------------------------------------- the other fields


def parse_options(text: str | None) -> dict[str, Any]:
    """``"batch_size=8 seed=3 sampler=tpe"`` as a dict (numbers, booleans or words).

    >>> parse_options("batch_size=8, top_fraction=0.25 sampler=tpe")
    {'batch_size': 8, 'top_fraction': 0.25, 'sampler': 'tpe'}
    """
    out: dict[str, Any] = {}
    for item in (i for i in re.split(r"[\s,;]+", text or "") if i):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key) or not raw.strip():
            raise InvalidValue(f"expected key=value, got {item!r}")
        value = _scalar(raw.strip())
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidValue(f"{key} must be a finite number, got {raw.strip()!r}")
        if not isinstance(value, bool | int | float | str):
            raise InvalidValue(f"{key} must be a number, a word or true/false, got {raw.strip()!r}")
        out[key] = value
    return out


def parse_stopping(text: str | None) -> tuple[dict[str, Any], ...]:
    """Stopping rules, one per line, in the CLI's form (``patience:3``, ``median:1:3``) or
    with named options (``asha min_days=1 reduction_factor=3``); ``#`` starts a comment.

    Each rule is checked as `Client.create_study` checks it, and stored in the same shape.

    >>> parse_stopping("patience:3\\nasha min_days=1 reduction_factor=3")
    ({'rule': 'patience', 'days': 3}, {'rule': 'asha', 'min_days': 1, 'reduction_factor': 3})
    """
    rules = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            if "=" in line:
                kind, _, rest = line.partition(" ")
                rules.append(stop_spec({"rule": kind.strip().lower(), **parse_options(rest)}))
            else:
                rules.append(stop_spec(line))
        except (SpaceError, InvalidValue) as exc:
            raise InvalidValue(f"line {number}: {exc}") from None
    return tuple(rules)


def whole_number(value: Any, name: str, minimum: int = 1) -> int:
    """A count typed in a box: a whole number >= ``minimum``.

    >>> whole_number("4", "days")
    4
    """
    if isinstance(value, bool):
        raise InvalidValue(f"{name} must be a whole number >= {minimum}, got {value!r}")
    try:
        f = float(str(value).strip()) if not isinstance(value, int | float) else float(value)
    except ValueError:
        raise InvalidValue(f"{name} must be a whole number >= {minimum}, got {value!r}") from None
    if not math.isfinite(f) or f != int(f) or f < minimum:
        raise InvalidValue(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(f)


def command_choices(runs: Iterable[Mapping[str, Any]] = (),
                    studies: Iterable[Any] = ()) -> dict[str, dict[str, Any]]:
    """The trial commands the Study page offers: the demo, then each distinct command of an
    existing study or run (as launched from the CLI or Python), label -> launch record
    (executable, argv, cwd). A command cannot be typed into the page.

    ``runs`` are run records or mappings with ``id``, ``name`` and ``launch``; ``studies``
    study records (``id``, ``name``, ``command``).

    >>> list(command_choices())
    ['the built-in demo task']
    """
    choices: dict[str, dict[str, Any]] = {
        DEMO_CHOICE: {"executable": DEMO_COMMAND[0], "argv": list(DEMO_COMMAND[1:]), "cwd": None}}
    seen = {(DEMO_COMMAND[0], DEMO_COMMAND[1:], None)}

    def add(label: str, launch: Any) -> None:
        if not isinstance(launch, Mapping) or not launch.get("executable") or \
                not isinstance(launch.get("argv"), list):
            return
        key = (launch["executable"], tuple(launch["argv"]), launch.get("cwd"))
        if key in seen:
            return
        seen.add(key)
        shown = shlex.join([str(launch["executable"]), *map(str, launch["argv"])])
        choices[f"{label}: {shown}"] = {"executable": launch["executable"],
                                        "argv": list(launch["argv"]), "cwd": launch.get("cwd")}

    for study in studies:
        add(f"study #{study.id} {study.name}", study.command)
    for run in runs:
        get = run.get if isinstance(run, Mapping) else lambda k, r=run: getattr(r, k, None)
        add(f"run #{get('id')} {get('name')}", get("launch"))
    return choices


def trial_commands(client: Any | None) -> dict[str, dict[str, Any]]:
    """`command_choices` of the store behind ``client`` (the demo only without a store)."""
    if client is None:
        return command_choices()
    return command_choices(client.store.list_runs(), client.store.list_studies())


def check_name(name: str | None, existing: Iterable[str] = ()) -> str:
    """A new study's name: not empty, not too long, not taken.

    >>> check_name("  sweep-1 ", ["sweep-0"])
    'sweep-1'
    """
    clean = (name or "").strip()
    if not clean:
        raise InvalidValue("the study needs a name")
    if len(clean) > _MAX_NAME:
        raise InvalidValue(f"a study name has at most {_MAX_NAME} characters, got {len(clean)}")
    if clean.isdigit():
        raise InvalidValue(f"a study name must not be only digits (ids are), got {clean!r}")
    if clean in set(existing):
        raise InvalidValue(f"a study named {clean!r} already exists; pick another name")
    return clean


def check_study_form(form: StudyForm, existing_names: Iterable[str] = (),
                     commands: Mapping[str, Mapping[str, Any]] | None = None) -> StudyRequest:
    """Check every field of the New study form; raise `FormErrors` naming each bad field.

    Fields: name, objective, direction, space, strategy, budget, stopping, autopilot, command.
    ``commands`` are the trial commands offered (`command_choices`; default: the demo only);
    the form's ``command`` must name one of them.
    """
    errors: dict[str, str] = {}

    def attempt(field_name: str, fn: Any) -> Any:
        try:
            return fn()
        except (InvalidValue, SpaceError) as exc:
            # a field with several parts (the budget) reports each bad part
            errors[field_name] = "; ".join(filter(None, (errors.get(field_name), str(exc))))
            return None

    name = attempt("name", lambda: check_name(form.name, existing_names))
    objective = (form.objective or "").strip()
    if not _METRIC.match(objective):
        errors["objective"] = ("the objective is the name of a logged metric such as val_loss, "
                               f"got {form.objective!r}")
    if form.direction not in DIRECTIONS:
        errors["direction"] = f"direction must be 'min' or 'max', got {form.direction!r}"
    if form.space_source == "text":
        space = attempt("space", lambda: space_from_text(form.space_text, form.space_format))
    else:
        space = attempt("space", lambda: space_from_rows(form.param_rows))
    strategy = None
    if form.strategy not in STRATEGY_KINDS:
        errors["strategy"] = (f"strategy must be one of {', '.join(STRATEGY_KINDS)}, "
                              f"got {form.strategy!r}")
    else:
        options = attempt("strategy", lambda: parse_options(form.strategy_options))
        if options is not None:
            if "kind" in options:
                errors["strategy"] = "pick the strategy above, not with kind= in its options"
            else:
                strategy = {"kind": form.strategy, **options}
    if strategy is not None and space is not None:
        # built once here, as create_study does, so a bad option is named next to its field
        attempt("strategy", lambda: strategy_spec(strategy, space, form.direction
                                                  if form.direction in DIRECTIONS else "min"))
        if form.strategy == "pbt":
            attempt("space", lambda: check_pbt_space(space))
    budget: dict[str, int] = {}
    for key in ("runs", "days", "parallel"):
        value = attempt("budget", lambda k=key: whole_number(getattr(form, k), k))
        if value is not None:
            budget[key] = value
    if len(budget) == 3:
        attempt("budget", lambda: budget_spec(budget, pbt=form.strategy == "pbt"))
    rules = attempt("stopping", lambda: parse_stopping(form.stopping))
    if form.autopilot not in AUTOPILOT_MODES:
        errors["autopilot"] = (f"autopilot must be one of {', '.join(AUTOPILOT_MODES)}, "
                               f"got {form.autopilot!r}")
    offered = commands if commands is not None else command_choices()
    launch = offered.get(form.command)
    if launch is None:
        errors["command"] = ("pick the trial command from the list: the demo or the command of "
                             "an existing run or study (a new command is given from the CLI or "
                             f"Python: babysit study create ... -- python train.py); got "
                             f"{form.command!r}")
    if errors or launch is None:
        raise FormErrors(errors)
    notes: tuple[str, ...] = ()
    if budget["parallel"] > budget["runs"]:
        notes = (f"parallel {budget['parallel']} is more than the {budget['runs']} runs; "
                 f"at most {budget['runs']} will run at once",)
    return StudyRequest(name=name, objective=objective, direction=form.direction, space=space,
                        strategy=strategy or {"kind": form.strategy}, budget=budget,
                        stopping=rules or (), autopilot=form.autopilot,
                        command=[str(launch["executable"]), *map(str, launch["argv"])],
                        cwd=launch.get("cwd"), project=(form.project or "").strip() or None,
                        notes=notes)


# --------------------------------------------------------------------------- commands


def create_and_launch(client: Any, request: StudyRequest) -> tuple[str, int]:
    """Create the study and start it; (the line to show, the study id).

    >>> create_and_launch(client, request)      # doctest: +SKIP
    ("study 'lr-sweep' (#1) launched: 8 runs, 2 at a time", 1)
    """
    study_id = client.create_study(
        request.name, objective=request.objective, direction=request.direction,
        space=request.space.to_dict(), strategy=request.strategy, budget=request.budget,
        command=list(request.command), stopping=list(request.stopping),
        autopilot=request.autopilot, project=request.project, parent=request.parent,
        cwd=request.cwd)
    client.launch_study(study_id)
    b = request.budget
    return (f"study {request.name!r} (#{study_id}) launched: {b['runs']} runs of "
            f"{b['days']} days, {b['parallel']} at a time", int(study_id))


def approve(client: Any, decision_id: Any) -> str:
    """The Approve button of a pending autopilot decision."""
    did = whole_number(decision_id, "decision id")
    client.approve(did, source=SOURCE)
    return f"decision {did} approved"


def veto(client: Any, decision_id: Any) -> str:
    """The Veto button of a pending autopilot decision."""
    did = whole_number(decision_id, "decision id")
    client.veto(did, source=SOURCE)
    return f"decision {did} vetoed"


def set_autopilot(client: Any, study: Any, mode: str) -> str:
    """The autopilot switch: auto (act), supervised (propose, wait for approval) or off."""
    if mode not in AUTOPILOT_MODES:
        raise InvalidValue(f"autopilot must be one of {', '.join(AUTOPILOT_MODES)}, got {mode!r}")
    client.set_autopilot(study, mode)
    return f"autopilot {mode}"


def manual_exploit(client: Any, target: Any, donor: Any, day: Any,
                   overrides: str = "", *, timeout: float = ACTION_TIMEOUT_S) -> str:
    """Copy the ``donor`` run's ``day`` weights into ``target`` ("copy run A's day 5 into
    run B").

    ``overrides`` (``lr=0.05 ...``) change the target's hyperparameters at the same time.
    """
    from babysit.ui.actions import parse_overrides

    target_id = whole_number(target, "target run")
    donor_id = whole_number(donor, "donor run")
    if target_id == donor_id:
        raise InvalidValue(f"a run cannot copy itself (target and donor are both #{target_id}); "
                           "use a rollback for that")
    day_n = whole_number(day, "day", minimum=0)
    hp = parse_overrides(overrides)
    client.exploit(target_id, donor_id, day_n, hp=hp or None, source=SOURCE, timeout=timeout)
    extra = f" with {fmt_hp(hp)}" if hp else ""
    return f"run #{target_id} now continues from the end of run #{donor_id}'s day {day_n}{extra}"


def describe_decision(decision: Mapping[str, Any]) -> str:
    """One line for a row of `Client.decisions`: what the autopilot wants to do, and why.

    >>> describe_decision({"kind": "exploit", "run_id": 4, "detail": {"donor": 2,
    ...     "donor_day": 3, "ops": [{"name": "lr", "old": 0.01, "new": 0.012,
    ...     "how": "perturb x1.2"}], "reason": "run 4 in bottom 25%"}})
    "run #4 copies run #2's day 3 weights, lr 0.01 → 0.012 (perturb x1.2): run 4 in bottom 25%"
    """
    raw = decision.get("detail")
    detail: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    run = f"run #{decision.get('run_id')}"
    reason = detail.get("reason") or decision.get("reason")
    if decision.get("kind") == "exploit":
        ops = [f"{o.get('name')} {fmt(o.get('old'))} → {fmt(o.get('new'))} ({o.get('how')})"
               for o in detail.get("ops") or [] if isinstance(o, Mapping)]
        donor, donor_day = donor_of(detail)
        text = f"{run} copies run #{donor}'s day {donor_day} weights"
        text = ", ".join([text, *ops])
    elif decision.get("kind") == "stop":
        text = f"stop {run}"
    else:
        text = f"{decision.get('kind')} {run}"
    return f"{text}: {reason}" if reason else text


# --------------------------------------------------------------------------- coarse to fine


def region_from_selection(space: Space, selected: Mapping[str, Sequence[Any]],
                          margin: float = 0.05) -> dict[str, Any]:
    """The region around the points picked in each hyperparameter's chart, for `Space.narrow_to`.

    ``selected[name]`` lists the values of the picked points on that param's chart. A numeric
    range becomes their span, widened by ``margin`` of the param's range on each side on the
    param's own scale (so one point gives a small range around it); a choice param keeps the
    picked choices. Params with no pick are left out (they keep their range).

    >>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
    >>> region_from_selection(space, {"lr": [1e-3, 1e-2]}, margin=0.25)
    {'lr': (0.0001, 0.1)}
    """
    if not 0 < margin < 0.5:
        raise InvalidValue(f"margin must be in (0, 0.5), got {margin!r}")
    region: dict[str, Any] = {}
    for name, values in selected.items():
        p = space[name]
        inside = [v for v in values if p.contains(v)]
        if not inside:
            continue
        if p.scale == "choice":
            region[name] = list(dict.fromkeys(inside))
            continue
        assert p.low is not None and p.high is not None
        units = [p.to_unit(v) for v in inside]
        u_lo, u_hi = max(0.0, min(units) - margin), min(1.0, max(units) + margin)
        if p.scale == "int":
            lo = min(int(p.from_unit(u_lo)), *inside)
            hi = max(int(p.from_unit(u_hi)), *inside)
            if lo == hi:           # an int range needs two values: widen where there is room
                lo, hi = (lo, hi + 1) if hi < p.high else (lo - 1, hi)
            region[name] = (lo, hi)
        elif p.scale == "pow2":
            # powers of two have no "in between": the picked ones, a neighbour when alone
            lo, hi = min(inside), max(inside)
            if lo == hi:
                lo, hi = (lo, hi * 2) if hi * 2 <= p.high else (max(lo // 2, p.low), hi)
            region[name] = (lo, hi) if lo < hi else (p.low, p.high)
        else:
            low = p.low if u_lo == 0.0 else min(float(f"{p.from_unit(u_lo):.6g}"), *inside)
            high = p.high if u_hi == 1.0 else max(float(f"{p.from_unit(u_hi):.6g}"), *inside)
            region[name] = (max(p.low, low), min(p.high, high))
    return region


def selection_values(points: Iterable[Mapping[str, Any]]) -> list[Any]:
    """The hyperparameter values of points picked on a chart (``customdata`` = [run, value])."""
    out = []
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, list | tuple) and len(data) >= 2:
            out.append(data[1])
    return out


def follow_up(client: Any, study: Any, region: Mapping[str, Any], *, name: str, runs: Any,
              existing_names: Iterable[str] = ()) -> tuple[str, int]:
    """Launch the next coarse-to-fine batch: a child study of ``study`` over ``region``.

    ``study`` is the parent's `StudyRecord`; everything but the space, the name and the run
    count is the parent's.
    """
    if not region:
        raise InvalidValue("select some runs in a hyperparameter's chart first (box or lasso)")
    clean = check_name(name, existing_names)
    n = whole_number(runs, "runs")
    try:
        space = Space.from_dict(study.space).narrow_to(region)
    except SpaceError as exc:
        raise InvalidValue(str(exc)) from None
    budget = {**dict(study.budget or {}), "runs": n}
    # the parent's strategy without its seed: the follow-up draws its own
    strategy = {k: v for k, v in dict(study.strategy or {"kind": "random"}).items() if k != "seed"}
    launch = dict(study.command or {})     # the stored launch record: executable, argv, cwd
    request = StudyRequest(
        name=clean, objective=study.objective, direction=study.direction, space=space,
        strategy=strategy, budget=budget, stopping=tuple(study.stopping or ()),
        autopilot=study.autopilot, command=[launch["executable"], *launch.get("argv", [])],
        project=study.project, parent=int(study.id), cwd=launch.get("cwd"))
    _, study_id = create_and_launch(client, request)
    ranges = "; ".join(f"{p.name} {p.describe()}" for p in space if p.name in region)
    return f"launched {clean!r} (#{study_id}): {n} runs in {ranges}", study_id


# --------------------------------------------------------------------------- reading a study


def _score_column(study_runs: pd.DataFrame) -> str:
    """A run's score, as the strategies are told it: its best day-end objective ("best"),
    or its last one where the frame has no best column."""
    return "best" if "best" in study_runs.columns else "objective"


def finished_runs(study_runs: pd.DataFrame | None) -> pd.DataFrame:
    """Runs that are done (finished or stopped) with a finite score."""
    if study_runs is None or not len(study_runs):
        return pd.DataFrame()
    column = _score_column(study_runs)
    if column not in study_runs.columns:
        return pd.DataFrame()
    value = pd.to_numeric(study_runs[column], errors="coerce")
    done = study_runs["status"].isin(("finished", "stopped")) if "status" in study_runs.columns \
        else pd.Series(True, index=study_runs.index)
    return study_runs[done & np.isfinite(value.to_numpy(dtype=np.float64))]


def best_run(study_runs: pd.DataFrame | None, direction: str = "min") -> dict[str, Any] | None:
    """The row of the run with the best score (best day-end objective, any status), or None.

    >>> best_run(pd.DataFrame({"id": [1, 2], "objective": [0.4, 0.2]}), "min")["id"]
    2
    """
    if study_runs is None or not len(study_runs):
        return None
    column = _score_column(study_runs)
    if column not in study_runs.columns:
        return None
    _, pick = best(enumerate(study_runs[column]), direction)
    return None if pick is None else dict(study_runs.iloc[[pick]].to_dict("records")[0])


def runs_table(study_runs: pd.DataFrame, space: Space) -> pd.DataFrame:
    """The Study page's table: a run per row, its hyperparameters, objective and parent.

    >>> runs_table(pd.DataFrame({"id": [2], "name": ["a"], "status": ["running"], "day": [3],
    ...     "lr": [0.1], "objective": [0.5], "best": [0.4], "best_day": [2],
    ...     "parent_id": [1], "parent_day": [2]}), Space.from_dict(
    ...     {"lr": {"scale": "log", "low": 1e-3, "high": 1}}))["parent"].tolist()
    ['#1 day 2']
    """
    columns = ["id", "name", "status", "day", *space.names, "objective", "best", "best_day",
               "parent"]
    if study_runs is None or not len(study_runs):
        return pd.DataFrame(columns=columns)
    parents = []
    for pid, pday in zip(study_runs.get("parent_id", [None] * len(study_runs)),
                         study_runs.get("parent_day", [None] * len(study_runs)), strict=True):
        if pid is None or pd.isna(pid):
            parents.append("")
        else:
            day = "" if pday is None or pd.isna(pday) else f" day {int(pday)}"
            parents.append(f"#{int(pid)}{day}")
    table = study_runs.assign(parent=parents)
    return table[[c for c in columns if c in table.columns]].sort_values("id").reset_index(drop=True)


def study_importance(study_runs: pd.DataFrame | None, space: Space, direction: str = "min",
                     *, min_runs: int = 5) -> tuple[dict[str, float] | None, str]:
    """(importance per hyperparameter, "") once ``min_runs`` runs finished, else (None, why)."""
    from babysit.study.importance import importance

    done = finished_runs(study_runs)
    have = [p.name for p in space if p.name in done.columns]
    if len(done) < min_runs or len(have) < len(space):
        return None, (f"Importance needs {min_runs} finished runs with an objective; "
                      f"{len(done)} so far.")
    configs = [{p.name: _plain(r[p.name]) for p in space} for r in done.to_dict("records")]
    values = [float(v) for v in pd.to_numeric(done[_score_column(done)])]
    try:
        return importance(configs, values, space, direction, min_runs=min_runs), ""
    except SpaceError as exc:
        return None, f"No importance: {exc}"


def _plain(value: Any) -> Any:
    """Numpy scalars (from a DataFrame) as Python ones; whole floats of int params as ints."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 2**53 else value
    return value

"""Rules and tactics as data (rules.toml, and the operator's own files in DETECT_RULES_DIR), checked when they are
loaded: what each rule looks for, how much of it, the MITRE ATT&CK tactic it is evidence of, and why it matters.
A rule that cannot be used stops the load with words that name it; nothing here runs a query."""
from __future__ import annotations

import glob
import os
import re
import tomllib
from dataclasses import dataclass, fields
from datetime import timedelta

from eventstore.entities import KINDS


@dataclass(frozen=True)
class Detail:
    """A condition on the original record: its list field `field` (Parameters, ModifiedProperties, ...) has an item
    named `name` whose value is non-empty, and — when given — one of `values` (case ignored), or an address at a
    domain other than the acting user's (`external`)."""

    field: str
    name: str
    values: tuple[str, ...] = ()
    external: bool = False


@dataclass(frozen=True)
class Tactic:
    key: str
    name: str
    attack: str  # the ATT&CK id, TA00nn


@dataclass(frozen=True)
class Rule:
    name: str  # stable id
    title: str
    severity: str  # high, medium, low
    tactic: str  # a Tactic's key
    why: str
    shape: str
    step: str = ""  # what it found, in a few words (an incident's title); default: the title
    operations: tuple[str, ...] = ()
    by: str = "user"  # the entity kind a lead is about
    window: timedelta = timedelta(hours=1)
    at_least: int = 1
    distinct: tuple[str, int] | None = None  # (kind, at least that many different values)
    then: tuple[str, ...] = ()
    details: tuple[Detail, ...] = ()
    factor: float = 10.0
    history: timedelta = timedelta(days=7)
    km: float = 500.0
    speed: float = 900.0
    networks: tuple[str, ...] = ()


SEVERITIES = {"critical": 4, "high": 3, "medium": 2, "low": 1}
# The shapes the lead engine knows (detect/leads.py), each with the fields it reads beside those every rule has.
SHAPES = {
    "burst": {"window", "at_least", "distinct", "then"},
    "after_failures": {"window", "at_least", "then"},
    "each": {"window", "details"},
    "baseline": {"at_least", "factor", "history"},
    "new_country": {"history"},
    "travel": {"history", "km", "speed"},
    "network": {"networks"},
}
BUILT_IN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rules.toml")
_COMMON = {"name", "title", "severity", "tactic", "why", "shape", "operations", "by", "step"}


class RuleError(ValueError):
    """A rules file that cannot be used; the message names the file and the rule."""


def _duration(text, where: str) -> timedelta:
    found = re.fullmatch(r"(\d+)\s*([mhd])", str(text).strip())
    if not found:
        raise RuleError(f"{where}: a duration such as \"15m\", \"1h\" or \"2d\", not {text!r}")
    return timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[found[2]]: int(found[1])})


def _texts(value, where: str, lists: dict) -> tuple[str, ...]:
    if isinstance(value, str) and value.startswith("@"):
        if value[1:] not in lists:
            raise RuleError(f"{where}: there is no list {value[1:]!r} under [lists]")
        value = lists[value[1:]]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"{where}: a list of texts")
    return tuple(value)


def _rule(raw: dict, where: str, lists: dict, tactics: dict) -> Rule:
    name = raw.get("name")
    where = f"{where}, rule {name!r}" if isinstance(name, str) else f"{where}, a rule without a name"
    missing = sorted(field for field in _COMMON - {"operations", "by", "step"} if not isinstance(raw.get(field), str))
    if missing:
        raise RuleError(f"{where}: {', '.join(missing)} missing (each a text)")
    shape = raw["shape"]
    if shape not in SHAPES:
        raise RuleError(f"{where}: no shape {shape!r}; the shapes are {', '.join(SHAPES)}")
    unknown = sorted(set(raw) - _COMMON - SHAPES[shape])
    if unknown:
        raise RuleError(f"{where}: the shape {shape!r} reads no {', '.join(unknown)}")
    if raw["severity"] not in ("high", "medium", "low"):
        raise RuleError(f"{where}: severity is high, medium or low, not {raw['severity']!r}")
    if raw["tactic"] not in tactics:
        raise RuleError(f"{where}: no tactic {raw['tactic']!r}; the tactics are {', '.join(tactics)}")
    if raw.get("by", "user") not in KINDS:
        raise RuleError(f"{where}: by is a kind of entity ({', '.join(KINDS)}), not {raw['by']!r}")
    if shape != "new_country" and shape != "travel" and shape != "network" and "operations" not in raw:
        raise RuleError(f"{where}: operations missing")
    values = {key: value for key, value in raw.items() if key in {f.name for f in fields(Rule)}}
    try:
        for key in ("operations", "then", "networks"):
            if key in raw:
                values[key] = _texts(raw[key], f"{where}: {key}", lists)
        for key in ("window", "history"):
            if key in raw:
                values[key] = _duration(raw[key], f"{where}: {key}")
        if "distinct" in raw:
            distinct = raw["distinct"]
            if not (isinstance(distinct, dict) and distinct.get("kind") in KINDS and
                    isinstance(distinct.get("at_least"), int)):
                raise RuleError(f"{where}: distinct is {{ kind = <an entity kind>, at_least = <a number> }}")
            values["distinct"] = (distinct["kind"], distinct["at_least"])
        if "details" in raw:
            details = []
            for detail in raw["details"]:
                if not (isinstance(detail, dict) and isinstance(detail.get("field"), str) and
                        isinstance(detail.get("name"), str) and set(detail) <= {"field", "name", "values", "external"}):
                    raise RuleError(f"{where}: each detail is {{ field, name[, values][, external] }}")
                details.append(Detail(detail["field"], detail["name"],
                                      _texts(detail["values"], f"{where}: values", lists) if "values" in detail else (),
                                      bool(detail.get("external", False))))
            values["details"] = tuple(details)
        for key, kind in (("at_least", int), ("factor", (int, float)), ("km", (int, float)), ("speed", (int, float))):
            if key in raw and (not isinstance(raw[key], kind) or isinstance(raw[key], bool) or raw[key] <= 0):
                raise RuleError(f"{where}: {key} is a number above 0")
        return Rule(**{"step": raw["title"].lower(), **values})
    except (TypeError, AttributeError) as error:
        raise RuleError(f"{where}: {error}") from None


def _read(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise RuleError(f"{path}: not a readable TOML file ({error})") from None


def load(folder: str = "") -> tuple[tuple[Rule, ...], dict[str, Tactic]]:
    """The built-in rules and tactics, then the operator's rules from the *.toml files in `folder` (a rule with a
    built-in rule's name replaces it). RuleError names the file and the rule that cannot be used."""
    built_in = _read(BUILT_IN)
    tactics = {t["key"]: Tactic(t["key"], t["name"], t["attack"]) for t in built_in.get("tactic", [])}
    rules: dict[str, Rule] = {}
    for path in [BUILT_IN] + (sorted(glob.glob(os.path.join(folder, "*.toml"))) if folder else []):
        data = built_in if path == BUILT_IN else _read(path)
        unknown = sorted(set(data) - {"rule", "lists", "tactic"} if path == BUILT_IN else set(data) - {"rule", "lists"})
        if unknown:
            raise RuleError(f"{path}: it may hold [[rule]] and [lists], not {', '.join(unknown)}")
        lists = {**built_in.get("lists", {}), **data.get("lists", {})}
        for raw in data.get("rule", []):
            rule = _rule(raw, os.path.basename(path), lists, tactics)
            rules[rule.name] = rule
    return tuple(rules.values()), tactics


RULES, TACTICS = load()

"""One translation of a Filter into a WHERE clause with bound '?' parameters, shared by the engines that speak
that SQL: SQLite (the embedded store) and DuckDB (the dashboard's in-memory index). Each engine only says how
it spells a few things; what a filter means is decided here, once. User text only ever travels as a parameter."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .model import Filter

VALUE_FILTERS = ("workload", "content_type", "operation", "record_type", "result_status", "user_id")
TEXT_COLUMNS = ("user_agent", "object_id", "site_url", "file_name")


@dataclass(frozen=True)
class Dialect:
    time_column: str
    time_param: Callable[[datetime], object]  # a bound time, as the engine compares it
    fold: str  # SQL function that folds case
    fold_value: Callable[[str], str]  # the same folding, for the bound value
    contains: str  # a substring test, e.g. "instr({column}, ?) > 0"
    ip_match: Callable[[tuple[str, ...]], tuple[str, list]]  # addresses and CIDR ranges → clause, params

    def values_in(self, column: str, values, case_sensitive: bool) -> tuple[str, list]:
        marks = ", ".join("?" * len(values))
        if case_sensitive:
            return f"{column} IN ({marks})", list(values)
        return f"{self.fold}({column}) IN ({marks})", [self.fold_value(str(v)) for v in values]

    def where(self, flt: Filter) -> tuple[str, list]:
        clauses, params = ["1 = 1"], []

        def add(clause: str, values: list) -> None:
            clauses.append(clause)
            params.extend(values)

        if flt.start is not None:
            add(f"{self.time_column} >= ?", [self.time_param(flt.start)])
        if flt.end is not None:
            add(f"{self.time_column} < ?", [self.time_param(flt.end)])
        for column in VALUE_FILTERS:
            values = getattr(flt, column)
            if values:
                add(*self.values_in(column, values, flt.case_sensitive or column == "record_type"))
        if flt.client_ip:
            add(*self.ip_match(flt.client_ip))
        if flt.text:
            if flt.case_sensitive:
                tests, text = [self.contains.format(column=c) for c in TEXT_COLUMNS], flt.text
            else:
                tests = [self.contains.format(column=f"{self.fold}({c})") for c in TEXT_COLUMNS]
                text = self.fold_value(flt.text)
            add("(" + " OR ".join(tests) + ")", [text] * len(TEXT_COLUMNS))
        return " AND ".join(clauses), params

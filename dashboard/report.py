"""An incident to hand over: one self-contained HTML file (no resource from anywhere else, so it opens offline and
prints well) with the summary, the tactic chain, a timeline, a picture of the graph drawn on the server, the evidence
and the indicators; the indicators also as CSV and as a STIX 2.1 bundle for a threat-intelligence platform. Pure:
the pages and the command line hand it what it shows. Every piece of audit text is escaped text, never markup."""
from __future__ import annotations

import html
import io
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd

from detect.incidents import Incident, in_order
from detect.rules import SEVERITIES, Tactic
from eventstore import Filter
from eventstore.export import write_csv
from eventstore.model import parse_utc

from .applications import NAMING_OPERATIONS, first_party, named_in
from .filters import View
from .graph import Graph, build_graph, describe_nodes, to_svg
from .ipinfo import place_text
from .untrusted import canvas_text

INDICATOR_COLUMNS = ["type", "value", "context"]
AROUND = timedelta(hours=1)  # the graph shows the incident's entities this long before and after it
_MAIL = re.compile(r"[^@\s\\<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def incident_edges(index, incident: Incident) -> pd.DataFrame:
    """The edges of everything the incident's accounts and addresses did over its span ±1 hour: accounts →
    operations → targets (the inbox rule, the files, the new administrator) and addresses → accounts."""
    start, end = parse_utc(incident.first_seen) - AROUND, parse_utc(incident.last_seen) + AROUND
    frames = []
    if incident.entities("users"):
        frames.append(index.edges(Filter(start=start, end=end, user_id=tuple(incident.entities("users"))),
                                  ("user", "operation", "object")))
    if incident.entities("ips"):
        frames.append(index.edges(Filter(start=start, end=end, client_ip=tuple(incident.entities("ips"))),
                                  ("ip", "user")))
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def incident_graph(edges: pd.DataFrame, incident: Incident, describe, cap: int = 60) -> Graph:
    """Its own entities ringed and kept first."""
    main = {("user", u) for u in incident.entities("users")} | {("ip", i) for i in incident.entities("ips")} | \
        {("object", t) for t in incident.entities("targets")}
    return build_graph(edges, cap=cap, highlight=frozenset(main), describe=describe)


def evidence(index, incident: Incident, limit: int = 500) -> list[tuple]:
    """(event, the rule that found it) for its leads' events, newest first."""
    positions: dict[int, str] = {}
    for lead in incident.leads:
        flt = View.from_params({k: v if isinstance(v, list) else [v] for k, v in lead.view.items()}).to_filter()
        for _, position in index.page(flt, None, limit=limit):
            positions.setdefault(position, lead.rule)
    ordered = sorted(positions)
    rows = index.store.events_at(ordered)
    rules = [positions[p] for p in ordered] if len(rows) == len(ordered) else [""] * len(rows)  # some pruned
    return sorted(zip(rows, rules), key=lambda pair: pair[0].time, reverse=True)[:limit]


def consented_applications(index) -> dict[str, str]:
    """id → name of the applications the tenant's own records name (a consent, a registration)."""
    keys = index.page(Filter(operation=NAMING_OPERATIONS), limit=2000)
    names: dict[str, str] = {}
    for row in index.store.events_at([position for _, position in keys]):
        try:
            names.update(named_in(json.loads(row.raw)))
        except (ValueError, AttributeError):
            continue
    return names


def places_of(index, addresses) -> dict[str, tuple[str, str, object]]:
    return {p.client_ip: (p.country, p.owner, p.asn) for p in index.places(list(addresses)).itertuples()}


@dataclass
class Files:
    html: str
    csv: str
    stix: str


def write(index, incident: Incident, tactics: dict[str, Tactic], tenant: str, describe=None) -> Files:
    """The report, its indicators as CSV and as STIX 2.1, from the index (and the store behind it)."""
    places = places_of(index, incident.entities("ips"))
    consented = consented_applications(index)
    names = {**first_party(), **consented}
    graph = incident_graph(incident_edges(index, incident), incident,
                           describe or (lambda nodes: describe_nodes(nodes, places, consented)))
    rows = indicators(incident, places, names)
    return Files(html_report(incident, tactics, to_svg(graph, incident.title), evidence(index, incident), rows, tenant,
                             places), indicators_csv(rows), stix_bundle(incident, rows, tactics))


def _e(text, limit: int | None = None) -> str:
    return html.escape(canvas_text(text, limit), quote=True)


def indicators(incident: Incident, places: dict[str, tuple[str, str, object]], app_names: dict[str, str]) -> list[dict]:
    """What another tool can look for: the addresses (with country and network owner), the accounts, the
    applications, and the mail addresses and domains that mail was sent or forwarded to."""
    found = []
    for value in incident.entities("ips"):
        try:
            kind = "ipv6-addr" if ipaddress.ip_address(value).version == 6 else "ipv4-addr"
        except ValueError:
            continue
        context = place_text(*places.get(value, ("", "", None)))
        found.append({"type": kind, "value": value, "context": context})
    for value in incident.entities("users"):
        found.append({"type": "user-account", "value": value, "context": "account"})
    for value in incident.entities("apps"):
        found.append({"type": "application", "value": value, "context": app_names.get(value.lower(), "")})
    mail, domains = [], []
    for value in incident.entities("targets"):
        for part in value.replace(";", ",").split(","):
            address = part.strip().removeprefix("smtp:").removeprefix("SMTP:")
            if _MAIL.fullmatch(address) and address not in mail:
                mail.append(address)
    home = {user.rsplit("@", 1)[-1].casefold() for user in incident.entities("users") if "@" in user}
    for address in mail:
        found.append({"type": "email-addr", "value": address, "context": "mail sent or forwarded to"})
        domain = address.rsplit("@", 1)[-1]
        if domain.casefold() not in home and domain not in domains:
            domains.append(domain)
            found.append({"type": "domain-name", "value": domain, "context": "outside the tenant"})
    return found


def indicators_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    write_csv(([row[c] for c in INDICATOR_COLUMNS] for row in rows), out, INDICATOR_COLUMNS)
    return out.getvalue()


def _pattern(row: dict) -> str | None:
    value = row["value"].replace("\\", "\\\\").replace("'", "\\'")  # STIX patterns escape these two
    return {"ipv4-addr": f"[ipv4-addr:value = '{value}']", "ipv6-addr": f"[ipv6-addr:value = '{value}']",
            "user-account": f"[user-account:account_login = '{value}']",
            "email-addr": f"[email-addr:value = '{value}']", "domain-name": f"[domain-name:value = '{value}']",
            "application": f"[software:name = '{value}']"}.get(row["type"])


def stix_bundle(incident: Incident, rows: list[dict], tactics: dict[str, Tactic]) -> str:
    """The indicators as a STIX 2.1 bundle: an indicator each, and a report that names the incident, its tactic
    chain and them."""
    import stix2

    first = parse_utc(incident.first_seen)
    made = []
    for row in rows:
        pattern = _pattern(row)
        if pattern is None:
            continue
        made.append(stix2.Indicator(
            name=f"{row['type']} {row['value']}"[:250], description=f"{incident.id}: {row['context']}"[:500],
            pattern=pattern, pattern_type="stix", valid_from=first, indicator_types=["malicious-activity"],
            labels=[incident.severity]))
    if not made:
        return stix2.Bundle(objects=[]).serialize(pretty=True)
    report = stix2.Report(
        name=f"{incident.id}: {incident.title}"[:500], published=datetime.now(timezone.utc),
        report_types=["threat-report"], object_refs=[indicator.id for indicator in made],
        description="Tactics (MITRE ATT&CK): " + " → ".join(f"{tactics[t].name} ({tactics[t].attack})"
                                                            for t in incident.chain if t in tactics))
    return stix2.Bundle(objects=made + [report]).serialize(pretty=True)


def timeline_svg(incident: Incident, tactics: dict[str, Tactic], width: int = 1040) -> str:
    """Each lead as a bar over its span on a line of its own, coloured by tactic, in the order the attack ran."""
    leads = in_order(incident.leads)
    start, end = parse_utc(incident.first_seen), parse_utc(incident.last_seen)
    total = max((end - start).total_seconds(), 60.0)
    left, row, top = 300, 28, 30
    height = top + row * len(leads) + 30
    colors = ["#4f8df7", "#27ae60", "#f2994a", "#eb5757", "#bb6bd9", "#56ccf2", "#f2c94c", "#9b51e0"]
    color_of = {key: colors[n % len(colors)] for n, key in enumerate(tactics)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
             f'font-family="Arial, Helvetica, sans-serif" font-size="12">',
             f'<text x="{left}" y="18" fill="#555">{start:%Y-%m-%d %H:%M} UTC</text>',
             f'<text x="{width - 10}" y="18" fill="#555" text-anchor="end">{end:%Y-%m-%d %H:%M} UTC</text>']
    for n, lead in enumerate(leads):
        y = top + n * row
        a = left + (parse_utc(lead.first_seen) - start).total_seconds() / total * (width - left - 20)
        b = left + (parse_utc(lead.last_seen) - start).total_seconds() / total * (width - left - 20)
        who = lead.users[0] if len(lead.users) == 1 else f"{len(lead.users)} accounts"
        where = lead.ips[0] if len(lead.ips) == 1 else f"{len(lead.ips)} addresses"
        label = f"{lead.first_seen[11:16]} {lead.step or lead.title}: {who}, {where}"
        tactic = tactics.get(lead.tactic)
        parts.append(f'<text x="6" y="{y + 16}" fill="#222">{_e(label, 48)}</text>')
        parts.append(f'<rect x="{a:.1f}" y="{y + 5}" width="{max(b - a, 4):.1f}" height="16" rx="3" '
                     f'fill="{color_of.get(lead.tactic, "#888")}"><title>{_e(lead.summary, 400)}'
                     f'{" · " + _e(tactic.name) if tactic else ""}</title></rect>')
    parts.append("</svg>")
    return "\n".join(parts)


_STYLE = """
body{font:14px/1.45 -apple-system,"Segoe UI",Arial,sans-serif;color:#1d1d1f;margin:28px auto;max-width:1100px;
padding:0 16px}
h1{font-size:20px;margin:0 0 6px} h2{font-size:16px;margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555} .badge{display:inline-block;padding:1px 8px;border-radius:10px;background:#eee;margin:2px 4px 2px 0}
.critical{background:#7b1010;color:#fff}.high{background:#c0392b;color:#fff}.medium{background:#e67e22;color:#fff}
.low{background:#f1c40f}
table{border-collapse:collapse;width:100%;font-size:12px} th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;
vertical-align:top;word-break:break-word} th{background:#f4f4f4}
.graph svg{width:100%;height:auto;border:1px solid #ddd} footer{color:#777;font-size:12px;margin-top:30px}
@media print{body{margin:0;max-width:none} h2{break-after:avoid} tr,.graph{break-inside:avoid}}
"""


def html_report(incident: Incident, tactics: dict[str, Tactic], graph_svg: str, events: list[tuple],
                rows: list[dict], tenant: str, places: dict[str, tuple[str, str, object]]) -> str:
    """The whole report as one HTML document. `events`: (EventRow, rule) pairs, newest first."""
    user, ip = incident.main
    place = places.get(ip, ("", "", None))
    chain = " → ".join(f'<span class="badge">{_e(tactics[t].name)} ({_e(tactics[t].attack)})</span>'
                       for t in incident.chain if t in tactics)
    steps = "".join(f"<tr><td>{_e(lead.first_seen[:16].replace('T', ' '))}</td><td>{_e(lead.title)}</td>"
                    f"<td>{_e(tactics[lead.tactic].name if lead.tactic in tactics else '')}</td>"
                    f"<td>{_e(lead.summary, 600)}</td></tr>" for lead in in_order(incident.leads))
    joins = "".join(f"<li>{_e(join['why'], 400)}</li>" for join in incident.joins)
    evidence = "".join(f"<tr><td>{_e(row.time)}</td><td>{_e(rule)}</td><td>{_e(row.operation)}</td>"
                       f"<td>{_e(row.user_id, 80)}</td><td>{_e(row.client_ip)}</td><td>{_e(row.object_id, 120)}</td>"
                       f"<td>{_e(row.file_name, 80)}</td></tr>" for row, rule in events)
    found = "".join(f"<tr><td>{_e(r['type'])}</td><td>{_e(r['value'], 300)}</td><td>{_e(r['context'], 200)}</td></tr>"
                    for r in rows)
    history = "".join(f"<li>{_e(h.get('at', ''))} {_e(h.get('by', ''))}: "
                      + _e("; ".join(f"{k} {h[k]}" for k in ("status", "owner", "note") if k in h), 600) + "</li>"
                      for h in incident.case.get("history", []))
    level = incident.severity if incident.severity in SEVERITIES else "medium"
    where = f" ({_e(' · '.join(p for p in place[:2] if p))})" if any(place[:2]) else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{_e(incident.id)} · {_e(incident.title, 200)}</title><style>{_STYLE}</style></head>
<body>
<h1>{_e(incident.id)}: {_e(incident.title, 400)}</h1>
<p class="meta"><span class="badge {level}">{_e(incident.severity)}</span> status {_e(incident.status)} · owner
{_e(incident.case.get('owner', '') or 'nobody yet')} · {len(incident.leads)} leads · {incident.events:,} events ·
{_e(tenant)}</p>
<h2>Summary</h2>
<p>{_e(user) or 'An account'} {('from ' + _e(ip)) if ip else ''}{where},
{_e(incident.first_seen[:16].replace('T', ' '))} – {_e(incident.last_seen[:16].replace('T', ' '))} UTC.</p>
<p>Tactic chain: {chain or '—'}</p>
<table><tr><th>first seen (UTC)</th><th>lead</th><th>tactic</th><th>what</th></tr>{steps}</table>
{('<h2>Why these belong together</h2><ul>' + joins + '</ul>') if joins else ''}
<h2>Timeline</h2><div class="graph">{timeline_svg(incident, tactics)}</div>
<h2>Graph: its accounts, addresses and targets, ±1 hour, all of their activity</h2><div class="graph">{graph_svg}</div>
<h2>Indicators</h2><table><tr><th>type</th><th>value</th><th>context</th></tr>{found}</table>
<h2>Evidence ({len(events):,} events, newest first)</h2>
<table><tr><th>time (UTC)</th><th>lead</th><th>operation</th><th>user</th><th>address</th><th>target</th><th>file</th>
</tr>{evidence}</table>
{('<h2>Decisions</h2><ul>' + history + '</ul>') if history else ''}
<footer>O365 Activity Graph · written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · the original records are in
the event store (python -m ingest export).</footer>
</body></html>"""


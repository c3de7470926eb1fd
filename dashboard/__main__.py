"""`python -m dashboard [streamlit options]`: the dashboard, with sign-in configured from the same environment
variables (or .env) as everything else. Streamlit reads sign-in settings from a secrets file; this writes one,
readable by this user only, in a private temporary folder (never in the repository), runs Streamlit, and removes the
folder when Streamlit stops (a folder left by a run that was killed is removed by the next). With O365_CA_BUNDLE,
every outbound connection of the dashboard trusts those CAs too: sign-in's as well as the sync's.

`python -m dashboard incidents|report|leads|export …`: the incidents, an incident's report, the leads, and the
events Explore's filters pick, from a terminal (`python -m dashboard --help`)."""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from detect.rules import RuleError
from eventstore import StoreError
from eventstore.model import parse_utc, utc_text
from ingest import redact
from ingest.settings import SettingsError, load_settings

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")
FOLDER_PREFIX = "o365-dashboard-"


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _private(folder: str, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    return path


def secrets_file(settings, folder: str) -> str:
    """The [auth] section Streamlit's st.login reads, for Entra ID (OpenID Connect, authorization code with PKCE:
    asked for explicitly, since Entra's metadata does not list code_challenge_methods_supported and Streamlit
    would otherwise leave it out)."""
    metadata = f"{settings.login_url.rstrip('/')}/{settings.signin_tenant}/v2.0/.well-known/openid-configuration"
    return _private(folder, "secrets.toml", (
        f"[auth]\nredirect_uri = {_toml(settings.signin_redirect_uri)}\n"
        f"cookie_secret = {_toml(settings.signin_cookie_secret)}\n"
        f"client_id = {_toml(settings.signin_client_id)}\nclient_secret = {_toml(settings.signin_client_secret)}\n"
        f"server_metadata_url = {_toml(metadata)}\n"
        "[auth.client_kwargs]\nscope = \"openid profile email\"\nprompt = \"select_account\"\n"
        "code_challenge_method = \"S256\"\n"))


def ca_file(settings, folder: str) -> str:
    """The CAs every TLS client of the dashboard trusts (SSL_CERT_FILE: sign-in's HTTP client reads it): those it
    would trust anyway, and O365_CA_BUNDLE's."""
    import certifi

    parts = []
    for source in (os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where(),
                   settings.ca_bundle):
        with open(source, encoding="utf-8", errors="replace") as f:
            parts.append(f.read().rstrip("\n") + "\n")
    return _private(folder, "ca.pem", "".join(parts))


def _remove_stale_folders() -> None:
    """Folders of earlier runs that were killed before they could remove theirs (their process is gone)."""
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"{FOLDER_PREFIX}*")):
        pid = os.path.basename(folder)[len(FOLDER_PREFIX):].split("-")[0]
        if pid.isdigit() and os.stat(folder).st_uid == os.getuid() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(settings, argv: list[str]) -> int:
    """Streamlit in a child process, with what it needs written in a private folder removed when it stops."""
    _remove_stale_folders()
    folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")  # 0700
    try:
        command = [sys.executable, "-m", "streamlit", "run", APP, *argv]
        environment = dict(os.environ)
        if settings.signin_client_id:
            command += ["--secrets.files", secrets_file(settings, folder)]
        if settings.ca_bundle:
            environment["SSL_CERT_FILE"] = ca_file(settings, folder)
        child = subprocess.Popen(command, env=environment)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda number, _: child.send_signal(number))
        return child.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class UsageError(ValueError):
    """A command line this cannot read: said in words, exit 2, nothing done."""


def _time(text: str, name: str):
    from eventstore.model import parse_utc

    try:
        return parse_utc(text.replace(" ", "T"))
    except ValueError:
        raise UsageError(f"--{name} must be a UTC date or time such as 2026-11-30 or 2026-11-30T03:12, not "
                         f"{text!r}.") from None


@contextlib.contextmanager
def _opened(settings, follow: bool = True):
    """The store and, unless a dashboard serves it (then None), its index brought up to date with the store."""
    from eventstore import open_store

    from .index import ActivityIndex, IndexBusy
    from .ipinfo import ip_sources

    with open_store(settings.store_url, cosmos=settings.cosmos_options(),
                    retention_days=settings.retention_days) as store:
        try:
            index = ActivityIndex(store, settings.index_file, settings.index_memory, ip_sources(settings))
        except IndexBusy:
            index = None
        try:
            if index is not None and follow:
                index.refresh()
                index.wait()
            yield store, index
        finally:
            if index is not None:
                index.close()


def leads(settings, argv: list[str]) -> int:
    """Bring the leads up to date (when no dashboard serves this store's index: it keeps them up to date itself)
    and print them, not-yet-reviewed ones by default; one JSON object per line with --json."""
    from detect.leads import LeadEngine
    from detect.rules import load

    parser = argparse.ArgumentParser(prog="python -m dashboard leads", description=leads.__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object per lead and line")
    parser.add_argument("--all", action="store_true", help="reviewed leads too")
    parser.add_argument("--since", default="", help="only leads last seen at or after this UTC time (ISO 8601)")
    args = parser.parse_args(argv)
    since = utc_text(_time(args.since, "since")) if args.since else ""
    with _opened(settings) as (store, index):
        if index is None:
            print("A dashboard serves this store's index and keeps the leads up to date: these are the leads it "
                  "stored.", file=sys.stderr)
        engine = LeadEngine(index, store, load(settings.detect_rules_dir)[0])
        if index is not None:
            engine.update()
        found = [lead for lead in engine.leads() if (args.all or not lead.reviewed) and
                 utc_text(parse_utc(lead.last_seen)) >= since]
    try:
        _print(found, args.json)
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        sys.stderr.close()
    return 0


def _incidents(settings, store, index):
    """The incidents, correlated from the leads brought up to date (unless a dashboard keeps them: then as stored)."""
    from datetime import timedelta

    from detect.incidents import Correlator
    from detect.leads import LeadEngine
    from detect.rules import load

    rules, tactics = load(settings.detect_rules_dir)
    engine = LeadEngine(index, store, rules)
    if index is not None:
        engine.update()
    return Correlator(index, store, timedelta(hours=settings.incident_gap_hours)).correlate(engine.leads()), tactics


def incidents(settings, argv: list[str]) -> int:
    """The incidents — leads of one attack joined into one investigation each — open ones by default, most severe
    first; one JSON object per line with --json."""
    parser = argparse.ArgumentParser(prog="python -m dashboard incidents", description=incidents.__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object per incident and line")
    parser.add_argument("--all", action="store_true", help="closed incidents too")
    parser.add_argument("--since", default="", help="only incidents last seen at or after this UTC time (ISO 8601)")
    args = parser.parse_args(argv)
    since = utc_text(_time(args.since, "since")) if args.since else ""
    with _opened(settings) as (store, index):
        if index is None:
            print("A dashboard serves this store's index and keeps the incidents up to date: these are the ones it "
                  "stored.", file=sys.stderr)
        found, _ = _incidents(settings, store, index)
    found = [i for i in found if (args.all or not i.status.startswith("closed")) and i.last_seen >= since]
    try:
        for incident in found:
            if args.json:
                print(json.dumps(incident.line(), ensure_ascii=False))
            else:
                print(f"{incident.id}  {incident.severity:8}  {incident.status:10}  {incident.last_seen}  "
                      f"{redact.short(incident.title, 300)}")
        if not args.json:
            print(f"{len(found)} incident(s)", file=sys.stderr)
    except BrokenPipeError:
        sys.stderr.close()
    return 0


def report(settings, argv: list[str]) -> int:
    """An incident's report: one self-contained HTML file (it opens offline and prints well); beside it, with
    --indicators, its indicators as CSV and as a STIX 2.1 bundle (FILE.csv, FILE.stix.json)."""
    from .report import write

    parser = argparse.ArgumentParser(prog="python -m dashboard report", description=report.__doc__)
    parser.add_argument("incident", help="the incident's id, e.g. INC-5EB9EFED (python -m dashboard incidents)")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--indicators", action="store_true", help="also FILE.csv and FILE.stix.json")
    args = parser.parse_args(argv)
    with _opened(settings) as (store, index):
        if index is None:
            raise UsageError("A dashboard serves this store's index: download the report from its Incidents page, or "
                             "give this command an index of its own (DASHBOARD_INDEX=another-file).")
        found, tactics = _incidents(settings, store, index)
        incident = next((i for i in found if i.id == args.incident.strip().upper()), None)
        if incident is None:
            raise UsageError(f"There is no incident {args.incident!r}: python -m dashboard incidents --all lists them.")
        files = write(index, incident, tactics, settings.tenant_label)
    base = args.out.removesuffix(".html")
    outputs = [(args.out, files.html)] + ([(f"{base}.csv", files.csv), (f"{base}.stix.json", files.stix)]
                                          if args.indicators else [])
    for path, text in outputs:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    print(f"wrote {', '.join(path for path, _ in outputs)}: {incident.id}, {incident.title}", file=sys.stderr)
    return 0


def export(settings, argv: list[str]) -> int:
    """The stored events Explore's filters pick (case-sensitive unless --ignore-case, as everywhere), newest first:
    CSV and Excel give the normalized columns (formula-like CSV cells neutralized, Excel's cells all text), JSON
    Lines the original records. Without --since, every stored event."""
    from eventstore.export import write_csv, write_jsonl, write_xlsx

    from .filters import EARLIEST, FilterInputError, View, in_words

    parser = argparse.ArgumentParser(prog="python -m dashboard export", description=export.__doc__)
    parser.add_argument("--since", help="from this UTC date or time (default: the oldest stored event)")
    parser.add_argument("--until", help="to this UTC date or time, not included (default: now)")
    parser.add_argument("--user", action="append", default=[], help="only this account (repeat for several)")
    parser.add_argument("--ip", action="append", default=[], help="only this address or CIDR range (repeatable)")
    parser.add_argument("--operation", action="append", default=[], help="only this operation (repeatable)")
    parser.add_argument("--ignore-case", action="store_true", help="users and operations match whatever their case")
    parser.add_argument("--format", choices=("csv", "jsonl", "xlsx"), default="jsonl")
    parser.add_argument("--output", help="file to write (default: standard output; Excel needs a file)")
    args = parser.parse_args(argv)
    if args.format == "xlsx" and not args.output:
        raise UsageError("--format xlsx writes a workbook: give it a file with --output.")
    start = _time(args.since, "since") if args.since else EARLIEST
    end = _time(args.until, "until") if args.until else None
    view = View(period="custom", start=start.replace(tzinfo=None), end=end.replace(tzinfo=None) if end else None,
                user=",".join(args.user), ip=",".join(args.ip), operation=tuple(args.operation),
                case_sensitive=not args.ignore_case)
    try:
        flt = view.to_filter()
    except FilterInputError as error:
        raise UsageError(str(error)) from None
    write = {"csv": write_csv, "jsonl": write_jsonl, "xlsx": write_xlsx}[args.format]
    with _opened(settings) as (store, index):
        if index is None:
            raise UsageError("A dashboard serves this store's index: export from its Events page, or give this "
                             "command an index of its own (DASHBOARD_INDEX=another-file).")
        binary = args.format == "xlsx"
        if args.output:
            with open(args.output, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})
                      ) as out:
                count = write(index.events(flt), out)
        else:
            count = write(index.events(flt), sys.stdout)
    print(f"exported {count:,} events ({in_words(flt)})" + (f" to {args.output}" if args.output else ""),
          file=sys.stderr)
    return 0


def _print(found, as_json: bool) -> None:
    for lead in found:
        if as_json:
            print(json.dumps(lead.line(), ensure_ascii=False))
        else:
            # audit text on one line, without the control characters a terminal would obey
            print(f"{lead.severity:6}  {lead.last_seen}  {redact.short(lead.summary, 400)}")
    if not as_json:
        print(f"{len(found)} lead(s)", file=sys.stderr)


HELP = """usage: python -m dashboard [streamlit options]
       python -m dashboard COMMAND [--help]

With no command: the dashboard (Streamlit), sign-in configured from the same settings as everything else;
Streamlit's own options (--server.port 8502, ...) pass through.

commands:
  incidents  the incidents: the leads of one attack joined into one investigation each (--json: one per line)
  report     an incident's report, one self-contained HTML file (--indicators: also as CSV and STIX 2.1)
  leads      the current leads, for a person or a scheduler (--json: one object per line)
  export     the stored events Explore's filters pick, as CSV, Excel or JSON Lines

Settings are environment variables (or .env): README, Configuration."""

COMMANDS = {"incidents": incidents, "report": report, "leads": leads, "export": export}


def main() -> None:
    if sys.argv[1:2] in (["-h"], ["--help"], ["help"]):
        print(HELP)
        sys.exit(0)
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.exit(f"The configuration has a problem: {error}")
    command = COMMANDS.get(sys.argv[1] if len(sys.argv) > 1 else "")
    if command is None:
        sys.exit(serve(settings, sys.argv[1:]))
    try:
        sys.exit(command(settings, sys.argv[2:]))
    except (UsageError, RuleError) as error:
        print(error, file=sys.stderr)
        sys.exit(2)
    except StoreError as error:
        print(f"The event store cannot be opened: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The CLI as a user runs it: `python -m ingest ...` in a real process against the HTTPS simulator."""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from eventstore.sqlite import SqliteStore
from ingest.feedstate import FeedState
from simulator import SimulatedTenant

from .conftest import ROOT, child_pythonpath, ground_truth, stored_ids, week_start


def cli_env(tmp_path, env: dict, **extra) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("O365_", "AUDIT_", "COSMOS_"))}
    base.update({"PYTHONPATH": child_pythonpath(), "AUDIT_STORE": f"sqlite:///{tmp_path / 'audit.db'}",
                 "O365_MAX_REQUESTS_PER_MINUTE": "60000", **env})
    base.update({k: str(v) for k, v in extra.items()})
    return base


def run_cli(tmp_path, env: dict, *args, timeout=120, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest", *args], cwd=tmp_path, env=cli_env(tmp_path, env, **extra),
                          capture_output=True, text=True, timeout=timeout)


def test_sync_status_and_export(simulator, tmp_path):
    service, env = simulator()
    result = run_cli(tmp_path, env, "sync")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # logs and progress go to stderr
    assert "sync done" in result.stderr

    status = json.loads(run_cli(tmp_path, env, "status", "--json").stdout)
    expected_ids, expected_lost = ground_truth(service)
    assert status["events"] == len(expected_ids)
    assert {b["content_id"] for b in status["lost_blobs"]} == expected_lost
    assert all(ct["last_success"] and not ct["last_error"] for ct in status["content_types"])
    assert sum(ct["blobs_lost"] for ct in status["content_types"]) == len(expected_lost)
    table = run_cli(tmp_path, env, "status").stdout
    assert "AF20051" in table and "Audit.SharePoint" in table

    exported = run_cli(tmp_path, env, "export", "--format", "jsonl").stdout.splitlines()
    assert {json.loads(line)["Id"] for line in exported} == expected_ids  # the original records, one per line

    out = tmp_path / "events.csv"
    assert run_cli(tmp_path, env, "export", "--format", "csv", "--output", str(out)).returncode == 0
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(expected_ids)
    formula = [r for r in rows if "HYPERLINK" in r["file_name"]]
    assert formula and all(r["file_name"].startswith("'=") for r in formula), "formula cells must be neutralized"


@pytest.mark.parametrize("env, variable", [
    ({"O365_TENANT_ID": "not-a-guid"}, "O365_TENANT_ID"),
    ({"O365_TENANT_ID": "9f1c2d3e-4a5b-46c7-8d9e-0f1a2b3c4d5e"}, "O365_CLIENT_ID"),
    ({"O365_TENANT_ID": "9f1c2d3e-4a5b-46c7-8d9e-0f1a2b3c4d5e", "O365_CLIENT_ID": "9f1c2d3e-4a5b-46c7-8d9e-0f1a2b3c4d5e"},
     "O365_CLIENT_SECRET"),
    ({"O365_CLIENT_SECRET": "topsecret-value-xyz"}, "O365_TENANT_ID"),
    ({"O365_SYNC_INTERVAL": "soon"}, "O365_SYNC_INTERVAL"),
    ({"O365_API_URL": "http://manage.office.com"}, "O365_API_URL"),
    ({"O365_CONTENT_TYPES": "Audit.Exchange,Audit.Everything"}, "O365_CONTENT_TYPES"),
    ({"AUDIT_STORE": "postgres://x"}, "AUDIT_STORE"),
    ({"AUDIT_STORE": "cosmos"}, "COSMOS_ENDPOINT"),
    ({"O365_CA_BUNDLE": "/no/such/ca.pem"}, "O365_CA_BUNDLE"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_settings_give_one_clear_message(tmp_path, env, variable):
    result = run_cli(tmp_path, env, "sync")
    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert "topsecret-value-xyz" not in result.stderr


def test_killed_at_random_moments_then_resumed_loses_nothing_and_duplicates_nothing(simulator, tmp_path):
    tenant = SimulatedTenant(week_start(), seed=21, events_per_week=20_000, blob_minutes=60)
    service, env = simulator(tenant, quota_requests=1_000_000)
    chance = random.Random(20261128)
    kills = 0
    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-m", "ingest", "sync", "--workers", "4"], cwd=tmp_path,
                                   env=cli_env(tmp_path, env, O365_MAX_REQUESTS_PER_MINUTE=3000),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(chance.uniform(0.8, 2.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 3, "the sync finished too fast to be killed mid-way: make the tenant bigger"
    result = run_cli(tmp_path, env, "sync", timeout=300)
    assert result.returncode == 0, result.stderr
    with SqliteStore(str(tmp_path / "audit.db")) as store:
        ids = stored_ids(store)
        expected_ids, expected_lost = ground_truth(service)
        assert len(ids) == len(set(ids))
        assert set(ids) == expected_ids
        assert {b.content_id for b in FeedState(store).issues() if b.status == "lost"} == expected_lost


def test_run_loops_and_stops_cleanly_on_sigterm(simulator, tmp_path):
    _, env = simulator()
    process = subprocess.Popen([sys.executable, "-m", "ingest", "run"], cwd=tmp_path,
                               env=cli_env(tmp_path, env, O365_SYNC_INTERVAL=1),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        passes = 0
        while time.monotonic() < deadline and passes < 2:
            time.sleep(0.5)
            status = json.loads(run_cli(tmp_path, env, "status", "--json").stdout)
            passes = 2 if status["events"] and all(c["last_success"] for c in status["content_types"]) else 0
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "stopped cleanly" in stderr
    assert stderr.count("sync done") >= 1


def test_subscribe_starts_every_content_type(simulator, tmp_path):
    service, env = simulator()
    result = run_cli(tmp_path, env, "subscribe")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": enabled") == 5
    assert run_cli(tmp_path, env, "subscribe").returncode == 0  # AF20024 the second time is success


def test_demo_mode_says_demo_everywhere(tmp_path):
    env = {"O365_CONTENT_TYPES": "DLP.All,Audit.Exchange,Audit.SharePoint"}  # the DEMO's lost blobs are in these
    result = run_cli(tmp_path, env, "sync", timeout=180)
    assert result.returncode == 0, result.stderr
    assert "DEMO" in result.stderr
    status = json.loads(run_cli(tmp_path, env, "status", "--json").stdout)
    assert status["demo"] is True and "DEMO" in status["tenant"]
    assert status["events"] > 0 and [b["code"] for b in status["lost_blobs"]] == ["AF20051", "AF20051"]
    assert "on purpose, to show how a lost blob is recorded" in run_cli(tmp_path, env, "status").stdout, \
        "the DEMO's planted losses are said to be planted"


def test_a_damaged_store_is_found_before_an_export_and_explained(simulator, tmp_path):
    _, env = simulator()
    assert run_cli(tmp_path, env, "sync").returncode == 0
    assert run_cli(tmp_path, env, "check").returncode == 0
    path = tmp_path / "audit.db"
    with open(path, "r+b") as f:  # one page in the middle overwritten, as a bad disk or a torn copy would
        header = f.read(100)
        page_size = int.from_bytes(header[16:18], "big")
        pages = path.stat().st_size // page_size
        f.seek(page_size * (pages // 2))
        f.write(b"\xa5" * page_size)
    for command in (["check"], ["export", "--format", "jsonl"]):
        result = run_cli(tmp_path, env, *command)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "is damaged" in result.stderr and "restore the file from a backup" in result.stderr
        assert result.stdout == "", "nothing half-written"


def test_the_readmes_settings_table_is_the_codes_per_component_with_the_same_defaults():
    import re

    from ingest.settings import COMPONENTS, VARIABLES

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    table = readme[readme.index("| Variable | Meaning |"):]
    table = table[:table.index("\n\n")]
    rows, groups, group = {}, [], None
    for line in table.splitlines()[2:]:
        first, meaning = (cell.strip() for cell in line.strip("|").split("|", 1))
        if first.startswith("**"):
            group = first.strip("*")
            groups.append(group)
            continue
        for name in re.findall(r"`([A-Za-z0-9_]+)`", first):
            rows[name] = (group, meaning)
    assert set(rows) == set(VARIABLES), f"only in the README: {set(rows) - set(VARIABLES)}; only in the code: " \
                                        f"{set(VARIABLES) - set(rows)}"
    assert groups == list(COMPONENTS), "the README groups the settings as the code declares them"
    for component, variables in COMPONENTS.items():
        for var in variables:
            group, meaning = rows[var.name]
            assert group == component, f"{var.name} is a {component} setting, not a {group} one"
            # the default the code uses is the one the README says
            for part in var.default if isinstance(var.default, tuple) else [var.default]:
                assert part in (None, "") or str(part) in meaning, f"{var.name}: README does not say {part!r}"

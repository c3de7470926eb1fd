"""What a hostile or broken peer costs the ingest: peak memory of `python -m ingest sync` (the largest process of
it, the parsing helper included) when the API sends huge content blobs, against the same sync from a
well-behaved API measured in the same run; and how long SIGTERM takes to stop `run` while every request is
held open by a peer that sends one byte every half second.

    .venv/bin/python bench/hostile.py
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from simulator import SimulatedTenant, SimulatorConfig, start_simulator  # noqa: E402
from simulator.hostile import huge_blob, json_answer, trickle  # noqa: E402

MB = 1024 * 1024


def environment(env: dict, workdir: str, **extra) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("O365_", "AUDIT_", "COSMOS_"))}
    return {**base, **env, "PYTHONPATH": ROOT, "AUDIT_STORE": f"sqlite:///{workdir}/audit.db",
            "O365_MAX_REQUESTS_PER_MINUTE": "60000", **{k: str(v) for k, v in extra.items()}}


def simulator(workdir: str):
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=7, hours=-1)
    tenant = SimulatedTenant(start, seed=5, events_per_week=20_000)
    return start_simulator(tenant, SimulatorConfig(frozen_at=datetime.now(timezone.utc)),
                           tls_dir=os.path.join(workdir, "tls"))


def peak_sync(script=None, times: int = 0) -> tuple[float, float, int]:
    """(peak RSS MB of the sync's largest process, seconds, exit code) for one fresh sync."""
    workdir = tempfile.mkdtemp(prefix="bench-hostile-")
    server, env = simulator(workdir)
    if script is not None:
        server.service.script("/audit/", script, times=times)
    command = [sys.executable, "-m", "ingest", "sync"]
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=workdir, env=environment(env, workdir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    # the child's usage covers the descendants it reaped too (the parsing helper): its peak is theirs if larger
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    server.stop()
    return usage.ru_maxrss / 1024, seconds, os.waitstatus_to_exitcode(status)


def sigterm_latency() -> float:
    workdir = tempfile.mkdtemp(prefix="bench-hostile-")
    server, env = simulator(workdir)
    server.service.script("/audit/", trickle(json_answer([]), 0.5), times=10_000)
    process = subprocess.Popen([sys.executable, "-m", "ingest", "run"], cwd=workdir, env=environment(env, workdir),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not [p for p in server.service.started if "/audit/" in p]:
        time.sleep(0.05)
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    began = time.perf_counter()
    process.wait()
    server.stop()
    return time.perf_counter() - began


def main() -> None:
    baseline, seconds, _ = peak_sync()
    print(f"well-behaved API       : peak {baseline:.0f} MB, {seconds:.1f} s (the baseline)")
    refused, kept = "refused at the 50 MB limit, retried next pass", "under the limit: parsed and stored"
    for name, answer, times, fate in (("one 1 GB blob", huge_blob(1024 * MB), 1, refused),
                                      ("four 200 MB blobs", huge_blob(200 * MB), 4, refused),
                                      ("four 45 MB blobs", huge_blob(45 * MB), 4, kept)):
        peak, seconds, code = peak_sync(answer, times)
        print(f"{name:<23}: peak {peak:.0f} MB ({peak / baseline:.1f}× the baseline), {seconds:.1f} s, "
              f"exit {code} ({fate})")
    print(f"SIGTERM with every request trickling: `run` stopped {sigterm_latency():.1f} s after the signal")


if __name__ == "__main__":
    main()

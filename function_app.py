"""Azure Functions (Python v2 programming model): the queue fan-out ingest as a serverless app.

- `enqueue`: a timer (ENQUEUE_SCHEDULE, default every 5 minutes) lists new content and queues one message per blob
  — the same pass as `python -m ingest enqueue`;
- `worker`: a queue trigger on QUEUE_NAME fetches, normalizes and stores one blob — the same handling as
  `python -m ingest worker`. The runtime scales it out; its own poison handling is a step behind ours
  (host.json's maxDequeueCount is QUEUE_MAX_DEQUEUES + 1), so a message that keeps failing is recorded lost in the
  store before it is parked in QUEUE_NAME-poison.

App settings are the same environment variables as everywhere else (README: Deploying to Azure Functions)."""
from __future__ import annotations

import logging

import azure.functions as func

from ingest import redact
from ingest.fanout import handle_one, run_enqueue
from ingest.settings import SettingsError, load_settings

app = func.FunctionApp()
redact.install_log_scrubber()
logging.getLogger("msal").setLevel(logging.CRITICAL)
log = logging.getLogger("ingest.functions")
# Read once, as the host indexes the functions: a setting that is wrong fails the app with its own words.
settings = load_settings(dotenv_path=None)
if settings.demo:
    raise SettingsError("O365_TENANT_ID is not set: the Functions app syncs a real tenant (the DEMO tenant is for "
                        "`make run` and `python -m ingest enqueue`/`worker` on one machine).")


@app.timer_trigger(arg_name="timer", schedule=settings.enqueue_schedule, run_on_startup=False, use_monitor=True)
def enqueue(timer: func.TimerRequest) -> None:
    report = run_enqueue(settings)
    (log.info if report.ok else log.error)("%s", report.summary())
    if report.fatal:
        raise RuntimeError(report.fatal)  # a failed run in the portal, not a quiet one


@app.queue_trigger(arg_name="message", queue_name=settings.queue_name, connection="AzureWebJobsStorage")
def worker(message: func.QueueMessage) -> None:
    report = handle_one(settings, message.get_body().decode("utf-8", "replace"),
                        message.dequeue_count or 1, message.id or "")
    # a refused sign-in has already put the message back with a delay: raising would deliver it twice
    (log.error if report.fatal else log.info)("%s", report.summary())

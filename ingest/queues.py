"""The Azure Storage queue that carries content blobs from `enqueue` to the workers, and its poison queue.

Messages are Base64 text, as Azure Functions' queue trigger reads them by default. What is in a queue is treated
like any other answer from the network: decoded per message, so one that cannot be read is one poisoned message,
never a failed receive."""
from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from .settings import Settings, SettingsError, azure_credential

# The SDK logs every request and response at INFO; its warnings still show.
logging.getLogger("azure").setLevel(logging.WARNING)

NEVER_EXPIRE = -1  # a message waits however long the workers are behind (the blob itself expires after 7 days)
SENDERS = 8  # messages sent at once (the service has no batch send)


class QueueError(RuntimeError):
    """The queue cannot be reached or refused an operation; the message says what to check, no secret."""


@dataclass(frozen=True)
class Received:
    message_id: str
    pop_receipt: str
    dequeue_count: int
    text: str | None  # None: not Base64 UTF-8 text (poisoned as it is)
    raw: str


def encode(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode(raw: str) -> str | None:
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


_first_sent = threading.Event()
_first_sending = threading.Lock()


def _send(queue: QueueClient, raw: str, delay: int = 0) -> None:
    """One message. The process's first goes alone: the SDK builds its answer models on first use, unguarded, and
    threads racing there got raw XML back (an enqueue failed in CI: 2 of 40 fresh processes sending from 8 threads
    under stress, 0 of 80 with the first sent alone). Senders, requeues and Functions invocations all pass here."""
    def send() -> None:
        queue.send_message(raw, time_to_live=NEVER_EXPIRE, visibility_timeout=delay or None)

    if _first_sent.is_set():
        send()
        return
    with _first_sending:  # those that come meanwhile wait, then go one by one
        send()
        _first_sent.set()


class ContentQueue:
    def __init__(self, settings: Settings):
        if settings.queue_connection_string:
            def client(name):
                return QueueClient.from_connection_string(settings.queue_connection_string, name)
            where = "the queue of QUEUE_CONNECTION_STRING"
        elif settings.queue_account_url:
            credential = azure_credential()

            def client(name):
                return QueueClient(settings.queue_account_url, name, credential=credential)
            where = settings.queue_account_url
        else:
            raise SettingsError("Queue fan-out needs QUEUE_CONNECTION_STRING (or AzureWebJobsStorage), or "
                                "QUEUE_ACCOUNT_URL with a managed identity.")
        self.name, self.description = settings.queue_name, f"{where} / {settings.queue_name}"
        self._main, self._poison = client(settings.queue_name), client(f"{settings.queue_name}-poison")
        self._senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="queue-send")
        try:
            for queue in (self._main, self._poison):
                try:
                    queue.create_queue()
                except ResourceExistsError:
                    pass
        except AzureError as error:
            raise QueueError(self._explain("open", error)) from None

    def _explain(self, what: str, error: Exception) -> str:
        status = getattr(error, "status_code", None)
        return (f"Could not {what} the queue {self.name} ({type(error).__name__}{f', HTTP {status}' if status else ''})"
                f": check {self.description.split(' / ')[0]}, the network and the account's permissions.")

    def send(self, texts: Sequence[str], delay: int = 0) -> None:
        """Send every message or raise QueueError (some may have been sent: receivers tolerate duplicates)."""
        try:
            list(self._senders.map(lambda text: _send(self._main, encode(text), delay), texts))
        except AzureError as error:
            raise QueueError(self._explain("send to", error)) from None

    def receive(self, count: int, visibility_timeout: int) -> list[Received]:
        try:
            page = next(self._main.receive_messages(messages_per_page=count, visibility_timeout=visibility_timeout,
                                                    max_messages=count).by_page(), [])
            return [Received(m.id, m.pop_receipt, m.dequeue_count or 1, decode(m.content or ""), m.content or "")
                    for m in page]
        except AzureError as error:
            raise QueueError(self._explain("receive from", error)) from None

    def delete(self, message: Received) -> None:
        try:
            self._main.delete_message(message.message_id, message.pop_receipt)
        except ResourceNotFoundError:
            pass  # its visibility ran out and another worker took it: that one deletes it
        except AzureError as error:
            raise QueueError(self._explain("delete from", error)) from None

    def requeue(self, message: Received, delay: int) -> None:
        """Back in the queue after `delay` seconds with its delivery count reset: for failures that are not
        the message's fault (throttling, a refused sign-in)."""
        self.send([message.text or ""], delay)
        self.delete(message)

    def poison(self, message: Received) -> None:
        self.copy_to_poison(message)
        self.delete(message)

    def copy_to_poison(self, message: Received) -> None:
        try:
            _send(self._poison, message.raw)
        except AzureError as error:
            raise QueueError(self._explain("send to the poison queue of", error)) from None

    def depth(self) -> tuple[int, int]:
        """(messages waiting, messages in the poison queue), approximately, as the service counts them."""
        try:
            return tuple(q.get_queue_properties().approximate_message_count or 0 for q in (self._main, self._poison))
        except AzureError as error:
            raise QueueError(self._explain("read", error)) from None

    def close(self) -> None:
        self._senders.shutdown(wait=True)
        self._main.close()
        self._poison.close()

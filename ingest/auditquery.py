"""Microsoft Graph's audit log query API (Purview audit search, up to 180 days back): submit a query for a time
window, poll it until it is done, page its records. The same hostile-peer rules as the Management Activity API:
the token goes only to this Graph origin's audit query path over HTTPS, answers are bounded, 429 and 5xx are
retried after Retry-After, one bad answer is one error."""
from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

import requests

from eventstore.model import utc_text

from . import http
from .api import LISTING_BYTES, REFRESH, ApiClient, BadAnswer, FatalApiError, parse_json, service_error
from .auth import TokenProvider
from .settings import Settings

PERMISSION_HINT = ("Give the app the Microsoft Graph application permission AuditLogsQuery.Read.All (or the "
                   "per-service AuditLogsQuery-Exchange.Read.All, -SharePoint, -OneDrive, -Entra …) and grant admin "
                   "consent. AuditLog.Read.All is not enough: since April 2026 its queries return no records.")

TOKEN_HINT = ("A freshly issued token was refused, which a missing permission does not cause: check that GRAPH_API_URL "
              "is the Graph of the tenant's cloud (the token is asked for its audience), that this machine's clock "
              "is right, and that O365_TENANT_ID is the tenant the app is registered in.")


class AuditQueryApi(ApiClient):
    RESOURCE = "graph_url"
    def __init__(self, settings: Settings, session: http.Session, tokens: TokenProvider, *args, **kwargs):
        super().__init__(settings, session, tokens, *args, **kwargs)
        self.queries = f"{settings.graph_url}/{settings.graph_version}/security/auditLog/queries"
        self._trust(self.queries, "this Graph's audit log query API")

    # --- operations ---------------------------------------------------------------------------
    def submit(self, name: str, start: datetime, end: datetime, services: tuple[str, ...] = ()) -> dict:
        body = {"@odata.type": "#microsoft.graph.security.auditLogQuery", "displayName": name,
                "filterStartDateTime": utc_text(start), "filterEndDateTime": utc_text(end)}
        if services:
            body["serviceFilters"] = list(services)
        return self._object(self.request("POST", self.queries, body=body), "the submitted query")

    def find(self, name: str) -> list[dict]:
        """Queries already at Microsoft with this display name (a submission whose answer was lost)."""
        found = self._object(self.request("GET", self.queries), "the list of queries").get("value")
        return [q for q in found if isinstance(q, dict) and q.get("displayName") == name] if isinstance(found, list) \
            else []

    def get(self, query_id: str) -> dict:
        return self._object(self.request("GET", f"{self.queries}/{query_id}"), "the query's state")

    def records(self, query_id: str, next_link: str = "", top: int = 1000) -> tuple[list[dict], str]:
        """One page of a finished query's records, and the address of the next ("" at the end)."""
        url = next_link or f"{self.queries}/{query_id}/records?$top={top}"
        page = self._object(self.request("GET", url), "a page of records")
        records, link = page.get("value"), page.get("@odata.nextLink") or ""
        if not isinstance(records, list) or not isinstance(link, str):
            raise BadAnswer("a page of records is not {value: [...], @odata.nextLink}", "MALFORMED")
        if link:
            self._check_address(link)  # before it is followed with the token
            if not urlsplit(link).path.startswith(f"{self._path}/{query_id}/records"):
                raise BadAnswer("the next page points at another query's records", "UNTRUSTED_ADDRESS")
        return records, link

    @staticmethod
    def _object(response: requests.Response, what: str) -> dict:
        found = parse_json(response.content, what)
        if not isinstance(found, dict):
            raise BadAnswer(f"{what} is not a JSON object", "MALFORMED")
        return found

    # --- the one request path -----------------------------------------------------------------
    def request(self, method: str, url: str, body: dict | None = None) -> requests.Response:
        return self._exchange(method, url, LISTING_BYTES, json=body)

    def _judge(self, response: requests.Response, refreshed: bool) -> str | None:
        status = response.status_code
        code, message = service_error(response)
        if status == 401 and not refreshed:
            return REFRESH
        if status == 429 or status in (500, 502, 503, 504):
            return f"Graph answered {status} {code}".strip()
        if status == 401:
            raise FatalApiError(f"Microsoft Graph did not accept the app's token (HTTP 401{', ' + code if code else ''}"
                                f"{': ' + message if message else ''}). {TOKEN_HINT}", code or "UNAUTHORIZED", status)
        if status == 403:
            raise FatalApiError(f"Microsoft Graph refused the audit log query (HTTP 403{', ' + code if code else ''}). "
                                f"{PERMISSION_HINT}", code or "FORBIDDEN", status)
        raise BadAnswer(f"Microsoft Graph refused the request (HTTP {status}{', ' + code if code else ''}): "
                        f"{message or 'no reason given'}", code or f"HTTP{status}", status)

"""One Settings object, read from environment variables (and an optional .env file) in one place.

Every problem is reported as one SettingsError naming the variable; secret values never appear in it."""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlparse

from ingest.feedstate import CONTENT_TYPES

from . import redact

# API host and login host per cloud (management-activity-api.md §1)
CLOUDS = {
    "commercial": ("https://manage.office.com", "https://login.microsoftonline.com"),
    "gcc": ("https://manage-gcc.office.com", "https://login.microsoftonline.com"),
    "gcchigh": ("https://manage.office365.us", "https://login.microsoftonline.us"),
    "dod": ("https://manage.protection.apps.mil", "https://login.microsoftonline.us"),
}

GRAPH_URL = "https://graph.microsoft.com"  # the audit log query API is served in the global cloud only
LOG_ANALYTICS_URL = "https://api.loganalytics.io"
WORKSPACE_TABLES = ("OfficeActivity", "SigninLogs", "AuditLogs")
DEFAULT_STORE = "sqlite:///data/audit.db"
DEFAULT_QUEUE = "o365-content"
DEFAULT_SCHEDULE = "0 */5 * * * *"

# name → one-line description; the README's configuration table says the same
VARIABLES = {
    "O365_TENANT_ID": "Directory (tenant) ID, a GUID. Unset: demo mode on a simulated tenant.",
    "O365_CLIENT_ID": "Application (client) ID of the Entra app registration.",
    "O365_CLIENT_SECRET": "Client secret of the app (or use O365_CLIENT_CERT).",
    "O365_CLIENT_CERT": "Path to a PEM file holding the app's certificate and private key.",
    "O365_PUBLISHER_ID": "GUID sent as PublisherIdentifier (own throttling quota). Default: the tenant ID.",
    "O365_CLOUD": "commercial (default), gcc, gcchigh or dod: presets for the two URLs below.",
    "O365_API_URL": "Management API root. Default from O365_CLOUD (https://manage.office.com).",
    "GRAPH_API_URL": "Microsoft Graph root, for the backfill's audit log queries. Default https://graph.microsoft.com.",
    "GRAPH_API_VERSION": "v1.0 (default) or beta: the Graph version the audit log query API is called on.",
    "WORKSPACE_ID": "`--source workspace`: the Log Analytics workspace (Microsoft Sentinel's) to read, its Workspace "
                    "ID (a GUID).",
    "WORKSPACE_TABLES": "`--source workspace`: comma list of the tables read, of OfficeActivity, SigninLogs and "
                        "AuditLogs. Default: all three.",
    "LOG_ANALYTICS_URL": "`--source workspace`: the Log Analytics query API root. Default https://api.loganalytics.io.",
    "O365_LOGIN_URL": "Entra login root. Default from O365_CLOUD (https://login.microsoftonline.com).",
    "O365_CA_BUNDLE": "PEM file of extra CAs to trust (e.g. a TLS-inspecting proxy).",
    "O365_CONTENT_TYPES": "Comma list of content types to sync. Default: all five.",
    "O365_SYNC_INTERVAL": "Seconds between passes of `python -m ingest run`. Default 300.",
    "O365_MAX_REQUESTS_PER_MINUTE": "Pace of API requests, all content types together. Default 1800 (limit 2000).",
    "O365_MAX_BLOB_MB": "Largest content blob accepted, in MB; a larger one is recorded as lost. Default 50.",
    "O365_REQUEST_TIMEOUT": "Seconds a whole request may take, answer included. Default 120.",
    "AUDIT_STORE": f"sqlite:///path/file.db (default {DEFAULT_STORE}) or cosmos.",
    "AUDIT_RETENTION_DAYS": "Events older than this are pruned (Cosmos DB: container TTL). Default 90.",
    "COSMOS_ENDPOINT": "Cosmos DB account endpoint, with AUDIT_STORE=cosmos.",
    "COSMOS_KEY": "Cosmos DB account key (read-only is enough for a dashboard), or managed-identity.",
    "COSMOS_CA_BUNDLE": "PEM file of CAs to trust for Cosmos DB instead of the system's (an emulator).",
    "COSMOS_DATABASE": "Cosmos DB database name. Default o365audit.",
    "COSMOS_CONTAINER": "Cosmos DB container name. Default events.",
    "QUEUE_CONNECTION_STRING": "Azure Storage connection string for queue fan-out. Default: AzureWebJobsStorage.",
    "AzureWebJobsStorage": "Azure Functions' own storage connection string: the queue's when QUEUE_CONNECTION_STRING "
                           "is not set (the Functions app's queue trigger always uses it).",
    "QUEUE_ACCOUNT_URL": "Or the queue service URL (https://<account>.queue.core.windows.net), with managed identity.",
    "QUEUE_NAME": f"Queue of content blobs for `ingest worker`; <name>-poison holds failures. Default {DEFAULT_QUEUE}.",
    "QUEUE_MAX_DEQUEUES": "Deliveries of one message before it goes to the poison queue. Default 5.",
    "QUEUE_VISIBILITY_TIMEOUT": "Seconds a worker holds a message before another may take it. Default 300.",
    "ENQUEUE_SCHEDULE": f"Azure Functions: when the enqueue timer runs, as NCRONTAB (six fields). Default "
                        f"{DEFAULT_SCHEDULE!r} (every 5 minutes).",
    "DASHBOARD_CLIENT_ID": "Sign-in with Entra ID: the dashboard's own app registration (Application ID). Set it to "
                           "require sign-in.",
    "DASHBOARD_CLIENT_SECRET": "That app registration's client secret.",
    "DASHBOARD_COOKIE_SECRET": "A long random string that signs the sign-in cookie (at least 32 characters).",
    "DASHBOARD_REDIRECT_URI": "The dashboard's address + /oauth2callback, as registered. Default "
                              "http://localhost:8501/oauth2callback.",
    "DASHBOARD_TENANT_ID": "The tenant people sign in with, a GUID (not common or organizations: anyone with any "
                           "Microsoft account could then sign in). Default: O365_TENANT_ID.",
    "DASHBOARD_SESSION_HOURS": "Hours a sign-in lasts before it must be made again, so that a role taken away in "
                               "Entra ID stops working. Default 8.",
    "DASHBOARD_PROXY_HEADER": "With an authenticating proxy in front (App Service authentication, oauth2-proxy): the "
                              "request header holding the signed-in user's name, e.g. X-MS-CLIENT-PRINCIPAL-NAME.",
    "DASHBOARD_PROXY_ROLE": "The role everyone the proxy lets in has: Viewer (default), Analyst or Admin.",
    "DASHBOARD_INDEX": "The dashboard's index file (DuckDB). Default: beside the SQLite store, or data/ for Cosmos DB.",
    "DASHBOARD_INDEX_MEMORY": "Memory the index may use, as DuckDB reads it (e.g. 1GB, 512MB). Default 1GB.",
    "DETECT_RULES_DIR": "A folder of your own detection rules (*.toml, as detect/rules.toml): added to the built-in "
                        "ones; one with a built-in rule's name replaces it.",
    "INCIDENT_GAP_HOURS": "Leads that share an account, address, application or target join one incident when no more "
                          "than this many hours apart. Default 24.",
    "IP_NETWORKS_FILE": "Your own networks (offices, VPN egress, partners): a CSV with network,country,owner and "
                        "optionally asn,lat,lon. It wins over the databases.",
    "IP_DATABASES": "MaxMind GeoLite2/GeoIP2 files (.mmdb: Country or City, and ASN), comma separated, used before "
                    "the database that installs with the package geoip2fast.",
}


MANAGED_IDENTITY = "managed-identity"


def azure_credential():
    """The host's Azure identity (managed identity on Azure, a developer's `az login` elsewhere), for Cosmos DB
    and the storage queue when no key is given."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise SettingsError("managed-identity needs the azure-identity package: pip install azure-identity") from None
    return DefaultAzureCredential()


class SettingsError(ValueError):
    """A setting is missing or malformed. The message names the variable and how to fix it."""


@dataclass(frozen=True)
class Settings:
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    client_cert: str = ""
    publisher_id: str = ""
    cloud: str = "commercial"
    api_url: str = CLOUDS["commercial"][0]
    graph_url: str = GRAPH_URL
    graph_version: str = "v1.0"
    login_url: str = CLOUDS["commercial"][1]
    workspace_id: str = ""
    workspace_url: str = LOG_ANALYTICS_URL
    workspace_tables: tuple[str, ...] = WORKSPACE_TABLES
    ca_bundle: str = ""
    content_types: tuple[str, ...] = CONTENT_TYPES
    sync_interval: int = 300
    max_requests_per_minute: int = 1800
    max_blob_bytes: int = 50 * 1024 * 1024
    request_timeout: int = 120
    store_url: str = DEFAULT_STORE
    retention_days: int = 90
    cosmos_endpoint: str = ""
    cosmos_key: str = field(default="", repr=False)
    cosmos_database: str = "o365audit"
    cosmos_container: str = "events"
    cosmos_ca_bundle: str = ""
    queue_connection_string: str = field(default="", repr=False)
    queue_account_url: str = ""
    queue_name: str = DEFAULT_QUEUE
    queue_max_dequeues: int = 5
    queue_visibility_timeout: int = 300
    enqueue_schedule: str = DEFAULT_SCHEDULE
    signin_client_id: str = ""
    signin_client_secret: str = field(default="", repr=False)
    signin_cookie_secret: str = field(default="", repr=False)
    signin_redirect_uri: str = "http://localhost:8501/oauth2callback"
    signin_tenant: str = ""
    session_hours: int = 8
    proxy_header: str = ""
    proxy_role: str = "Viewer"
    index_path: str = ""  # "" = beside the store (see index_file)
    index_memory: str = "1GB"
    detect_rules_dir: str = ""
    incident_gap_hours: int = 24
    ip_networks_file: str = ""
    ip_databases: tuple[str, ...] = ()
    demo: bool = False  # no tenant configured: the simulated demo tenant stands in

    @property
    def tenant_label(self) -> str:
        return "DEMO tenant (simulated)" if self.demo else f"tenant {self.tenant_id}"

    @property
    def index_file(self) -> str:
        if self.index_path:
            return self.index_path
        if self.store_url == "cosmos":
            return os.path.join("data", f"cosmos-{self.cosmos_database}-{self.cosmos_container}.index")
        return self.store_url[len("sqlite:///"):] + ".index"

    def cosmos_options(self) -> dict:
        return {"endpoint": self.cosmos_endpoint, "key": azure_credential() if self.cosmos_key == MANAGED_IDENTITY
                else self.cosmos_key, "database": self.cosmos_database, "container": self.cosmos_container,
                "ca_bundle": self.cosmos_ca_bundle}

    def for_demo_tenant(self, env: Mapping[str, str]) -> "Settings":
        """These settings pointed at the simulated tenant described by `env` (from start_simulator)."""
        return replace(self, tenant_id=env["O365_TENANT_ID"], client_id=env["O365_CLIENT_ID"],
                       client_secret=env["O365_CLIENT_SECRET"], client_cert="", publisher_id=env["O365_TENANT_ID"],
                       api_url=env["O365_API_URL"], login_url=env["O365_LOGIN_URL"], ca_bundle=env["O365_CA_BUNDLE"],
                       graph_url=env["GRAPH_API_URL"], workspace_id=env["WORKSPACE_ID"],
                       workspace_url=env["LOG_ANALYTICS_URL"], demo=True)


def _guid(name: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise SettingsError(f"{name} must be a GUID such as 9f1c2d3e-4a5b-46c7-8d9e-0f1a2b3c4d5e.") from None


def _header_name(name: str, value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", value):
        raise SettingsError(f"{name} must be an HTTP header name such as X-MS-CLIENT-PRINCIPAL-NAME, not {value!r}.")
    return value


def _positive_int(name: str, value: str, default: int) -> int:
    if value == "":
        return default
    if not re.fullmatch(r"\d+", value) or int(value) <= 0:
        raise SettingsError(f"{name} must be a whole number above 0, not {value!r}.")
    return int(value)


def _https_url(name: str, value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme != "https" or not parsed.hostname:
        raise SettingsError(f"{name} must be an https:// URL, not {value!r}.")
    return value.rstrip("/")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, not {value!r}.")
    return value


def _schedule(name: str, value: str) -> str:
    if not re.fullmatch(r"[0-9*/,\-A-Za-z]+( [0-9*/,\-A-Za-z]+){5}", " ".join(value.split())):
        raise SettingsError(f"{name} must be an NCRONTAB expression of six fields (second minute hour day month "
                            f"weekday), such as {DEFAULT_SCHEDULE!r}, not {value!r}.")
    return " ".join(value.split())


def _memory(name: str, value: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, re.IGNORECASE):
        raise SettingsError(f"{name} must be an amount of memory such as 1GB or 512MB, not {value!r}.")
    return value


def _folder(name: str, value: str) -> str:
    if value and not os.path.isdir(value):
        raise SettingsError(f"{name} names a folder that does not exist: {value!r}.")
    return value


def _readable_file(name: str, value: str) -> str:
    if value and not os.path.isfile(value):
        raise SettingsError(f"{name} names a file that does not exist or is not readable: {value!r}.")
    return value


def read_env(environ: Mapping[str, str] | None = None, dotenv_path: str | None = ".env") -> dict[str, str]:
    """The process environment over an optional .env file (the environment wins)."""
    values: dict[str, str] = {}
    if dotenv_path and os.path.isfile(dotenv_path):
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return {k: v.strip() for k, v in values.items() if k in VARIABLES}


def load_settings(environ: Mapping[str, str] | None = None, dotenv_path: str | None = ".env") -> Settings:
    env = read_env(environ, dotenv_path)
    get = lambda name: env.get(name, "")  # noqa: E731

    cloud = get("O365_CLOUD").lower() or "commercial"
    if cloud not in CLOUDS:
        raise SettingsError(f"O365_CLOUD must be one of {', '.join(CLOUDS)}, not {cloud!r}.")
    api_url = _https_url("O365_API_URL", get("O365_API_URL") or CLOUDS[cloud][0])
    login_url = _https_url("O365_LOGIN_URL", get("O365_LOGIN_URL") or CLOUDS[cloud][1])

    tenant_id = get("O365_TENANT_ID")
    client_id, secret, cert = get("O365_CLIENT_ID"), get("O365_CLIENT_SECRET"), get("O365_CLIENT_CERT")
    if tenant_id:
        tenant_id = _guid("O365_TENANT_ID", tenant_id)
        if not client_id:
            raise SettingsError("O365_CLIENT_ID is not set: it is needed with O365_TENANT_ID "
                                "(the Application (client) ID of your Entra app registration).")
        client_id = _guid("O365_CLIENT_ID", client_id)
        if not secret and not cert:
            raise SettingsError("Set O365_CLIENT_SECRET or O365_CLIENT_CERT: the app needs a credential.")
    elif client_id or secret or cert:
        raise SettingsError("O365_TENANT_ID is not set, but a client ID or credential is: set O365_TENANT_ID "
                            "(your Directory (tenant) ID), or unset the others to run the demo tenant.")
    publisher_id = _guid("O365_PUBLISHER_ID", get("O365_PUBLISHER_ID")) if get("O365_PUBLISHER_ID") else tenant_id

    content_types = tuple(ct.strip() for ct in get("O365_CONTENT_TYPES").split(",") if ct.strip()) or CONTENT_TYPES
    for ct in content_types:
        if ct not in CONTENT_TYPES:
            raise SettingsError(f"O365_CONTENT_TYPES has an unknown content type {ct!r}; "
                                f"use a comma list of {', '.join(CONTENT_TYPES)}.")

    workspace_tables = tuple(t.strip() for t in get("WORKSPACE_TABLES").split(",") if t.strip()) or WORKSPACE_TABLES
    for table in workspace_tables:
        if table not in WORKSPACE_TABLES:
            raise SettingsError(f"WORKSPACE_TABLES has an unknown table {table!r}; use a comma list of "
                                f"{', '.join(WORKSPACE_TABLES)}.")

    store_url = get("AUDIT_STORE") or DEFAULT_STORE
    if store_url != "cosmos" and not (store_url.startswith("sqlite:///") and len(store_url) > len("sqlite:///")):
        raise SettingsError(f"AUDIT_STORE must be sqlite:///path/file.db or cosmos, not {store_url!r}.")
    if store_url == "cosmos":
        for name in ("COSMOS_ENDPOINT", "COSMOS_KEY"):
            if not get(name):
                raise SettingsError(f"{name} is not set: it is needed with AUDIT_STORE=cosmos.")
        _https_url("COSMOS_ENDPOINT", get("COSMOS_ENDPOINT"))

    signin_client_id = _guid("DASHBOARD_CLIENT_ID", get("DASHBOARD_CLIENT_ID")) if get("DASHBOARD_CLIENT_ID") else ""
    signin_tenant = get("DASHBOARD_TENANT_ID") or tenant_id
    if signin_client_id:
        if not get("DASHBOARD_CLIENT_SECRET"):
            raise SettingsError("DASHBOARD_CLIENT_SECRET is not set: sign-in needs the dashboard app's client secret.")
        if len(get("DASHBOARD_COOKIE_SECRET")) < 32:
            raise SettingsError("DASHBOARD_COOKIE_SECRET must be a random string of at least 32 characters "
                                "(python -c 'import secrets; print(secrets.token_urlsafe(32))').")
        if not signin_tenant:
            raise SettingsError("DASHBOARD_TENANT_ID (or O365_TENANT_ID) is needed for sign-in.")
        signin_tenant = _guid("DASHBOARD_TENANT_ID", signin_tenant)
        if get("DASHBOARD_REDIRECT_URI") and not get("DASHBOARD_REDIRECT_URI").endswith("/oauth2callback"):
            raise SettingsError("DASHBOARD_REDIRECT_URI must be the dashboard's address followed by /oauth2callback.")
    queue_connection = get("QUEUE_CONNECTION_STRING") or get("AzureWebJobsStorage")
    queue_name = get("QUEUE_NAME") or DEFAULT_QUEUE
    if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,54}[a-z0-9]", queue_name):
        raise SettingsError("QUEUE_NAME must be 3-56 lower-case letters, digits and single hyphens (Azure's rule, "
                            f"leaving room for -poison), not {queue_name!r}.")
    if get("QUEUE_ACCOUNT_URL"):
        _https_url("QUEUE_ACCOUNT_URL", get("QUEUE_ACCOUNT_URL"))
    for value in (secret, get("COSMOS_KEY"), get("DASHBOARD_CLIENT_SECRET"), get("DASHBOARD_COOKIE_SECRET"),
                  queue_connection, *re.findall(r"(?i)AccountKey=([^;]+)", queue_connection)):
        redact.remember(value)  # whatever peer echoes it from now on, it is not logged, stored or shown
    return Settings(
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=secret,
        client_cert=_readable_file("O365_CLIENT_CERT", cert),
        publisher_id=publisher_id,
        cloud=cloud,
        api_url=api_url,
        graph_url=_https_url("GRAPH_API_URL", get("GRAPH_API_URL") or GRAPH_URL),
        graph_version=_choice("GRAPH_API_VERSION", get("GRAPH_API_VERSION") or "v1.0", ("v1.0", "beta")),
        login_url=login_url,
        workspace_id=_guid("WORKSPACE_ID", get("WORKSPACE_ID")) if get("WORKSPACE_ID") else "",
        workspace_url=_https_url("LOG_ANALYTICS_URL", get("LOG_ANALYTICS_URL") or LOG_ANALYTICS_URL),
        workspace_tables=workspace_tables,
        ca_bundle=_readable_file("O365_CA_BUNDLE", get("O365_CA_BUNDLE")),
        content_types=content_types,
        sync_interval=_positive_int("O365_SYNC_INTERVAL", get("O365_SYNC_INTERVAL"), 300),
        max_requests_per_minute=_positive_int("O365_MAX_REQUESTS_PER_MINUTE",
                                              get("O365_MAX_REQUESTS_PER_MINUTE"), 1800),
        max_blob_bytes=_positive_int("O365_MAX_BLOB_MB", get("O365_MAX_BLOB_MB"), 50) * 1024 * 1024,
        request_timeout=_positive_int("O365_REQUEST_TIMEOUT", get("O365_REQUEST_TIMEOUT"), 120),
        store_url=store_url,
        retention_days=_positive_int("AUDIT_RETENTION_DAYS", get("AUDIT_RETENTION_DAYS"), 90),
        cosmos_endpoint=get("COSMOS_ENDPOINT"),
        cosmos_key=get("COSMOS_KEY"),
        cosmos_database=get("COSMOS_DATABASE") or "o365audit",
        cosmos_container=get("COSMOS_CONTAINER") or "events",
        cosmos_ca_bundle=_readable_file("COSMOS_CA_BUNDLE", get("COSMOS_CA_BUNDLE")),
        queue_connection_string=queue_connection,
        queue_account_url=get("QUEUE_ACCOUNT_URL"),
        queue_name=queue_name,
        queue_max_dequeues=_positive_int("QUEUE_MAX_DEQUEUES", get("QUEUE_MAX_DEQUEUES"), 5),
        queue_visibility_timeout=_positive_int("QUEUE_VISIBILITY_TIMEOUT", get("QUEUE_VISIBILITY_TIMEOUT"), 300),
        enqueue_schedule=_schedule("ENQUEUE_SCHEDULE", get("ENQUEUE_SCHEDULE") or DEFAULT_SCHEDULE),
        signin_client_id=signin_client_id,
        signin_client_secret=get("DASHBOARD_CLIENT_SECRET"),
        signin_cookie_secret=get("DASHBOARD_COOKIE_SECRET"),
        signin_redirect_uri=get("DASHBOARD_REDIRECT_URI") or "http://localhost:8501/oauth2callback",
        signin_tenant=signin_tenant,
        session_hours=_positive_int("DASHBOARD_SESSION_HOURS", get("DASHBOARD_SESSION_HOURS"), 8),
        proxy_header=_header_name("DASHBOARD_PROXY_HEADER", get("DASHBOARD_PROXY_HEADER")),
        proxy_role=get("DASHBOARD_PROXY_ROLE") or "Viewer",  # checked by the dashboard, which defines the roles
        index_path=get("DASHBOARD_INDEX"),
        index_memory=_memory("DASHBOARD_INDEX_MEMORY", get("DASHBOARD_INDEX_MEMORY") or "1GB"),
        detect_rules_dir=_folder("DETECT_RULES_DIR", get("DETECT_RULES_DIR")),
        incident_gap_hours=_positive_int("INCIDENT_GAP_HOURS", get("INCIDENT_GAP_HOURS"), 24),
        ip_networks_file=_readable_file("IP_NETWORKS_FILE", get("IP_NETWORKS_FILE")),
        ip_databases=tuple(_readable_file("IP_DATABASES", path.strip()) for path in get("IP_DATABASES").split(",")
                           if path.strip()),
        demo=not tenant_id,
    )

"""One Settings object, read from environment variables (and an optional .env file) in one place.

Every variable is declared once, below, in its component's group (the tenant, the live feed, the backfill, the
workspace, the store, Cosmos DB, the queues, the dashboard, sign-in, detections): its name, the Settings field it
fills, its default — written there and nowhere else — how its text is read and checked, and what it means (the
README's configuration table says the same, and a test holds the two together). Every problem is reported as one
SettingsError naming the variable; secret values never appear in it."""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
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
WORKSPACE_TABLES = ("OfficeActivity", "SigninLogs", "AuditLogs")
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
    """What load_settings read, field by field as COMPONENTS declares it (the defaults are written there)."""

    # tenant
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    client_cert: str
    publisher_id: str
    cloud: str
    api_url: str
    login_url: str
    ca_bundle: str
    # live feed
    content_types: tuple[str, ...]
    sync_interval: int
    max_requests_per_minute: int
    max_blob_mb: int
    request_timeout: int
    # backfill
    graph_url: str
    graph_version: str
    # workspace
    workspace_id: str
    workspace_url: str
    workspace_tables: tuple[str, ...]
    workspace_credential: str
    # store, Cosmos DB
    store_url: str
    retention_days: int
    cosmos_endpoint: str
    cosmos_key: str = field(repr=False)
    cosmos_ca_bundle: str
    cosmos_database: str
    cosmos_container: str
    # queues
    queue_connection_string: str = field(repr=False)
    queue_account_url: str
    queue_name: str
    queue_max_dequeues: int
    queue_visibility_timeout: int
    enqueue_schedule: str
    # dashboard
    index_path: str  # "" = beside the store (see index_file)
    index_memory: str
    ip_networks_file: str
    ip_databases: tuple[str, ...]
    # sign-in
    signin_client_id: str
    signin_client_secret: str = field(repr=False)
    signin_cookie_secret: str = field(repr=False)
    signin_redirect_uri: str
    signin_tenant: str
    session_hours: int
    proxy_header: str
    proxy_role: str
    # detections
    detect_rules_dir: str
    incident_gap_hours: int
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
                       workspace_url=env["LOG_ANALYTICS_URL"], workspace_credential="app", demo=True)


def _guid(name: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise SettingsError(f"{name} must be a GUID such as 9f1c2d3e-4a5b-46c7-8d9e-0f1a2b3c4d5e.") from None


def _header_name(name: str, value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", value):
        raise SettingsError(f"{name} must be an HTTP header name such as X-MS-CLIENT-PRINCIPAL-NAME, not {value!r}.")
    return value


def _positive_int(name: str, value: str) -> int:
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
                            f"weekday), such as '0 */5 * * * *', not {value!r}.")
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


def _one_of(*allowed: str) -> Callable[[str, str], str]:
    return lambda name, value: _choice(name, value, allowed)


def _comma_list(*allowed: str) -> Callable[[str, str], tuple[str, ...]]:
    def read(name: str, value: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in value.split(",") if item.strip())
        for item in items:
            if allowed and item not in allowed:
                raise SettingsError(f"{name} has an unknown value {item!r}; use a comma list of {', '.join(allowed)}.")
        return items
    return read


def _files(name: str, value: str) -> tuple[str, ...]:
    return tuple(_readable_file(name, path.strip()) for path in value.split(",") if path.strip())


def _store(name: str, value: str) -> str:
    if value != "cosmos" and not (value.startswith("sqlite:///") and len(value) > len("sqlite:///")):
        raise SettingsError(f"{name} must be sqlite:///path/file.db or cosmos, not {value!r}.")
    return value


def _queue_name(name: str, value: str) -> str:
    if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,54}[a-z0-9]", value):
        raise SettingsError(f"{name} must be 3-56 lower-case letters, digits and single hyphens (Azure's rule, "
                            f"leaving room for -poison), not {value!r}.")
    return value


def _redirect(name: str, value: str) -> str:
    if not value.endswith("/oauth2callback"):
        raise SettingsError(f"{name} must be the dashboard's address followed by /oauth2callback.")
    return value


def _text(name: str, value: str) -> str:
    return value


@dataclass(frozen=True)
class Var:
    name: str  # the environment variable
    field: str  # the Settings field it fills ("" for one only read as another's fallback)
    default: object  # None: derived from another setting, as `doc` says
    read: Callable[[str, str], object]  # (name, text) -> the value, or SettingsError; never called with ""
    doc: str
    secret: bool = False  # remembered, so that no log, page or stored text ever shows it


DERIVED = None
COMPONENTS: dict[str, tuple[Var, ...]] = {
    "Tenant": (
        Var("O365_TENANT_ID", "tenant_id", "", _guid,
            "Directory (tenant) ID, a GUID. Unset: demo mode on a simulated tenant."),
        Var("O365_CLIENT_ID", "client_id", "", _guid,
            "Application (client) ID of the Entra app registration."),
        Var("O365_CLIENT_SECRET", "client_secret", "", _text, "Client secret of the app (or use O365_CLIENT_CERT).",
            secret=True),
        Var("O365_CLIENT_CERT", "client_cert", "", _readable_file,
            "Path to a PEM file holding the app's certificate and private key."),
        Var("O365_PUBLISHER_ID", "publisher_id", DERIVED, _guid,
            "GUID sent as PublisherIdentifier (own throttling quota). Default: the tenant ID."),
        Var("O365_CLOUD", "cloud", "commercial", lambda n, v: _choice(n, v.lower(), tuple(CLOUDS)),
            "commercial (default), gcc, gcchigh or dod: presets for the two URLs below."),
        Var("O365_API_URL", "api_url", DERIVED, _https_url,
            f"Management API root. Default from O365_CLOUD ({CLOUDS['commercial'][0]})."),
        Var("O365_LOGIN_URL", "login_url", DERIVED, _https_url,
            f"Entra login root. Default from O365_CLOUD ({CLOUDS['commercial'][1]})."),
        Var("O365_CA_BUNDLE", "ca_bundle", "", _readable_file,
            "PEM file of extra CAs to trust (e.g. a TLS-inspecting proxy)."),
    ),
    "Live feed": (
        Var("O365_CONTENT_TYPES", "content_types", CONTENT_TYPES, _comma_list(*CONTENT_TYPES),
            "Comma list of content types to sync. Default: all five."),
        Var("O365_SYNC_INTERVAL", "sync_interval", 300, _positive_int,
            "Seconds between passes of `python -m ingest run`."),
        Var("O365_MAX_REQUESTS_PER_MINUTE", "max_requests_per_minute", 1800, _positive_int,
            "Pace of API requests, all content types together (limit 2000)."),
        Var("O365_MAX_BLOB_MB", "max_blob_mb", 50, _positive_int,
            "Largest content blob accepted, in MB; a larger one is recorded as lost."),
        Var("O365_REQUEST_TIMEOUT", "request_timeout", 120, _positive_int,
            "Seconds a whole request may take, answer included."),
    ),
    "Backfill": (
        Var("GRAPH_API_URL", "graph_url", "https://graph.microsoft.com", _https_url,
            "Microsoft Graph root, for the backfill's audit log queries (served in the global cloud only)."),
        Var("GRAPH_API_VERSION", "graph_version", "v1.0", _one_of("v1.0", "beta"),
            "v1.0 or beta: the Graph version the audit log query API is called on."),
    ),
    "Workspace": (
        Var("WORKSPACE_ID", "workspace_id", "", _guid,
            "`--source workspace`: the Log Analytics workspace (Microsoft Sentinel's) to read, its Workspace ID "
            "(a GUID)."),
        Var("WORKSPACE_TABLES", "workspace_tables", WORKSPACE_TABLES, _comma_list(*WORKSPACE_TABLES),
            "`--source workspace`: comma list of the tables read, of OfficeActivity, SigninLogs and AuditLogs. "
            "Default: all three."),
        Var("LOG_ANALYTICS_URL", "workspace_url", "https://api.loganalytics.io", _https_url,
            "`--source workspace`: the Log Analytics query API root."),
        Var("WORKSPACE_CREDENTIAL", "workspace_credential", "app", _one_of("app", MANAGED_IDENTITY),
            "`--source workspace`: app (the app registration's O365_CLIENT_SECRET or O365_CLIENT_CERT) or "
            "managed-identity (the host's Azure identity; then only O365_TENANT_ID is needed, for a workspace-only "
            "set-up)."),
    ),
    "Store": (
        Var("AUDIT_STORE", "store_url", "sqlite:///data/audit.db", _store, "sqlite:///path/file.db or cosmos."),
        Var("AUDIT_RETENTION_DAYS", "retention_days", 90, _positive_int,
            "Events older than this are pruned (Cosmos DB: container TTL)."),
    ),
    "Cosmos DB": (
        Var("COSMOS_ENDPOINT", "cosmos_endpoint", "", _https_url,
            "Cosmos DB account endpoint, with AUDIT_STORE=cosmos."),
        Var("COSMOS_KEY", "cosmos_key", "", _text,
            "Cosmos DB account key (read-only is enough for a dashboard), or managed-identity.", secret=True),
        Var("COSMOS_CA_BUNDLE", "cosmos_ca_bundle", "", _readable_file,
            "PEM file of CAs to trust for Cosmos DB instead of the system's (an emulator)."),
        Var("COSMOS_DATABASE", "cosmos_database", "o365audit", _text, "Cosmos DB database name."),
        Var("COSMOS_CONTAINER", "cosmos_container", "events", _text, "Cosmos DB container name."),
    ),
    "Queues": (
        Var("QUEUE_CONNECTION_STRING", "queue_connection_string", DERIVED, _text,
            "Azure Storage connection string for queue fan-out. Default: AzureWebJobsStorage.", secret=True),
        Var("AzureWebJobsStorage", "", "", _text,
            "Azure Functions' own storage connection string: the queue's when QUEUE_CONNECTION_STRING is not set "
            "(the Functions app's queue trigger always uses it).", secret=True),
        Var("QUEUE_ACCOUNT_URL", "queue_account_url", "", _https_url,
            "Or the queue service URL (https://<account>.queue.core.windows.net), with managed identity."),
        Var("QUEUE_NAME", "queue_name", "o365-content", _queue_name,
            "Queue of content blobs for `ingest worker`; <name>-poison holds failures."),
        Var("QUEUE_MAX_DEQUEUES", "queue_max_dequeues", 5, _positive_int,
            "Deliveries of one message before it goes to the poison queue."),
        Var("QUEUE_VISIBILITY_TIMEOUT", "queue_visibility_timeout", 300, _positive_int,
            "Seconds a worker holds a message before another may take it."),
        Var("ENQUEUE_SCHEDULE", "enqueue_schedule", "0 */5 * * * *", _schedule,
            "Azure Functions: when the enqueue timer runs, as NCRONTAB (six fields; the default is every 5 minutes)."),
    ),
    "Dashboard": (
        Var("DASHBOARD_INDEX", "index_path", "", _text,
            "The dashboard's index file (DuckDB). Default: beside the SQLite store, or data/ for Cosmos DB."),
        Var("DASHBOARD_INDEX_MEMORY", "index_memory", "1GB", _memory,
            "Memory the index may use, as DuckDB reads it (e.g. 1GB, 512MB)."),
        Var("IP_NETWORKS_FILE", "ip_networks_file", "", _readable_file,
            "Your own networks (offices, VPN egress, partners): a CSV with network,country,owner and optionally "
            "asn,lat,lon. It wins over the databases."),
        Var("IP_DATABASES", "ip_databases", (), _files,
            "MaxMind GeoLite2/GeoIP2 files (.mmdb: Country or City, and ASN), comma separated, used before the "
            "database that installs with the package geoip2fast."),
    ),
    "Sign-in": (
        Var("DASHBOARD_CLIENT_ID", "signin_client_id", "", _guid,
            "Sign-in with Entra ID: the dashboard's own app registration (Application ID). Set it to require "
            "sign-in."),
        Var("DASHBOARD_CLIENT_SECRET", "signin_client_secret", "", _text, "That app registration's client secret.",
            secret=True),
        Var("DASHBOARD_COOKIE_SECRET", "signin_cookie_secret", "", _text,
            "A long random string that signs the sign-in cookie (at least 32 characters).", secret=True),
        Var("DASHBOARD_REDIRECT_URI", "signin_redirect_uri", "http://localhost:8501/oauth2callback", _redirect,
            "The dashboard's address + /oauth2callback, as registered."),
        Var("DASHBOARD_TENANT_ID", "signin_tenant", DERIVED, _guid,
            "The tenant people sign in with, a GUID (not common or organizations: anyone with any Microsoft account "
            "could then sign in). Default: O365_TENANT_ID."),
        Var("DASHBOARD_SESSION_HOURS", "session_hours", 8, _positive_int,
            "Hours a sign-in lasts before it must be made again, so that a role taken away in Entra ID stops "
            "working."),
        Var("DASHBOARD_PROXY_HEADER", "proxy_header", "", _header_name,
            "With an authenticating proxy in front (App Service authentication, oauth2-proxy): the request header "
            "holding the signed-in user's name, e.g. X-MS-CLIENT-PRINCIPAL-NAME."),
        Var("DASHBOARD_PROXY_ROLE", "proxy_role", "Viewer", _text,  # checked by the dashboard, which has the roles
            "The role everyone the proxy lets in has: Viewer, Analyst or Admin."),
    ),
    "Detections": (
        Var("DETECT_RULES_DIR", "detect_rules_dir", "", _folder,
            "A folder of your own detection rules (*.toml, as detect/rules.toml): added to the built-in ones; one "
            "with a built-in rule's name replaces it."),
        Var("INCIDENT_GAP_HOURS", "incident_gap_hours", 24, _positive_int,
            "Leads that share an account, address, application or target join one incident when no more than this "
            "many hours apart."),
    ),
}
DECLARED = {var.name: var for group in COMPONENTS.values() for var in group}


def shown_default(var: Var) -> str:
    """The default as a person would write it, or "" when it is derived or empty (the doc then says it)."""
    if var.default is DERIVED or var.default in ("", ()):
        return ""
    return ",".join(var.default) if isinstance(var.default, tuple) else str(var.default)


# name → one-line description; the README's configuration table says the same
VARIABLES = {name: var.doc + (f" Default {shown_default(var)}." if shown_default(var) and "Default" not in var.doc
                              else "") for name, var in DECLARED.items()}
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
    values = {var.field: var.read(var.name, get(var.name)) if get(var.name) else var.default
              for var in DECLARED.values() if var.field}

    tenant_id, client_id = values["tenant_id"], values["client_id"]
    workspace_only = values["workspace_credential"] == MANAGED_IDENTITY and not client_id
    if tenant_id and not workspace_only:
        if not client_id:
            raise SettingsError("O365_CLIENT_ID is not set: it is needed with O365_TENANT_ID "
                                "(the Application (client) ID of your Entra app registration).")
        if not values["client_secret"] and not values["client_cert"]:
            raise SettingsError("Set O365_CLIENT_SECRET or O365_CLIENT_CERT: the app needs a credential.")
    elif not tenant_id and (client_id or values["client_secret"] or values["client_cert"]):
        raise SettingsError("O365_TENANT_ID is not set, but a client ID or credential is: set O365_TENANT_ID "
                            "(your Directory (tenant) ID), or unset the others to run the demo tenant.")
    cloud = values["cloud"]
    values["api_url"] = values["api_url"] or CLOUDS[cloud][0]
    values["login_url"] = values["login_url"] or CLOUDS[cloud][1]
    values["publisher_id"] = values["publisher_id"] or tenant_id
    values["queue_connection_string"] = values["queue_connection_string"] or get("AzureWebJobsStorage")

    if values["store_url"] == "cosmos":
        for name in ("COSMOS_ENDPOINT", "COSMOS_KEY"):
            if not get(name):
                raise SettingsError(f"{name} is not set: it is needed with AUDIT_STORE=cosmos.")
    values["signin_tenant"] = values["signin_tenant"] or tenant_id
    if values["signin_client_id"]:
        if not values["signin_client_secret"]:
            raise SettingsError("DASHBOARD_CLIENT_SECRET is not set: sign-in needs the dashboard app's client secret.")
        if len(values["signin_cookie_secret"]) < 32:
            raise SettingsError("DASHBOARD_COOKIE_SECRET must be a random string of at least 32 characters "
                                "(python -c 'import secrets; print(secrets.token_urlsafe(32))').")
        if not values["signin_tenant"]:
            raise SettingsError("DASHBOARD_TENANT_ID (or O365_TENANT_ID) is needed for sign-in.")
    connection = values["queue_connection_string"]
    for value in [get(var.name) for var in DECLARED.values() if var.secret] + \
            re.findall(r"(?i)AccountKey=([^;]+)", connection):
        redact.remember(value)  # whatever peer echoes it from now on, it is not logged, stored or shown
    return Settings(**values, demo=not tenant_id)

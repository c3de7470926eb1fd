"""The simulated tenant: a realistic event generator and an HTTPS fake of the API and token endpoint."""
from __future__ import annotations

import tempfile

from .server import Faults, SimulatedService, SimulatorConfig, SimulatorServer
from .tenant import SimulatedTenant
from .tls import make_loopback_tls
from .workspace import WORKSPACE_ID, WorkspaceConfig


def start_simulator(tenant: SimulatedTenant, config: SimulatorConfig | None = None, port: int = 0,
                    tls_dir: str | None = None) -> tuple[SimulatorServer, dict[str, str]]:
    """Start the fake on loopback; return the server and the environment a client needs to use it."""
    ca_path, cert_path, key_path = make_loopback_tls(tls_dir or tempfile.mkdtemp(prefix="o365sim-"))
    service = SimulatedService(tenant, config)
    server = SimulatorServer(service, cert_path, key_path)
    url = server.start(port)
    config = service.config
    env = {"O365_TENANT_ID": config.tenant_id, "O365_CLIENT_ID": config.client_id,
           "O365_CLIENT_SECRET": config.client_secret, "O365_API_URL": url, "O365_LOGIN_URL": url,
           "GRAPH_API_URL": f"{url}/graph", "LOG_ANALYTICS_URL": f"{url}/loganalytics", "WORKSPACE_ID": WORKSPACE_ID,
           "O365_CA_BUNDLE": ca_path}
    return server, env


__all__ = ["Faults", "SimulatedService", "SimulatedTenant", "SimulatorConfig", "SimulatorServer", "WorkspaceConfig",
           "start_simulator"]

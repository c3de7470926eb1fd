"""Who may do what in the dashboard. Pure: the roles, what each allows, and how a person's roles are read from the
ID token's `roles` claim (Entra ID app roles) — decided once, here, and checked by `services` before every action,
whatever the page shows.

Roles build on each other: a Viewer browses, filters and exports what they see; an Analyst also manages
watch-lists; an Admin also runs Sync now and reads the dashboard's activity log."""
from __future__ import annotations

from dataclasses import dataclass

ROLES = ("Viewer", "Analyst", "Admin")  # the app roles' values in the Entra ID app registration, lowest first
ACTIONS = {
    "view": "Viewer",
    "export": "Viewer",
    "manage watch-lists": "Analyst",
    "review leads": "Analyst",
    "manage incidents": "Analyst",
    "sync": "Admin",
    "backfill": "Admin",
    "read the activity log": "Admin",
}


class AccessDenied(PermissionError):
    """Refused on the server: the message says which role the action needs."""


@dataclass(frozen=True)
class Access:
    """The person using this session, as the dashboard knows them."""

    name: str  # what the activity log and the page show
    role: str | None  # the highest of ROLES they hold; None: signed in, but with no role for this app
    how: str  # "sign-in" (Entra ID), "proxy" (an authenticating proxy's header) or "local" (loopback, no sign-in)
    signed_in: bool = True  # False: sign-in is required and this session has not signed in (or must sign in again)
    why: str = ""  # why this session is let in as nobody, when it is not for want of a role (shown to the person)

    def can(self, action: str) -> bool:
        needed = ACTIONS[action]
        return self.role is not None and ROLES.index(self.role) >= ROLES.index(needed)

    def require(self, action: str) -> None:
        if not self.can(action):
            raise AccessDenied(f"To {action} you need the {ACTIONS[action]} role"
                               f"{f' (you have {self.role})' if self.role else ''}: ask your admin.")


def sign_in_age(claims, now: float) -> float | None:
    """Seconds since the ID token was issued (its `iat` claim); None when the claim is missing or not a time."""
    issued = claims.get("iat") if hasattr(claims, "get") else None
    if isinstance(issued, bool) or not isinstance(issued, (int, float)):
        return None
    return now - issued


def role_from_claims(claims) -> str | None:
    """The highest app role in a `roles` claim (a list of strings; anything else counts as none)."""
    held = claims if isinstance(claims, (list, tuple)) else []
    found = [r for r in ROLES if r in held]
    return found[-1] if found else None

"""Roles and what each may do, decided once (dashboard/access.py) and enforced by the dashboard's services."""
from __future__ import annotations

import pytest

from dashboard.access import ACTIONS, ROLES, Access, AccessDenied, role_from_claims


def test_roles_build_on_each_other():
    viewer, analyst, admin = (Access("x", role, "sign-in") for role in ROLES)
    assert viewer.can("view") and viewer.can("export") and not viewer.can("manage watch-lists")
    assert analyst.can("manage watch-lists") and not analyst.can("sync")
    assert admin.can("sync") and admin.can("read the activity log")
    assert all(not Access("x", None, "sign-in").can(action) for action in ACTIONS), "no role, nothing at all"


def test_a_refusal_says_which_role_is_needed():
    with pytest.raises(AccessDenied, match="need the Admin role .you have Viewer."):
        Access("vic", "Viewer", "sign-in").require("sync")


@pytest.mark.parametrize("claims, role", [
    (["Viewer"], "Viewer"), (["Viewer", "Admin"], "Admin"), (["Analyst", "Something.Else"], "Analyst"),
    (["admin"], None),  # app role values are matched exactly, as Entra ID issues them
    ("Admin", None),  # a string is not a roles claim (a list is)
    (None, None), ([], None), ([{"Admin": 1}], None),
])
def test_roles_come_from_the_roles_claim_and_nothing_else(claims, role):
    assert role_from_claims(claims) == role

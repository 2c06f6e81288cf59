"""Notify: pure rules (no I/O) — who hears about an event, how it is signed,
where a webhook may point, when a failure is final. What a message says is ``messages``'."""
import fnmatch
import hashlib
import hmac
import ipaddress
import secrets
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit

from tacoord import reference
from tacoord.errors import Conflict

CHANNELS = ("webhook", "email", "amqp")
KINDS = ("donor", "network", "state")
STATUSES = ("active", "paused", "unsubscribed", "deleted")
PAUSABLE = ("active", "paused")   # a subscriber pauses and resumes; unsubscribed and deleted are final
TEST_EVENT = "notification.test"
EVENT_FAMILIES = ("match", "alert", "gap", "duplication", "workshop", "need", "offer")
SIGNATURE_HEADER = "X-Tacoord-Signature"
REPLAY_WINDOW_SECONDS = 300
NOTIFY_EXCHANGE = "tacoord.notify"


def subscriber_queue(subscription_id):
    return f"notify.sub.{subscription_id}"


# -- regional networks ---------------------------------------------------------

def builtin_networks():
    """The five UN regional groups, as networks (from the reference data)."""
    return {gid: {"network_id": gid, "name": group["official_name"], "builtin": True,
                  "states": list(reference.states_in_group(gid)), "contacts": []}
            for gid, group in reference.regional_groups().items()}


# -- what an event is about ----------------------------------------------------

def _as_set(*values):
    out = set()
    for value in values:
        if value is None:
            continue
        if isinstance(value, (list, tuple, set)):
            out.update(v for v in value if v is not None and not isinstance(v, (dict, list)))
        elif not isinstance(value, dict):
            out.add(value)
    return out


# Who hears about an event besides what its payload names, by type (the first pattern that fits):
# ``donors``: "named" — only the donors it names (a match, an alert, an offer is theirs: one
# naming no donor, an expert's match, is no donor's); "open" — also every donor when it names
# none (a gap, a need, a workshop: news to any donor whose filter lets it through).
# ``by``: the payload field naming who took the step; that subscriber is not told of its own
# step, the other side is (a provider's acceptance reaches the State, the State's agreement the
# provider; networks hear both, as their subscriptions say).
AUDIENCES = (
    ("match.*", {"donors": "named", "by": "by"}),
    ("alert.*", {"donors": "named", "by": "actor"}),
    ("duplication.*", {"donors": "named", "by": None}),
    ("offer.*", {"donors": "named", "by": None}),
    ("*", {"donors": "open", "by": None}),
)


def audience(event_type):
    return next(rule for pattern, rule in AUDIENCES if fnmatch.fnmatchcase(event_type or "", pattern))


# -- what notify remembers of earlier events -------------------------------------

# An event that names a match or an offer only by its id (``match.retracted``) concerns the
# State and provider an earlier event named: notify keeps these facts (``facts_of``) and fills
# them in (``completed``) to route the event and to say what it is about.
MATCH_FACTS = ("need_id", "offer_id", "expert_id", "provider", "state", "regional_group", "article", "chapter",
               "forms", "priority", "level")
OFFER_FACTS = ("provider", "provider_name", "level")
FACT_SOURCES = (("match_id", "match", MATCH_FACTS), ("offer_id", "offer", OFFER_FACTS))


def facts_of(event):
    """``[(key, facts)]`` worth remembering from an event: a proposed match's sides, an offer's provider."""
    data = event.get("data") or {}
    remembered = []
    for field, kind, names in FACT_SOURCES:
        if not event.get("type", "").startswith(f"{kind}.") or not isinstance(data.get(field), str):
            continue
        facts = {name: data[name] for name in names if data.get(name) is not None}
        if kind == "match" and not {"state", "provider"} & set(facts):
            continue  # a step naming only ids: nothing new to learn
        remembered.append((f"{kind}:{data[field]}", facts))
    return remembered


def fact_keys(events):
    """The keys of what notify may know about these events (``facts_of``)."""
    return sorted({f"{kind}:{(e.get('data') or {})[field]}" for e in events for field, kind, _ in FACT_SOURCES
                   if isinstance((e.get("data") or {}).get(field), str)})


def completed(event, known):
    """The event's payload with what ``known`` (key -> facts) adds: what the payload says wins."""
    data = event.get("data") or {}
    added = {}
    for field, kind, _ in FACT_SOURCES:
        facts = known.get(f"{kind}:{data.get(field)}") if isinstance(data.get(field), str) else None
        for name, value in (facts or {}).items():
            if data.get(name) is None and name not in added:
                added[name] = value
    return {**event, "data": {**data, **added}} if added else event


def event_scope(event, known=None):
    """What an event concerns, read from its payload (docs/events.md) and what notify learned of
    the match or offer it names (``known``: key -> facts, see ``completed``)."""
    event = completed(event, known) if known else event
    data = event.get("data") or {}
    articles = {a for a in _as_set(data.get("article"), data.get("articles")) if isinstance(a, int)}
    chapters = {c for c in _as_set(data.get("chapter"), data.get("chapters")) if isinstance(c, int)}
    for article in articles:
        if article in reference.articles():
            chapters.add(reference.chapter_of(article))
    priority = data.get("priority")
    rule = audience(event.get("type"))
    by = data.get(rule["by"]) if rule["by"] else None
    return {
        "type": event.get("type", ""),
        "states": _as_set(data.get("state"), data.get("states"), data.get("scope_states"),
                          data.get("states_completed"), data.get("states_upcoming")),
        "groups": _as_set(data.get("regional_group"), data.get("scope_groups")),
        "networks": _as_set(data.get("network_id")),
        "providers": _as_set(data.get("provider"), data.get("providers"), data.get("donors"),
                             [s.get("provider") for s in data.get("support_received") or []
                              if isinstance(s, dict)]),
        "donors": rule["donors"],
        "by": by if isinstance(by, str) else None,
        "articles": articles,
        "chapters": chapters,
        "forms": _as_set(data.get("forms"), data.get("form")),
        "priority": priority if isinstance(priority, int) else None,
    }


def type_matches(patterns, event_type):
    """``match.proposed``, ``match.*`` or ``*``; no patterns = every type."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def filter_matches(flt, scope):
    """Each filter dimension narrows only when the event carries that attribute."""
    flt = flt or {}
    if not type_matches(flt.get("types"), scope["type"]):
        return False
    for key, attr in (("states", "states"), ("regional_groups", "groups"), ("articles", "articles"),
                      ("chapters", "chapters"), ("forms", "forms")):
        wanted = set(flt.get(key) or ())
        if wanted and scope[attr] and not wanted & scope[attr]:
            return False
    if flt.get("priority") is not None and scope["priority"] is not None:
        if scope["priority"] > flt["priority"]:  # 1 is the highest priority
            return False
    return True


def concerns_states(states, network_id, scope):
    """Does the event concern any of these States (or the group named ``network_id``)?"""
    states = set(states)
    if network_id and network_id in scope["networks"]:
        return True
    if scope["states"]:
        return bool(states & scope["states"])
    if network_id and network_id in scope["groups"]:
        return True
    # an event about whole regional groups only (an offer scoped to a group)
    return any(states & set(reference.states_in_group(g)) for g in scope["groups"]
               if g in reference.regional_groups())


def subscription_matches(subscription, event, network_states=None, scope=None):
    """Should this subscription hear about this event?

    - donor: the event names its provider, or names no provider at all, is
      news to every donor (``AUDIENCES``) and passes the filter (events naming
      other donors are theirs, not shown);
    - state: the event concerns that State (or only its regional group);
    - network: the event concerns any of the network's States, or names the
      network as regional group.
    Nobody hears of a step they took themselves (``AUDIENCES``: ``by``).
    Every kind then has to pass its filter. ``scope``: ``event_scope(event)``
    when the caller already has it (one event against many subscriptions).
    """
    if subscription.get("status") != "active":
        return False
    scope = scope or event_scope(event)
    if not filter_matches(subscription.get("filter"), scope):
        return False
    kind, subject = subscription["kind"], subscription["subject"]
    if scope.get("by") == f"{kind}:{subject}":
        return False  # its own step: the other side hears of it
    if kind == "donor":
        return subject in scope["providers"] or (not scope["providers"] and scope.get("donors") == "open")
    if kind == "state":
        if scope["states"]:
            return subject in scope["states"]
        group = reference.regional_group_of(subject) if reference.is_known_state(subject) else None
        return group in scope["groups"]
    if kind == "network":
        return concerns_states(network_states or (), subject, scope)
    return False


# -- webhook signatures --------------------------------------------------------

def new_secret():
    return "whsec_" + secrets.token_urlsafe(32)


def new_token():
    return secrets.token_urlsafe(24)


def new_id(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _as_bytes(body):
    return body if isinstance(body, bytes) else body.encode("utf-8")


def sign(secret, body, timestamp):
    """hex HMAC-SHA256 of ``f"{t}.{body}"`` with the subscription's secret."""
    message = str(int(timestamp)).encode() + b"." + _as_bytes(body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret, body, timestamp):
    return f"t={int(timestamp)},v1={sign(secret, body, timestamp)}"


def verify_signature(secret, header, body, now, tolerance=REPLAY_WINDOW_SECONDS):
    """True when ``header`` (``t=…,v1=…``) signs ``body`` with ``secret`` and
    ``t`` is within ``tolerance`` seconds of ``now`` (replay window)."""
    if not header or not secret:
        return False
    parts = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp)
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))


# -- webhook targets (SSRF guard) ---------------------------------------------

class UnsafeTarget(ValueError):
    pass


def parse_allow(text):
    """``TACOORD_WEBHOOK_ALLOW``: comma-separated CIDRs that may be reached anyway."""
    networks = []
    for item in (text or "").split(","):
        item = item.strip()
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def webhook_host(url):
    """(host, port) of an acceptable webhook URL, or UnsafeTarget saying why not."""
    if not isinstance(url, str) or len(url) > 2000:
        raise UnsafeTarget("must be an http(s) URL of at most 2000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"not a valid URL: {exc}")
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("must start with http:// or https://")
    if not parts.hostname:
        raise UnsafeTarget("has no host name")
    if parts.username or parts.password:
        raise UnsafeTarget("may not carry user:password (sign with the subscription secret instead)")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def address_problem(address, allow=()):
    """Why a webhook may not reach this IP address (None when it may)."""
    ip = ipaddress.ip_address(address)
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if any(ip in network for network in allow):
        return None
    for label, flag in (("loopback", ip.is_loopback), ("private", ip.is_private),
                        ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                        ("reserved", ip.is_reserved), ("unspecified", ip.is_unspecified)):
        if flag:
            return f"{address} is a {label} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def check_addresses(host, addresses, allow=()):
    """Every address the host resolves to must be acceptable."""
    if not addresses:
        raise UnsafeTarget(f"host {host!r} does not resolve")
    for address in addresses:
        problem = address_problem(address, allow)
        if problem:
            raise UnsafeTarget(f"host {host!r} resolves to a forbidden target: {problem} "
                               "(allow it with TACOORD_WEBHOOK_ALLOW)")


# -- outcomes ------------------------------------------------------------------

def http_outcome(status):
    """'ok', 'retry' (5xx, 429) or 'permanent' (other 4xx, 3xx: no redirects)."""
    if 200 <= status < 300:
        return "ok"
    if status >= 500 or status == 429:
        return "retry"
    return "permanent"


def smtp_outcome(code):
    """SMTP replies: 4xx are transient, 5xx permanent."""
    return "retry" if 400 <= code < 500 else "permanent"


OUTCOME_NAMESPACE = uuid.UUID("5d0c2a8e-6f52-4c1e-9a7e-3b1f0c9d7a41")


def outcome_event_id(notification_id, status, resends=0):
    """The id of a notification's ``notification.<status>`` event: the same every time it is
    published again (after a crash between publishing it and storing the outcome), so the audit
    log and other consumers keep one. Each resend from the dead letters (``resends``: how many)
    is a new outcome, with an id of its own."""
    key = f"{notification_id}:{status}" + (f":{resends}" if resends else "")
    return str(uuid.uuid5(OUTCOME_NAMESPACE, key))


def lease_over(delivery, now, lease_seconds):
    """Has the worker that claimed this pending delivery had ``lease_seconds`` to finish it?
    From its ``claimed_at`` (``created_at`` for a delivery stored before leases); an unreadable
    time counts as over (at least once rather than never)."""
    claimed = delivery.get("claimed_at") or delivery.get("created_at")
    try:
        at = datetime.fromisoformat(claimed)
    except (TypeError, ValueError):
        return True
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return (now - at).total_seconds() >= lease_seconds


def route(events, subscriptions, networks, known=None):
    """Who gets what: ``([(subscription, event)] to notify now, [(subscription, event)] for
    digests)`` for every event and every active subscription whose filter it passes (``known``:
    what notify learned of the matches and offers the events name, see ``completed``)."""
    immediate, digest = [], []
    for event in events:
        scope = event_scope(event, known)
        for subscription in subscriptions:
            states = networks.get(subscription["subject"], {}).get("states")
            if subscription_matches(subscription, event, states, scope=scope):
                (digest if subscription.get("digest") else immediate).append((subscription, event))
    return immediate, digest


def notification_event_data(delivery, subscription, error=None):
    """Payload of notification.delivered / notification.failed (docs/events.md)."""
    return {"notification_id": delivery["_id"], "subscription_id": subscription["subscription_id"],
            "source_event_id": delivery["event_id"], "source_event_type": delivery["event_type"],
            "channel": subscription["channel"], "attempts": delivery.get("attempts", 0),
            "error": error}


# -- pausing and test-sending --------------------------------------------------

def check_pause(subscription, target):
    """A pause or a resume (``target``: paused, active) is allowed while the subscription is active or
    paused; else Conflict naming its status. True when it changes something."""
    status = subscription["status"]
    if status not in PAUSABLE:
        raise Conflict(f"subscription {subscription['subscription_id']} is '{status}' and cannot be "
                       f"'{target}'; allowed from '{status}': none")
    return status != target


def test_event(subscription, now):
    """The event a test-send delivers: says what it is, names the subscription, changes nothing."""
    return {"id": str(uuid.uuid4()), "type": TEST_EVENT, "occurred_at": now, "source": "notify",
            "data": {"subscription_id": subscription["subscription_id"], "kind": subscription["kind"],
                     "message": "A test notification from tacoord: this channel works. Nothing happened."}}


def digest_due(last_sent_at, now, period_seconds):
    """Send a digest when none was sent, or the last one is ``period`` old (epoch seconds)."""
    return last_sent_at is None or now - last_sent_at >= period_seconds

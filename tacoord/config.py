"""Settings, read from environment variables with local-stack defaults.

Every service gets a nameko config dict from :func:`service_config`; the
keys below are the only ones the core reads from ``container.config``.
"""
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

AMQP_URI_KEY = "AMQP_URI"
MONGO_URI_KEY = "MONGO_URI"
DB_NAME_KEY = "TACOORD_DB"
SERVICE_KEY = "TACOORD_SERVICE"
OPS_PORT_KEY = "TACOORD_OPS_PORT"
OPS_HOST_KEY = "TACOORD_OPS_HOST"
MAX_ATTEMPTS_KEY = "TACOORD_MAX_ATTEMPTS"
RETRY_BASE_MS_KEY = "TACOORD_RETRY_BASE_MS"
OUTBOX_RELAY_SECONDS_KEY = "TACOORD_OUTBOX_RELAY_SECONDS"
MAX_BODY_BYTES_KEY = "TACOORD_MAX_BODY_BYTES"
INBOX_LEASE_SECONDS_KEY = "TACOORD_INBOX_LEASE_SECONDS"
DB_STARTUP_SECONDS_KEY = "TACOORD_DB_STARTUP_SECONDS"      # how long a starting service waits for the database
INBOX_LEASE_SECONDS = 120  # a claim older than this was left by a dead worker
DB_STARTUP_SECONDS = 120  # a starting service waits this long for its database to answer
MONGO_WRITE_CONCERN_KEY = "TACOORD_MONGO_WRITE_CONCERN"   # w: majority, a number, a tag
MONGO_JOURNAL_KEY = "TACOORD_MONGO_JOURNAL"               # j: true / false
MONGO_READ_CONCERN_KEY = "TACOORD_MONGO_READ_CONCERN"     # local, majority, linearizable, …
MONGO_CONCERN_KEYS = (MONGO_WRITE_CONCERN_KEY, MONGO_JOURNAL_KEY, MONGO_READ_CONCERN_KEY)
READ_CONCERNS = ("local", "available", "majority", "linearizable", "snapshot")

SERVICES = ("needs", "supply", "matching", "notify", "requests", "audit")

# HTTP (nameko @http) and ops (metrics + health) ports, one pair per service.
HTTP_PORTS = {name: 8001 + i for i, name in enumerate(SERVICES)}
OPS_PORTS = {name: 9101 + i for i, name in enumerate(SERVICES)}


def env(name, default):
    return os.environ.get(name, default)


def env_int(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"configuration error: {name}={value!r} is not an integer")


def setting(container_config, key, default=None):
    """A service setting: the container's config first, then the environment, then ``default``
    (an empty value counts as unset, as ``${VAR:}`` in a config.yml gives one)."""
    value = container_config.get(key)
    if value is None or value == "":
        value = os.environ.get(key)
    return default if value is None or value == "" else value


def state_dir():
    return Path(env("TACOORD_STATE_DIR", str(PROJECT_ROOT / ".stack")))


def amqp_host():
    return env("TACOORD_AMQP_HOST", "127.0.0.1")


def amqp_mgmt_url(path=""):
    """The RabbitMQ management API (``path`` relative to ``/api/``)."""
    return f"http://{amqp_host()}:{amqp_mgmt_port()}/api/{path}"


def amqp_port():
    return env_int("TACOORD_AMQP_PORT", 5673)


def amqp_mgmt_port():
    return env_int("TACOORD_AMQP_MGMT_PORT", 15673)


def amqp_vhost():
    return env("TACOORD_AMQP_VHOST", "tacoord")


def amqp_admin():
    return env("TACOORD_AMQP_ADMIN_USER", "tacoord"), env("TACOORD_AMQP_ADMIN_PASSWORD", "tacoord")


def amqp_addresses():
    """``[(host, port)]`` of the broker's nodes: ``TACOORD_AMQP_ADDRESSES`` (``host:port,host:port``,
    a cluster), else the one ``TACOORD_AMQP_HOST``:``TACOORD_AMQP_PORT``."""
    listed = [a.strip() for a in env("TACOORD_AMQP_ADDRESSES", "").split(",") if a.strip()]
    if not listed:
        return [(amqp_host(), amqp_port())]
    addresses = []
    for address in listed:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"configuration error: TACOORD_AMQP_ADDRESSES entry {address!r} is not host:port")
        addresses.append((host, int(port)))
    return addresses


def clustered():
    """True when the services are given more than one broker node (a cluster)."""
    explicit = os.environ.get("AMQP_URI")
    return ";" in explicit if explicit else len(amqp_addresses()) > 1


def amqp_uri(vhost=None, user=None, password=None):
    """The broker URI; with several nodes one URI per node joined by ``;`` (kombu's failover
    alternates: a connection goes to the first that answers, and on to the next when it breaks)."""
    default_user, default_password = amqp_admin()
    explicit = os.environ.get("AMQP_URI")
    if explicit and vhost is None and user is None:
        return explicit
    return ";".join("pyamqp://{}:{}@{}:{}/{}".format(
        user or default_user, password or default_password, host, port, vhost or amqp_vhost())
        for host, port in amqp_addresses())


def masked(uri):
    """A broker URI with the password of every node masked (nameko's ``sanitize_url`` masks only
    the first of ``;``-joined alternates)."""
    from kombu.utils.url import sanitize_url
    return ";".join(sanitize_url(node, mask="********") for node in uri.split(";"))


def service_users_file():
    """Per-service broker users' passwords, written by ``infra.stack up`` (infra/definitions.py)."""
    return state_dir() / "amqp-service-users.json"


def service_amqp_credentials(service):
    """(user, password) of the service's own broker user, or None (then the admin user is used).

    ``TACOORD_AMQP_<SERVICE>_USER`` / ``_PASSWORD`` win over the state file.
    """
    user = os.environ.get(f"TACOORD_AMQP_{service.upper()}_USER")
    password = os.environ.get(f"TACOORD_AMQP_{service.upper()}_PASSWORD")
    if user and password:
        return user, password
    try:
        import json
        entry = json.loads(service_users_file().read_text()).get(service)
    except (OSError, ValueError):
        return None
    return (entry["user"], entry["password"]) if entry else None


def service_amqp_uri(service):
    """An explicit ``AMQP_URI`` wins; else the service's own user when it has one; else the admin."""
    if os.environ.get("AMQP_URI"):
        return os.environ["AMQP_URI"]
    credentials = service_amqp_credentials(service)
    return amqp_uri(user=credentials[0], password=credentials[1]) if credentials else amqp_uri()


def dead_letters_amqp_uri():
    """The operator's broker URI for audit's dead-letter routes (peek the parked queue, republish to
    any exchange: more than a service's own user may), when set; ``infra.stack`` and Compose set it."""
    return env("TACOORD_DEADLETTERS_AMQP_URI", "") or None


def mongo_port():
    return env_int("TACOORD_MONGO_PORT", 27027)


def mongo_uri():
    return env("MONGO_URI", f"mongodb://127.0.0.1:{mongo_port()}/")


def replica_set(uri):
    """The replica set a MongoDB URI names (``replicaSet=``), or None."""
    from urllib.parse import parse_qs, urlsplit
    return (parse_qs(urlsplit(uri).query).get("replicaSet") or [None])[0]


def mongo_concerns(service, uri):
    """The write and read concern of a service's database client, ``{key: value or None}``.

    ``TACOORD_<SERVICE>_MONGO_WRITE_CONCERN`` / ``_JOURNAL`` / ``_READ_CONCERN`` (one service),
    else ``TACOORD_MONGO_…`` (all); unset, with a replica set (the URI names ``replicaSet``):
    ``w=majority``, journaled, majority reads (a write acknowledged is on most members' disks and
    survives a failover; a read sees only such writes); a single server: its own defaults (None).
    """
    safe = replica_set(uri) is not None
    defaults = {MONGO_WRITE_CONCERN_KEY: "majority", MONGO_JOURNAL_KEY: "true", MONGO_READ_CONCERN_KEY: "majority"}
    concerns = {}
    for key in MONGO_CONCERN_KEYS:
        own = f"TACOORD_{service.upper()}_{key.removeprefix('TACOORD_')}"
        concerns[key] = env(own, "") or env(key, "") or (defaults[key] if safe else None)
    read = concerns[MONGO_READ_CONCERN_KEY]
    if read is not None and read not in READ_CONCERNS:
        raise SystemExit(f"configuration error: read concern {read!r} is not one of {', '.join(READ_CONCERNS)}")
    journal = concerns[MONGO_JOURNAL_KEY]
    if journal is not None and str(journal).lower() not in ("true", "false", "1", "0"):
        raise SystemExit(f"configuration error: journal {journal!r} is not true or false")
    return concerns


def db_prefix():
    return env("TACOORD_DB_PREFIX", "tacoord")


def db_name(service, prefix=None):
    return f"{prefix or db_prefix()}_{service}"


def http_port(service):
    return env_int(f"TACOORD_{service.upper()}_HTTP_PORT", HTTP_PORTS.get(service, 0))


def ops_port(service):
    return env_int(f"TACOORD_{service.upper()}_OPS_PORT", OPS_PORTS.get(service, 0))


# The gateway (nginx, infra/gateway.py): one origin in front of every service.
GATEWAY_PORT = 8080
# An X-Request-Id the gateway and the services keep (tacoord.webserver); any other is replaced.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{8,128}$"


def gateway_port():
    return env_int("TACOORD_GATEWAY_PORT", GATEWAY_PORT)


def gateway_rate():
    """Requests per second one client may send to /api (more within the burst), then 429."""
    return env_int("TACOORD_GATEWAY_RATE", 20)


def gateway_burst():
    return env_int("TACOORD_GATEWAY_BURST", 40)


def max_body_bytes():
    return env_int("TACOORD_MAX_BODY_BYTES", 1_000_000)


def service_config(service, **overrides):
    """The nameko config dict for one service, from the environment."""
    config = {
        SERVICE_KEY: service,
        AMQP_URI_KEY: service_amqp_uri(service),
        MONGO_URI_KEY: mongo_uri(),
        DB_NAME_KEY: db_name(service),
        "WEB_SERVER_ADDRESS": f"{env('TACOORD_HTTP_HOST', '127.0.0.1')}:{http_port(service)}",
        OPS_HOST_KEY: env("TACOORD_OPS_HOST", "127.0.0.1"),
        OPS_PORT_KEY: ops_port(service),
        MAX_ATTEMPTS_KEY: env_int("TACOORD_MAX_ATTEMPTS", 5),
        RETRY_BASE_MS_KEY: env_int("TACOORD_RETRY_BASE_MS", 500),
        OUTBOX_RELAY_SECONDS_KEY: env_int("TACOORD_OUTBOX_RELAY_SECONDS", 5),
        MAX_BODY_BYTES_KEY: max_body_bytes(),
        INBOX_LEASE_SECONDS_KEY: env_int("TACOORD_INBOX_LEASE_SECONDS", INBOX_LEASE_SECONDS),
        DB_STARTUP_SECONDS_KEY: env_int("TACOORD_DB_STARTUP_SECONDS", DB_STARTUP_SECONDS),
        "max_workers": env_int("TACOORD_MAX_WORKERS", 10),
        "serializer": "json",
    }
    config.update(overrides)
    for key, value in mongo_concerns(service, config[MONGO_URI_KEY]).items():
        config.setdefault(key, value)
    return config

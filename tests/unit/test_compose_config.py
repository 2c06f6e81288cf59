"""docker-compose.yml, the Dockerfile, Prometheus and Grafana agree with the code's configuration.

No Docker engine is needed: the files are parsed and checked against
``tacoord.config``. ``docker compose config`` runs only when an engine answers.
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tacoord import config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROMETHEUS = {"local": ROOT / "infra" / "prometheus.yml", "docker": ROOT / "infra" / "prometheus.docker.yml"}


def env_of(service):
    return {k: str(v) for k, v in SERVICES[service]["environment"].items()}


def published_ports(service):
    pairs = [str(p).split(":") for p in SERVICES[service].get("ports", [])]
    return {int(container): int(host) for host, container in pairs}


def named_volume_mounts(service):
    return [v.split(":")[0] for v in SERVICES[service].get("volumes", []) if not v.startswith(".")]


def config_env_names():
    """Every environment variable name tacoord/config.py reads."""
    source = (ROOT / "tacoord" / "config.py").read_text()
    names = set(re.findall(r'env(?:_int)?\(["\']([A-Z0-9_]+)["\']', source))
    names |= set(re.findall(r'os\.environ\.get\("([A-Z0-9_]+)"', source))
    names |= {f"TACOORD_{s.upper()}_{kind}_PORT" for s in config.SERVICES for kind in ("HTTP", "OPS")}
    names |= set(config.MONGO_CONCERN_KEYS)
    names |= {f"TACOORD_{s.upper()}_{k.removeprefix('TACOORD_')}" for s in config.SERVICES
              for k in config.MONGO_CONCERN_KEYS}
    return names


def interpolated(value, variables):
    """A compose value with ``${NAME:-default}`` resolved from ``variables``."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m.group(1)) or m.group(2), value)


def env_file(path):
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_every_service_of_the_code_is_in_compose_with_its_own_command():
    for name in config.SERVICES:
        assert name in SERVICES, f"{name} missing from docker-compose.yml"
        assert SERVICES[name]["command"] == ["python", "-m", "services.run", name]
        assert SERVICES[name]["build"] == "."


def test_each_service_publishes_its_http_and_ops_ports_from_the_config():
    for name in config.SERVICES:
        env = env_of(name)
        assert published_ports(name) == {config.HTTP_PORTS[name]: config.HTTP_PORTS[name],
                                         config.OPS_PORTS[name]: config.OPS_PORTS[name]}
        assert env[f"TACOORD_{name.upper()}_HTTP_PORT"] == str(config.HTTP_PORTS[name])
        assert env[f"TACOORD_{name.upper()}_OPS_PORT"] == str(config.OPS_PORTS[name])


def test_services_listen_on_all_interfaces_and_reach_the_broker_and_database_by_compose_name():
    for name in config.SERVICES:
        env = env_of(name)
        assert env["TACOORD_OPS_HOST"] == "0.0.0.0"
        assert env["TACOORD_HTTP_HOST"] == "0.0.0.0"
        password = f"${{TACOORD_AMQP_{name.upper()}_PASSWORD:-{name}-dev-only}}"
        assert env[config.AMQP_URI_KEY] == f"pyamqp://tacoord-{name}:{password}@rabbitmq:5672/tacoord"
        assert interpolated(env[config.MONGO_URI_KEY], {}) == "mongodb://mongo:27017/"


def test_services_set_only_environment_variables_the_code_reads():
    known = config_env_names()
    for name in config.SERVICES:
        unknown = set(env_of(name)) - known
        assert not unknown, f"{name} sets variables tacoord/config.py never reads: {unknown}"


def test_the_environment_gives_each_service_the_config_compose_intends(monkeypatch):
    for name in config.SERVICES:
        for key, value in env_of(name).items():
            monkeypatch.setenv(key, value)
        cfg = config.service_config(name)
        assert cfg["WEB_SERVER_ADDRESS"] == f"0.0.0.0:{config.HTTP_PORTS[name]}"
        assert cfg[config.OPS_PORT_KEY] == config.OPS_PORTS[name]
        assert cfg[config.OPS_HOST_KEY] == "0.0.0.0"
        assert cfg[config.AMQP_URI_KEY].endswith("@rabbitmq:5672/tacoord")
        assert cfg[config.DB_NAME_KEY] == f"tacoord_{name}"


def test_service_health_checks_ask_readiness_on_their_own_ops_port():
    for name in config.SERVICES:
        test = " ".join(SERVICES[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{config.OPS_PORTS[name]}/health/ready" in test


def test_services_wait_for_a_healthy_broker_and_database():
    for name in config.SERVICES:
        assert SERVICES[name]["depends_on"] == {
            "rabbitmq": {"condition": "service_healthy"}, "mongo": {"condition": "service_healthy"},
            "broker-setup": {"condition": "service_completed_successfully"},
            "mongo-rs-init": {"condition": "service_completed_successfully", "required": False}}


def test_broker_setup_gives_each_service_the_user_and_password_its_amqp_uri_names():
    setup = SERVICES["broker-setup"]
    assert setup["command"] == ["python", "-m", "infra.definitions", "broker-users"]
    assert setup["restart"] == "no" and setup["build"] == "."
    assert setup["depends_on"] == {"rabbitmq": {"condition": "service_healthy"}}
    env = env_of("broker-setup")
    rabbit = SERVICES["rabbitmq"]["environment"]
    assert (env["TACOORD_AMQP_ADMIN_USER"], env["TACOORD_AMQP_ADMIN_PASSWORD"], env["TACOORD_AMQP_VHOST"]) == (
        rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"], rabbit["RABBITMQ_DEFAULT_VHOST"])
    assert (env["TACOORD_AMQP_HOST"], env["TACOORD_AMQP_PORT"], env["TACOORD_AMQP_MGMT_PORT"]) == (
        "rabbitmq", "5672", "15672")
    for name in config.SERVICES:
        uri = env_of(name)[config.AMQP_URI_KEY]
        user, password = re.fullmatch(r"pyamqp://([^:]+):(.+)@rabbitmq:5672/tacoord", uri).groups()
        assert user == f"tacoord-{name}"
        assert env[f"TACOORD_AMQP_{name.upper()}_PASSWORD"] == password
    passwords = {f"TACOORD_AMQP_{s.upper()}_PASSWORD" for s in config.SERVICES}
    assert set(env) - passwords <= config_env_names()


def test_rabbitmq_has_the_user_and_vhost_the_services_use():
    rabbit = SERVICES["rabbitmq"]
    assert rabbit["image"] == "rabbitmq:3-management"
    assert rabbit["environment"] == {"RABBITMQ_DEFAULT_USER": "tacoord", "RABBITMQ_DEFAULT_PASS": "tacoord",
                                     "RABBITMQ_DEFAULT_VHOST": "tacoord"}
    assert rabbit["healthcheck"]["test"][:2] == ["CMD", "rabbitmq-diagnostics"]
    assert "ping" in rabbit["healthcheck"]["test"]
    assert published_ports("rabbitmq") == {5672: 5672, 15672: 15672}


def test_mongo_is_pinged_with_mongosh_and_keeps_its_data_in_a_volume():
    mongo = SERVICES["mongo"]
    assert mongo["image"] == "mongo:7"
    assert mongo["healthcheck"]["test"][:2] == ["CMD", "mongosh"]
    assert "ping" in " ".join(mongo["healthcheck"]["test"])
    assert published_ports("mongo") == {27017: 27017}


REPLICA = ("mongo-rs1", "mongo-rs2", "mongo-rs3")
REPLICA_ENV = env_file(ROOT / "infra" / "mongo" / "replica.env")


def test_the_replica_profile_has_three_members_of_one_set_and_an_init_naming_them():
    assert REPLICA_ENV["COMPOSE_PROFILES"] == "replica"
    for member in REPLICA:
        service = SERVICES[member]
        assert service["image"] == "mongo:7" and service["profiles"] == ["replica"]
        assert service["command"] == ["mongod", "--replSet", "tacoord-rs", "--bind_ip_all"]
        assert "ping" in " ".join(service["healthcheck"]["test"])
        assert named_volume_mounts(member) == [f"{member}-data"]
    init = SERVICES["mongo-rs-init"]
    assert init["profiles"] == ["replica"] and init["restart"] == "no"
    assert init["depends_on"] == {m: {"condition": "service_healthy"} for m in REPLICA}
    assert init["command"][:3] == ["mongosh", "--host", "mongo-rs1:27017"]
    script = (ROOT / "infra" / "mongo" / "replica-init.js").read_text()
    assert "rs.initiate" in script and '_id: "tacoord-rs"' in script
    assert re.search(r"const members = \[(.*)\];", script).group(1) == ", ".join(f'"{m}:27017"' for m in REPLICA)
    uri = REPLICA_ENV["TACOORD_MONGO_URI"]
    assert uri == "mongodb://" + ",".join(f"{m}:27017" for m in REPLICA) + "/?replicaSet=tacoord-rs"
    assert "mongo" not in SERVICES[REPLICA[0]].get("profiles", []) and "profiles" not in SERVICES["mongo"]


def test_on_the_replica_set_services_write_majority_journaled_read_majority_and_retry(monkeypatch):
    from tacoord.store import connect
    for name in config.SERVICES:
        for key, value in env_of(name).items():
            monkeypatch.setenv(key, interpolated(value, REPLICA_ENV))
        cfg = config.service_config(name)
        assert cfg[config.MONGO_URI_KEY] == REPLICA_ENV["TACOORD_MONGO_URI"]
        client = connect(cfg)
        try:
            assert client.write_concern.document == {"w": "majority", "j": True}
            assert client.read_concern.level == "majority"
            assert client.options.retry_writes and client.options.retry_reads
            assert client.options.replica_set_name == "tacoord-rs"
        finally:
            client.close()


def test_a_service_may_set_its_own_concerns_and_a_single_server_keeps_its_defaults(monkeypatch):
    from tacoord.store import connect
    replica = REPLICA_ENV["TACOORD_MONGO_URI"]
    monkeypatch.setenv("TACOORD_AUDIT_MONGO_READ_CONCERN", "linearizable")
    monkeypatch.setenv("TACOORD_NOTIFY_MONGO_WRITE_CONCERN", "2")
    audit, notify = (connect(config.service_config(s, MONGO_URI=replica)) for s in ("audit", "notify"))
    single = connect(config.service_config("needs", MONGO_URI="mongodb://mongo:27017/"))
    try:
        assert audit.read_concern.level == "linearizable" and audit.write_concern.document["w"] == "majority"
        assert notify.write_concern.document == {"w": 2, "j": True} and notify.read_concern.level == "majority"
        assert single.write_concern.document == {} and single.read_concern.level is None
        assert single.options.retry_writes
    finally:
        for client in (audit, notify, single):
            client.close()
    monkeypatch.setenv("TACOORD_MONGO_READ_CONCERN", "strong")
    with pytest.raises(SystemExit, match="read concern 'strong'"):
        config.service_config("needs", MONGO_URI=replica)


def test_every_named_volume_is_declared_and_every_declared_one_used():
    used = {v for name in SERVICES for v in named_volume_mounts(name)}
    assert used == set(COMPOSE["volumes"])


def test_bind_mounts_point_at_files_in_the_repository():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).exists(), f"{name} mounts missing {volume}"


def test_prometheus_in_compose_loads_the_docker_config_and_the_alert_rules():
    volumes = SERVICES["prometheus"]["volumes"]
    assert "./infra/prometheus.docker.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert "./infra/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes


@pytest.mark.parametrize("flavour", ["local", "docker"])
def test_prometheus_scrapes_every_service_ops_port_once(flavour):
    scrape = yaml.safe_load(PROMETHEUS[flavour].read_text())
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
               for job in scrape["scrape_configs"]}
    host = {"local": lambda s: "127.0.0.1", "docker": lambda s: s}[flavour]
    assert targets == {s: [f"{host(s)}:{config.OPS_PORTS[s]}"] for s in config.SERVICES}
    assert scrape["rule_files"] == ["alerts.yml"]


def test_the_docker_prometheus_hosts_are_compose_services():
    scrape = yaml.safe_load(PROMETHEUS["docker"].read_text())
    for job in scrape["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            assert target.split(":")[0] in SERVICES


def test_grafana_dashboards_use_the_provisioned_datasource():
    grafana = ROOT / "infra" / "grafana"
    datasource = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [source] = datasource["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in SERVICES
    provider = yaml.safe_load((grafana / "provisioning" / "dashboards" / "tacoord.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert "./infra/grafana/dashboards:/var/lib/grafana/dashboards:ro" in SERVICES["grafana"]["volumes"]
    dashboards = list((grafana / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["panels"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source["uid"], (path.name, panel["title"])
            assert all(target["expr"] for target in panel["targets"])


def test_the_dockerfile_builds_one_image_that_runs_any_service():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install" in dockerfile
    assert 'CMD ["python", "-m", "services.run"' in dockerfile
    for directory in ("tacoord", "services", "infra"):
        assert f"COPY {directory} ./{directory}" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".stack" in ignored


def docker_engine_problem():
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if info.returncode != 0:
        return "no Docker engine answers `docker info`"
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=20)
    if plugin.returncode != 0:
        return "the docker compose plugin is not installed"
    return None


def test_docker_compose_accepts_the_file():
    problem = docker_engine_problem()
    if problem:
        pytest.skip(f"{problem}; the file is checked by the tests above instead")
    result = subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr

"""The local stack without Docker: RabbitMQ, a MongoDB-protocol server, the gateway, the services.

    python -m infra.stack up          # broker + database, definitions, indexes, the gateway (nginx)
    python -m infra.stack services    # start every service (after ``up``)
    python -m infra.stack down        # stop gateway, services, broker, database
    python -m infra.stack status
    python -m infra.cluster up        # three RabbitMQ nodes instead (infra/cluster.py)

Everything lives under ``$TACOORD_STATE_DIR`` (default ``.stack/``): RabbitMQ's
mnesia and logs (owned by user ``rabbitmq``, as its wrapper requires), the
database files, PID files and service logs, the gateway's config and logs (``gateway/``,
see ``infra/gateway.py``). Running ``up`` twice is harmless;
a port taken by something else stops it with one clear line.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from infra import gateway
from tacoord import config

NODE = os.environ.get("TACOORD_RABBIT_NODE", "tacoord@localhost")
EPMD_PORT = config.env_int("TACOORD_EPMD_PORT", 4370)
DIST_PORT = config.env_int("TACOORD_AMQP_DIST_PORT", 25673)
SERVICE_ORDER = ("audit", "needs", "supply", "requests", "matching", "notify")


class StackError(SystemExit):
    """A failure the operator can act on: printed as one line, exit 2."""

    def __init__(self, message):
        super().__init__(f"stack: {message}")


def log(message):
    print(f"stack: {message}", flush=True)


def port_open(port, host="127.0.0.1"):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid_file):
    try:
        pid = int(Path(pid_file).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def require_free(port, what):
    if port_open(port):
        raise StackError(
            f"port {port} ({what}) is already in use by another program; "
            f"stop it or choose another port (see README, 'Configuration')")


# --- RabbitMQ ----------------------------------------------------------------

def rabbit_dir():
    return config.state_dir() / "rabbitmq"


def rabbit_env():
    base = rabbit_dir()
    env = dict(os.environ)
    env.update({
        "RABBITMQ_NODENAME": NODE,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(config.amqp_port()),
        "RABBITMQ_DIST_PORT": str(DIST_PORT),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(EPMD_PORT),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    })
    return env


def rabbitmqctl(*args, check=True, timeout=90):
    result = subprocess.run(
        ["rabbitmqctl", "-n", NODE, *args], env=rabbit_env(),
        capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise StackError(f"rabbitmqctl {' '.join(args)} failed: "
                         f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    return result


def rabbit_running():
    return bool(pid_alive(rabbit_dir() / "rabbit.pid")) and port_open(config.amqp_port())


def write_rabbit_files():
    base = rabbit_dir()
    for sub in ("mnesia", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{config.amqp_port()}\n"
        f"management.tcp.ip = 127.0.0.1\n"
        f"management.tcp.port = {config.amqp_mgmt_port()}\n"
        "collect_statistics_interval = 1000\n")
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    shutil.chown(config.state_dir(), "rabbitmq", "rabbitmq")
    subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(base)], check=True)


def start_rabbit():
    if rabbit_running():
        log(f"RabbitMQ already running (node {NODE}, port {config.amqp_port()})")
        return
    if shutil.which("rabbitmq-server") is None:
        raise StackError("rabbitmq-server is not installed: run scripts/bootstrap.sh "
                         "(apt-get install rabbitmq-server)")
    for port, what in ((config.amqp_port(), "AMQP"), (config.amqp_mgmt_port(), "RabbitMQ management"),
                       (DIST_PORT, "Erlang distribution")):
        require_free(port, what)
    write_rabbit_files()
    (rabbit_dir() / "rabbit.pid").unlink(missing_ok=True)
    log(f"starting RabbitMQ node {NODE} on 127.0.0.1:{config.amqp_port()}")
    subprocess.run(["rabbitmq-server", "-detached"], env=rabbit_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = rabbitmqctl("wait", "--timeout", "90", str(rabbit_dir() / "rabbit.pid"), check=False)
    if result.returncode != 0:
        raise StackError(f"RabbitMQ did not start; see {rabbit_dir() / 'log'}")
    rabbitmqctl("await_startup")


def apply_rabbit_definitions():
    """Admin user, vhost, service and partner users, then the topology."""
    from infra import definitions
    definitions.apply(rabbitmqctl)
    from kombu import Connection
    from tacoord import topology
    with Connection(config.amqp_uri()) as connection:
        topology.declare_all(connection, upgrade=True)  # moves queues whose arguments changed
    log(f"RabbitMQ definitions applied (vhost {config.amqp_vhost()})")


def stop_rabbit():
    pid = pid_alive(rabbit_dir() / "rabbit.pid")
    if pid:
        log("stopping RabbitMQ")
        if rabbitmqctl("stop", str(rabbit_dir() / "rabbit.pid"), check=False).returncode != 0:
            os.kill(pid, signal.SIGKILL)
    epmd = shutil.which("epmd") or next(iter(sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)
    if epmd:
        subprocess.run([str(epmd), "-port", str(EPMD_PORT), "-kill"], env=rabbit_env(),
                       capture_output=True)
    (rabbit_dir() / "rabbit.pid").unlink(missing_ok=True)


# --- MongoDB-protocol server -----------------------------------------------

def mongo_dir():
    return config.state_dir() / "mongo"


def mongo_pid_file():
    return config.state_dir() / "mongo.pid"


def external_mongo():
    return "MONGO_URI" in os.environ


def start_mongo():
    if external_mongo():
        log(f"using MONGO_URI={os.environ['MONGO_URI']} (not started here)")
        wait_for_mongo()
        return
    port = config.mongo_port()
    if pid_alive(mongo_pid_file()) and port_open(port):
        log(f"MongoDB-protocol server already running on port {port}")
        return
    mongo_pid_file().unlink(missing_ok=True)  # stale after a kill -9
    require_free(port, "MongoDB")
    mongo_dir().mkdir(parents=True, exist_ok=True)
    log_file = config.state_dir() / "mongo.log"
    if shutil.which("mongod"):
        log(f"starting mongod on 127.0.0.1:{port}")
        subprocess.run(["mongod", "--fork", "--bind_ip", "127.0.0.1", "--port", str(port),
                        "--dbpath", str(mongo_dir()), "--logpath", str(log_file),
                        "--pidfilepath", str(mongo_pid_file())], check=True,
                       stdout=subprocess.DEVNULL)
    else:
        nx = shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")
        log(f"starting nx-27017 (MongoDB wire protocol on SQLite) on 127.0.0.1:{port}")
        subprocess.run([nx, "-d", "--data-dir", str(mongo_dir()), "--host", "127.0.0.1",
                        "-p", str(port), "--pid-file", str(mongo_pid_file()),
                        "--log-file", str(log_file)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_mongo()


def wait_for_mongo(timeout=30):
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError
    deadline = time.monotonic() + timeout
    while True:
        try:
            MongoClient(config.mongo_uri(), serverSelectionTimeoutMS=1000).admin.command("ping")
            return
        except PyMongoError as exc:
            if time.monotonic() > deadline:
                raise StackError(f"MongoDB at {config.mongo_uri()} did not answer: {exc}")
            time.sleep(0.3)


def apply_indexes():
    from pymongo import MongoClient
    from tacoord import indexes
    client = MongoClient(config.mongo_uri())
    indexes.apply_all(client, config.db_prefix())
    log("MongoDB indexes applied")


def stop_mongo():
    if external_mongo():
        return
    pid = pid_alive(mongo_pid_file())
    if pid:
        log("stopping the MongoDB-protocol server")
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not pid_alive(mongo_pid_file()):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    mongo_pid_file().unlink(missing_ok=True)


# --- services ----------------------------------------------------------------

def run_dir():
    path = config.state_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_service(name):
    pid_file = run_dir() / f"{name}.pid"
    if pid_alive(pid_file):
        log(f"service {name} already running")
        return
    require_free(config.http_port(name), f"{name} HTTP")
    require_free(config.ops_port(name), f"{name} metrics/health")
    log_path = run_dir() / f"{name}.log"
    env = dict(os.environ, PYTHONPATH=str(config.PROJECT_ROOT))
    if name == "audit":   # its dead-letter routes act as the operator's `tacoord deadletters` does
        env.setdefault("TACOORD_DEADLETTERS_AMQP_URI", config.amqp_uri())
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.run", name], cwd=config.PROJECT_ROOT, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(process.pid))


def wait_ready(name, timeout=60):
    wait_until_ready(name, config.ops_port(name), lambda: pid_alive(run_dir() / f"{name}.pid"),
                     run_dir() / f"{name}.log", timeout)


def wait_until_ready(name, ops_port, alive, log_path, timeout=60):
    """Poll a service's ``/health/ready`` until it answers 200. ``StackError`` naming the log
    when ``alive()`` turns false (the process exited) or time runs out."""
    import requests
    url = f"http://127.0.0.1:{ops_port}/health/ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise StackError(f"service {name} exited; see {log_path}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise StackError(f"service {name} not ready after {timeout}s; see {log_path}")


def available_services():
    return [n for n in SERVICE_ORDER if (config.PROJECT_ROOT / "services" / n / "service.py").exists()]


def start_services():
    for name in available_services():
        start_service(name)
    for name in available_services():
        wait_ready(name)
    log("services ready: " + ", ".join(available_services()))


def stop_services():
    for name in SERVICE_ORDER:
        pid_file = run_dir() / f"{name}.pid"
        pid = pid_alive(pid_file)
        if pid:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                if not pid_alive(pid_file):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)


# --- the gateway (nginx) -------------------------------------------------------

def start_gateway():
    settings = gateway.local_settings()
    if not gateway.pid(settings):
        require_free(config.gateway_port(), "gateway")
    try:
        started = gateway.start(settings)
    except gateway.GatewayError as exc:
        raise StackError(str(exc.code).removeprefix("gateway: "))
    log(f"gateway (nginx) {'started' if started else 'already running; config reloaded'} on "
        f"http://{settings.listen}/ (logs in {gateway.paths(settings)['access'].parent})")


def stop_gateway():
    settings = gateway.local_settings()
    if gateway.pid(settings):
        log("stopping the gateway")
        gateway.stop(settings)


# --- commands ---------------------------------------------------------------

def up():
    config.state_dir().mkdir(parents=True, exist_ok=True)
    start_rabbit()
    apply_rabbit_definitions()
    start_mongo()
    apply_indexes()
    start_gateway()


def down():
    stop_gateway()
    stop_services()
    stop_rabbit()
    stop_mongo()
    log("stopped")


def status():
    print(f"rabbitmq  {'up' if rabbit_running() else 'down'}  amqp://127.0.0.1:{config.amqp_port()}  "
          f"management http://127.0.0.1:{config.amqp_mgmt_port()}/")
    mongo_up = port_open(config.mongo_port()) if not external_mongo() else True
    print(f"mongo     {'up' if mongo_up else 'down'}  {config.mongo_uri()}")
    for name in SERVICE_ORDER:
        alive = bool(pid_alive(run_dir() / f"{name}.pid"))
        print(f"{name:<9} {'up' if alive else 'down'}  http://127.0.0.1:{config.http_port(name)}/  "
              f"metrics http://127.0.0.1:{config.ops_port(name)}/metrics")
    settings = gateway.local_settings()
    print(f"gateway   {'up' if gateway.pid(settings) else 'down'}  http://{settings.listen}/  "
          f"docs http://{settings.listen}/docs/  api http://{settings.listen}/api/")
    return 0 if rabbit_running() and mongo_up else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "services", "down", "status", "restart-rabbit"))
    args = parser.parse_args(argv)
    if args.command == "up":
        up()
    elif args.command == "services":
        start_services()
    elif args.command == "down":
        down()
    elif args.command == "restart-rabbit":
        stop_rabbit()
        start_rabbit()
    else:
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())

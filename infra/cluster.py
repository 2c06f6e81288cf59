"""A three-node RabbitMQ cluster on loopback, and two instances of every service on it.

    python -m infra.cluster up          # or: tacoord stack up --cluster
    python -m infra.cluster services    # two instances of each service
    python -m infra.cluster status
    python -m infra.cluster node-stop 1 / node-start 1   # what the fault run does
    python -m infra.cluster down

Three nodes with their own names (``tacoord-c1@localhost`` …), AMQP, management
and Erlang distribution ports, mnesia directories and their own epmd port, all
sharing one Erlang cookie (generated once in the state directory, handed to the
nodes with ``-setcookie`` and to ``rabbitmqctl`` with ``--erlang-cookie``, so it
shows in the local process list: a development cluster): none of it meets the
single-node stack, which can run beside it. Nodes 2 and 3 join node 1
with ``rabbitmqctl join_cluster``. Then the same users, vhost and topology as
the single node, with quorum queues (replicated on the three nodes), and the
MongoDB-protocol server of the stack.

The services are given every node (``TACOORD_AMQP_ADDRESSES``): their URI
names one alternate per node and kombu fails over to the next when a
connection breaks. The second instance of a service listens on its ports + 10
(needs: HTTP 8011, ops 9111).

Ports: ``TACOORD_CLUSTER_AMQP_PORT`` (first node; 5681, then 5682, 5683),
``TACOORD_CLUSTER_MGMT_PORT`` (15681…), ``TACOORD_CLUSTER_DIST_PORT``
(25681…), ``TACOORD_CLUSTER_EPMD_PORT`` (4371); node names
``<TACOORD_CLUSTER_NODE_PREFIX>N@localhost`` (``tacoord-c``).
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra import stack
from tacoord import config

NODE_COUNT = 3
INSTANCES = 2
INSTANCE_PORT_STEP = 10


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    amqp_port: int
    mgmt_port: int
    dist_port: int

    @property
    def base(self):
        return cluster_dir() / f"node-{self.index}"

    @property
    def pid_file(self):
        return self.base / "rabbit.pid"


def cluster_dir():
    return config.state_dir() / "cluster"


def epmd_port():
    return config.env_int("TACOORD_CLUSTER_EPMD_PORT", 4371)


def nodes():
    amqp = config.env_int("TACOORD_CLUSTER_AMQP_PORT", 5681)
    mgmt = config.env_int("TACOORD_CLUSTER_MGMT_PORT", 15681)
    dist = config.env_int("TACOORD_CLUSTER_DIST_PORT", 25681)
    prefix = config.env("TACOORD_CLUSTER_NODE_PREFIX", "tacoord-c")
    return [Node(i, f"{prefix}{i}@localhost", amqp + i - 1, mgmt + i - 1, dist + i - 1)
            for i in range(1, NODE_COUNT + 1)]


def node(index):
    found = [n for n in nodes() if n.index == int(index)]
    if not found:
        raise stack.StackError(f"no cluster node {index}: the nodes are 1 to {NODE_COUNT}")
    return found[0]


def cookie():
    """The cluster's Erlang cookie: made once, kept in the state directory (mode 600)."""
    path = cluster_dir() / "erlang.cookie"
    if not path.exists():
        cluster_dir().mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(20))
        os.chmod(path, 0o600)
    return path.read_text().strip()


def service_env():
    """What a process needs to use the cluster: every node's address, node 1's management
    API, quorum queues (unless ``TACOORD_QUEUE_TYPE`` says otherwise)."""
    first = nodes()[0]
    return {
        "TACOORD_AMQP_ADDRESSES": ",".join(f"127.0.0.1:{n.amqp_port}" for n in nodes()),
        "TACOORD_AMQP_HOST": "127.0.0.1",
        "TACOORD_AMQP_PORT": str(first.amqp_port),
        "TACOORD_AMQP_MGMT_PORT": str(first.mgmt_port),
        "TACOORD_QUEUE_TYPE": os.environ.get("TACOORD_QUEUE_TYPE") or "quorum",
    }


@contextmanager
def cluster_environment():
    """This process (and what it starts) talks to the cluster meanwhile."""
    saved = dict(os.environ)
    os.environ.update(service_env())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- one node ------------------------------------------------------------------------------------

def node_env(n):
    base = n.base
    env = dict(os.environ)
    env.update({
        "RABBITMQ_NODENAME": n.name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(n.amqp_port),
        "RABBITMQ_DIST_PORT": str(n.dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(n.pid_file),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port()),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
            f"-kernel inet_dist_use_interface {{127,0,0,1}} -setcookie {cookie()}",
    })
    return env


def ctl(n, *args, check=True, timeout=90):
    result = subprocess.run(["rabbitmqctl", "--erlang-cookie", cookie(), "-n", n.name, *args],
                            env=node_env(n), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise stack.StackError(f"rabbitmqctl -n {n.name} {' '.join(args)} failed: "
                               f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    return result


def node_running(n):
    return bool(stack.pid_alive(n.pid_file)) and stack.port_open(n.amqp_port)


def write_node_files(n):
    admin = config.amqp_admin()
    for sub in ("mnesia", "log"):
        (n.base / sub).mkdir(parents=True, exist_ok=True)
    (n.base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{n.amqp_port}\n"
        "management.tcp.ip = 127.0.0.1\n"
        f"management.tcp.port = {n.mgmt_port}\n"
        "collect_statistics_interval = 1000\n"
        # the admin user and vhost are made at the first boot (then users and permissions over the
        # management API: one HTTP call each instead of a CLI start each)
        f"default_user = {admin[0]}\n"
        f"default_pass = {admin[1]}\n"
        f"default_vhost = {config.amqp_vhost()}\n"
        "default_user_tags.administrator = true\n"
        "default_permissions.configure = .*\n"
        "default_permissions.read = .*\n"
        "default_permissions.write = .*\n"
        # a node cut off from the other two stops serving rather than diverging from them
        "cluster_partition_handling = pause_minority\n")
    (n.base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    shutil.chown(config.state_dir(), "rabbitmq", "rabbitmq")
    subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(cluster_dir())], check=True)


def launch_node(n):
    """Start node ``n`` detached (not waiting); False when it runs already."""
    if node_running(n):
        return False
    for port, what in ((n.amqp_port, "AMQP"), (n.mgmt_port, "RabbitMQ management"),
                       (n.dist_port, "Erlang distribution")):
        stack.require_free(port, f"cluster node {n.index} {what}")
    write_node_files(n)
    n.pid_file.unlink(missing_ok=True)
    stack.log(f"starting RabbitMQ node {n.name} on 127.0.0.1:{n.amqp_port}")
    subprocess.run(["rabbitmq-server", "-detached"], env=node_env(n), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return True


def await_node(n, timeout=120):
    if ctl(n, "wait", "--timeout", str(timeout), str(n.pid_file), check=False, timeout=timeout + 30).returncode:
        raise stack.StackError(f"cluster node {n.name} did not start; see {n.base / 'log'}")
    ctl(n, "await_startup", timeout=timeout + 30)


def start_node(index):
    """Start one node again (after ``stop_node``): it rejoins the cluster by itself."""
    n = node(index)
    if launch_node(n):
        await_node(n)
    stack.log(f"node {n.name} running")


def stop_node(index):
    n = node(index)
    pid = stack.pid_alive(n.pid_file)
    if pid:
        stack.log(f"stopping RabbitMQ node {n.name}")
        if ctl(n, "stop", str(n.pid_file), check=False, timeout=120).returncode != 0:
            os.kill(pid, signal.SIGKILL)
    n.pid_file.unlink(missing_ok=True)


def members(n):
    """(every node of ``n``'s cluster, those running), from ``cluster_status``."""
    status = json.loads(ctl(n, "cluster_status", "--formatter", "json").stdout)
    return set(status.get("disk_nodes", []) + status.get("ram_nodes", [])), set(status.get("running_nodes", []))


def running_nodes():
    """The names of the cluster's running nodes, from the management API of a node that answers."""
    import requests
    for n in nodes():
        try:
            response = requests.get(f"http://127.0.0.1:{n.mgmt_port}/api/nodes", auth=config.amqp_admin(), timeout=5)
        except requests.RequestException:
            continue
        if response.ok:
            return {entry["name"] for entry in response.json() if entry.get("running")}
    return set()


def join(n, first):
    """Make ``n`` a member of ``first``'s cluster (nothing when it is one already)."""
    if first.name in members(n)[0]:
        return
    stack.log(f"joining {n.name} to {first.name}")
    ctl(n, "stop_app")
    ctl(n, "join_cluster", first.name)
    ctl(n, "start_app")
    ctl(n, "await_startup")


# --- the cluster ---------------------------------------------------------------------------------

def start_cluster():
    if shutil.which("rabbitmq-server") is None:
        raise stack.StackError("rabbitmq-server is not installed: run scripts/bootstrap.sh")
    cluster_dir().mkdir(parents=True, exist_ok=True)
    everyone = nodes()
    launched = [n for n in everyone if launch_node(n)]
    for n in launched:
        await_node(n)
    for n in everyone[1:]:
        join(n, everyone[0])
    ctl(everyone[0], "await_online_nodes", str(NODE_COUNT), "--timeout", "120", timeout=150)
    stack.log(f"cluster running: {', '.join(n.name for n in everyone)}")


def apply_definitions():
    """The service users and their permissions over the management API (cluster-wide), and the
    topology declared as the admin, with quorum queues."""
    from infra import definitions
    from tacoord import topology
    definitions.apply_over_api(definitions.service_passwords())
    stack.log(f"definitions applied (vhost {config.amqp_vhost()}, {topology.queue_type()} queues)")


def stop_cluster():
    for n in reversed(nodes()):
        stop_node(n.index)
    epmd = shutil.which("epmd") or next(iter(sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)
    if epmd:
        subprocess.run([str(epmd), "-port", str(epmd_port()), "-kill"], env=node_env(nodes()[0]),
                       capture_output=True)


# --- two instances of every service --------------------------------------------------------------

def run_dir():
    path = cluster_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def instance_ports(name, instance):
    step = INSTANCE_PORT_STEP * instance
    return config.http_port(name) + step, config.ops_port(name) + step


def instance_env(name, instance):
    http, ops = instance_ports(name, instance)
    return dict(os.environ, PYTHONPATH=str(config.PROJECT_ROOT), **{
        f"TACOORD_{name.upper()}_HTTP_PORT": str(http), f"TACOORD_{name.upper()}_OPS_PORT": str(ops)})


def start_instance(name, instance):
    pid_file = run_dir() / f"{name}-{instance + 1}.pid"
    if stack.pid_alive(pid_file):
        return
    http, ops = instance_ports(name, instance)
    stack.require_free(http, f"{name} #{instance + 1} HTTP")
    stack.require_free(ops, f"{name} #{instance + 1} metrics/health")
    with open(run_dir() / f"{name}-{instance + 1}.log", "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "services.run", name], cwd=config.PROJECT_ROOT,
                                   env=instance_env(name, instance), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    pid_file.write_text(str(process.pid))


def start_services():
    names = stack.available_services()
    for name in names:
        for instance in range(INSTANCES):
            start_instance(name, instance)
    for name in names:
        for instance in range(INSTANCES):
            pid_file = run_dir() / f"{name}-{instance + 1}.pid"
            stack.wait_until_ready(f"{name} #{instance + 1}", instance_ports(name, instance)[1],
                                   lambda pid_file=pid_file: stack.pid_alive(pid_file),
                                   run_dir() / f"{name}-{instance + 1}.log")
    stack.log(f"services ready, {INSTANCES} instances each: " + ", ".join(names))


def stop_services():
    for pid_file in sorted(run_dir().glob("*.pid")):
        pid = stack.pid_alive(pid_file)
        if pid:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                if not stack.pid_alive(pid_file):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)


# --- commands (python -m infra.cluster COMMAND) --------------------------------------------------

def up():
    start_cluster()
    apply_definitions()
    stack.start_mongo()
    stack.apply_indexes()


def down():
    stop_services()
    stop_cluster()
    stack.stop_mongo()
    stack.log("cluster stopped")


def status():
    running = running_nodes()
    for n in nodes():
        state = "up" if n.name in running else ("starting" if node_running(n) else "down")
        print(f"rabbitmq  {n.name:<22} {state:<8} amqp://127.0.0.1:{n.amqp_port}  "
              f"management http://127.0.0.1:{n.mgmt_port}/")
    mongo_up = stack.port_open(config.mongo_port()) if not stack.external_mongo() else True
    print(f"mongo     {'up' if mongo_up else 'down'}  {config.mongo_uri()}")
    for name in stack.SERVICE_ORDER:
        for instance in range(INSTANCES):
            http, ops = instance_ports(name, instance)
            alive = bool(stack.pid_alive(run_dir() / f"{name}-{instance + 1}.pid"))
            print(f"{name + ' #' + str(instance + 1):<12} {'up' if alive else 'down'}  http://127.0.0.1:{http}/  "
                  f"metrics http://127.0.0.1:{ops}/metrics")
    return 0 if len(running) == NODE_COUNT and mongo_up else 1


def run(command, node_index=None):
    """One command (``tacoord stack … --cluster``); the process's exit code."""
    commands = {"up": up, "services": start_services, "down": down, "status": status,
                "node-stop": stop_node, "node-start": start_node}
    if command not in commands:
        raise stack.StackError(f"{command} is not a cluster command")
    if command.startswith("node-") and node_index is None:
        raise stack.StackError(f"{command} needs the node's number (1 to {NODE_COUNT})")
    with cluster_environment():
        code = commands[command](*([node_index] if command.startswith("node-") else []))
    return code or 0


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m infra.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "services", "down", "status", "node-stop", "node-start"))
    parser.add_argument("node", nargs="?", type=int, help="node-stop / node-start: which node (1-3)")
    args = parser.parse_args(argv)
    return run(args.command, args.node)


if __name__ == "__main__":
    sys.exit(main())

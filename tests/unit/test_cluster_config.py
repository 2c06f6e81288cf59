"""What the services are given on a cluster: one URI per node, quorum queues, masked passwords."""
import pytest

from tacoord import config, topology


def test_every_node_becomes_a_failover_alternate_of_the_uri(monkeypatch):
    monkeypatch.delenv("AMQP_URI", raising=False)
    monkeypatch.setenv("TACOORD_AMQP_ADDRESSES", "127.0.0.1:5681, 127.0.0.1:5682,127.0.0.1:5683")
    assert config.amqp_uri(user="tacoord-needs", password="pw") == ";".join(
        f"pyamqp://tacoord-needs:pw@127.0.0.1:{port}/tacoord" for port in (5681, 5682, 5683))
    assert config.clustered()
    monkeypatch.setenv("TACOORD_AMQP_ADDRESSES", "127.0.0.1")
    with pytest.raises(SystemExit, match="not host:port"):
        config.amqp_addresses()


def test_one_node_is_not_a_cluster_and_an_explicit_uri_decides(monkeypatch):
    monkeypatch.delenv("TACOORD_AMQP_ADDRESSES", raising=False)
    monkeypatch.delenv("AMQP_URI", raising=False)
    assert not config.clustered() and ";" not in config.amqp_uri()
    monkeypatch.setenv("AMQP_URI", "pyamqp://u:p@a:5672/v;pyamqp://u:p@b:5672/v")
    assert config.clustered()


def test_on_a_cluster_every_queue_is_a_quorum_queue_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("TACOORD_QUEUE_TYPE", raising=False)
    monkeypatch.setenv("AMQP_URI", "pyamqp://u:p@a:5672/v;pyamqp://u:p@b:5672/v")
    assert topology.queue_type() == "quorum"
    for spec in topology.ALL_QUEUES:
        assert topology.kombu_queue(spec).queue_arguments["x-queue-type"] == "quorum"
    retry = topology.kombu_retry_queue(topology.NEEDS_INGRESS).queue_arguments
    assert retry["x-dead-letter-strategy"] == "at-least-once" and retry["x-overflow"] == "reject-publish"
    monkeypatch.setenv("TACOORD_QUEUE_TYPE", "classic")
    assert topology.kombu_queue(topology.NEEDS_INGRESS).queue_arguments is None


def test_matching_queue_alone_has_a_single_active_consumer(monkeypatch):
    monkeypatch.setenv("TACOORD_QUEUE_TYPE", "classic")
    single = {spec.name for spec in topology.ALL_QUEUES
              if (topology.kombu_queue(spec).queue_arguments or {}).get("x-single-active-consumer")}
    assert single == {"matching.events"}


def test_the_password_of_every_node_is_masked():
    uri = "pyamqp://u:secret1@a:5672/v;pyamqp://u:secret2@b:5672/v"
    assert "secret" not in config.masked(uri) and config.masked(uri).count("@") == 2

"""Service broker users' passwords must survive rabbitmqctl's command-line parsing."""
import json

from infra import definitions
from tacoord import config


def test_generated_passwords_never_look_like_an_option(tmp_path, monkeypatch):
    monkeypatch.setenv("TACOORD_STATE_DIR", str(tmp_path))
    for _ in range(50):  # token_urlsafe gave a leading "-" to ~1 in 64 passwords
        (tmp_path / "amqp-service-users.json").unlink(missing_ok=True)
        passwords = definitions.service_passwords()
        assert set(passwords) == set(config.SERVICES)
        assert not any(p.startswith("-") for p in passwords.values()), passwords


def test_a_stored_password_starting_with_a_dash_is_replaced_and_others_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TACOORD_STATE_DIR", str(tmp_path))
    first = definitions.service_passwords()
    stored = json.loads((tmp_path / "amqp-service-users.json").read_text())
    stored["needs"]["password"] = "-BK_k90Izvyivciy_7AduDYZWDD6gJiN"
    (tmp_path / "amqp-service-users.json").write_text(json.dumps(stored))

    again = definitions.service_passwords()

    assert not again["needs"].startswith("-")
    assert {k: v for k, v in again.items() if k != "needs"} == {k: v for k, v in first.items() if k != "needs"}
    saved = json.loads((tmp_path / "amqp-service-users.json").read_text())
    assert saved["needs"]["password"] == again["needs"]

"""`tacoord credentials`: issue, list and revoke API keys against the real database."""
import json

import requests
from click.testing import CliRunner

from services.cli import main
from services.needs.service import NeedsService
from tacoord.testing import wait_until


def cli(sandbox, *args):
    return CliRunner().invoke(main, ["--vhost", sandbox.vhost, "--db-prefix", sandbox.prefix, *args])


def test_an_issued_key_works_until_it_is_revoked(sandbox, start):
    start(NeedsService)
    issued = cli(sandbox, "credentials", "issue", "--role", "state", "--subject", "ken", "--label", "focal point")
    assert issued.exit_code == 0, issued.output
    key = issued.stdout.strip()
    assert key.startswith("tck_")
    key_id = key.split("_")[1]
    headers = {"Authorization": f"Bearer {key}"}
    assert requests.get(sandbox.url("needs", "/needs"), headers=headers, timeout=5).status_code == 200

    listed = cli(sandbox, "credentials", "list", "--json")
    assert listed.exit_code == 0, listed.output
    [record] = [k for k in json.loads(listed.stdout) if k["_id"] == key_id]
    assert (record["role"], record["subject"], record["label"], record["revoked"]) == \
        ("state", "KEN", "focal point", False)
    assert "secret_sha256" not in record and key.split("_", 2)[2] not in listed.stdout

    revoked = cli(sandbox, "credentials", "revoke", key_id)
    assert revoked.exit_code == 0, revoked.output
    wait_until(lambda: requests.get(sandbox.url("needs", "/needs"), headers=headers,
                                    timeout=5).status_code == 401, timeout=10, message="401 after revocation")
    assert " revoked " in cli(sandbox, "credentials", "list").stdout


def test_credential_mistakes_end_with_one_clear_line_and_a_non_zero_exit(sandbox):
    unknown_key = cli(sandbox, "credentials", "revoke", "000000000000")
    assert unknown_key.exit_code == 1
    assert "Error: no key '000000000000'" in unknown_key.output

    bad_role = cli(sandbox, "credentials", "issue", "--role", "king", "--subject", "KEN")
    assert bad_role.exit_code == 2 and "'king' is not one of" in bad_role.output

    bad_state = cli(sandbox, "credentials", "issue", "--role", "state", "--subject", "XXX")
    assert bad_state.exit_code == 2 and "unknown State 'XXX'" in bad_state.output

    no_database = CliRunner().invoke(main, ["--mongo-uri", "mongodb://127.0.0.1:1/", "credentials", "list"])
    assert no_database.exit_code == 1
    assert "cannot reach the database at mongodb://127.0.0.1:1/" in no_database.output
    assert "Traceback" not in no_database.output

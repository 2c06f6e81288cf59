"""``tacoord audit``: the operator's commands on the audit log (added to the command line by ``services/cli.py``).

    tacoord audit history ENTITY_TYPE ENTITY_ID [--json] | verify
"""
import click

from tacoord import config
from tacoord.cli import emit


@click.group()
def audit():
    """Read the audit log (directly from the audit database)."""


def _audit_collection(settings, client):
    return client[config.db_name("audit", settings.db_prefix)]["audit"]


@audit.command("history")
@click.argument("entity_type")
@click.argument("entity_id")
@click.option("--json", "as_json", is_flag=True, help="Print the full records as JSON.")
@click.pass_obj
def audit_history(settings, entity_type, entity_id, as_json):
    """Every audit record about one entity, oldest first (e.g. `audit history need KEN-9-2026-1`)."""
    client = settings.mongo()
    entity = f"{entity_type}:{entity_id}"
    records = [{k: v for k, v in r.items() if k != "_id"}
               for r in _audit_collection(settings, client).find({"entities": entity}, sort=[("seq", 1)])]
    client.close()
    if as_json:
        emit({"entity": entity, "count": len(records), "records": records})
        return
    if not records:
        raise click.ClickException(f"no audit records about {entity}")
    for r in records:
        extra = f"  reason: {r['reason']}" if r.get("reason") else ""
        click.echo(f"#{r['seq']}  {r.get('occurred_at') or r.get('recorded_at')}  {r['type']}  "
                   f"source={r.get('source')}  actor={r.get('actor')}{extra}")


@audit.command("verify")
@click.pass_obj
def audit_verify(settings):
    """Check the audit log's hash chain; exit 1 at the first altered, missing or reordered record."""
    from services.audit import domain
    client = settings.mongo()
    collection = _audit_collection(settings, client)
    problem = domain.verify_chain(collection.find({}, sort=[("seq", 1)]))
    count = collection.count_documents({})
    client.close()
    if problem:
        raise click.ClickException(f"audit chain broken at seq {problem['seq']}: {problem['problem']}")
    click.echo(f"audit chain intact ({count} records)")

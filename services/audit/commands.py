"""``tacoord audit``: the operator's commands on the audit log (added to the command line by ``services/cli.py``).

    tacoord audit history ENTITY_TYPE ENTITY_ID [--json] | verify
    tacoord trace CORRELATION_ID | ENTITY_TYPE:ENTITY_ID [--logs DIR] [--json]
"""
from pathlib import Path

import click

from tacoord import config, logs
from tacoord.cli import emit


@click.group()
def audit():
    """Read the audit log (directly from the audit database)."""


def _audit_database(settings, client):
    return client[config.db_name("audit", settings.db_prefix)]


@audit.command("history")
@click.argument("entity_type")
@click.argument("entity_id")
@click.option("--json", "as_json", is_flag=True, help="Print the full records as JSON.")
@click.pass_obj
def audit_history(settings, entity_type, entity_id, as_json):
    """Every audit record about one entity in the order things happened (e.g. `audit history need KEN-9-2026-1`)."""
    from services.audit import dependencies, domain
    client = settings.mongo()
    entity = f"{entity_type}:{entity_id}"
    try:
        records = dependencies.history(_audit_database(settings, client), entity, limit=None)
    finally:
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
        for line in domain.describe_changes(r.get("changes")):
            click.echo(f"    {line}")


@audit.command("verify")
@click.pass_obj
def audit_verify(settings):
    """Check the audit log's hash chain and its head anchor; exit 1 at the first altered, missing
    or reordered record, or an end deleted or rewritten."""
    from services.audit import dependencies
    client = settings.mongo()
    try:
        database = _audit_database(settings, client)
        problem = dependencies.verify(database)
        count = database[dependencies.AUDIT].count_documents({})
    finally:
        client.close()
    if problem:
        raise click.ClickException(f"audit chain broken at seq {problem['seq']}: {problem['problem']}")
    click.echo(f"audit chain intact ({count} records)")


@click.command("trace")
@click.argument("story")
@click.option("--logs", "log_dir", default=None,
              help="Directory of the services' JSON log files (default: <state dir>/run); '' for none.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.pass_obj
def trace(settings, story, log_dir, as_json):
    """One story's path across the services in the order things happened: every event and
    rejection the audit log holds with this correlation id, and the log lines that carry it.
    STORY is a correlation id, or an entity (`need:KEN-9-…`): then every story it took part in."""
    from services.audit import dependencies, domain
    client = settings.mongo()
    try:
        database = _audit_database(settings, client)
        stories = ([story] if ":" not in story else
                   sorted({r["correlation_id"] for r in dependencies.history(database, story, limit=None)
                           if r.get("correlation_id")}))
        records = [r for correlation_id in stories for r in dependencies.story(database, correlation_id, limit=None)]
    finally:
        client.close()
    directory = Path(log_dir) if log_dir else (config.state_dir() / "run" if log_dir is None else None)
    files = sorted(directory.glob("*.log")) if directory is not None and directory.is_dir() else []
    lines = [line for correlation_id in stories for line in logs.read(files, correlation_id=correlation_id)]
    entries = domain.trace(records, lines)
    if as_json:
        emit({"story": story, "correlation_ids": stories, "count": len(entries), "entries": entries})
        return
    if not entries:
        raise click.ClickException(f"nothing recorded or logged for {story}")
    for e in entries:
        extra = "".join(f"  {k}={e[k]}" for k in ("actor", "event_id", "reason") if e.get(k))
        what = e["what"] if e["from"] == "audit" else f"[{e.get('level')}] {e['what']}"
        click.echo(f"{e['at']}  {e.get('service') or '-':<18} {what}{extra}")

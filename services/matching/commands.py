"""``tacoord matching``: the operator's commands on matching's store (added to the command line by ``services/cli.py``).

    tacoord matching rebuild --audit-url URL --key KEY [--yes] [--replace] [--force]
"""
import os
import sys

import click

from tacoord import config
from tacoord.cli import emit


@click.group()
def matching():
    """Operate the matching service's store (rebuild it from the audit log's event feed)."""


@matching.command("rebuild")
@click.option("--audit-url", metavar="URL",
              help="Base URL of the audit service (default: http://127.0.0.1:<its HTTP port>).")
@click.option("--key", "--api-key", "key", metavar="TCK", help="Operator API key (default: $TACOORD_API_KEY).")
@click.option("--ops-url", metavar="URL",
              help="Matching's ops URL, checked to be down (default: http://127.0.0.1:<its ops port>; '' skips).")
@click.option("--force", is_flag=True, help="Rebuild although the matching service seems to be running.")
@click.option("--replace", is_flag=True, help="Drop a store that is not empty, then rebuild it.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before writing.")
@click.option("--page-size", default=1000, show_default=True, type=click.IntRange(1, 1000),
              help="Events per feed request.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_obj
def matching_rebuild(settings, audit_url, key, ops_url, force, replace, yes, page_size, quiet):
    """Rebuild the matching store from the audit service's event feed, with the service stopped.

    \b
    Reads need.*, offer.*, expert.*, workshop.*, checklist_assistance.* and
    matching's own match.*, gap.*, duplication.* events over HTTP, replays them
    through the matching rules and writes the views, matches, alerts,
    proposals and processed ids a restarted service loads, so it emits
    nothing twice. Refused while matching runs (consumers on its queue, or
    its ops port answers) unless --force, and when the store is not empty
    unless --replace. Prints a JSON summary.

    \b
    Example:
      tacoord matching rebuild --audit-url http://127.0.0.1:8006 --key $OPERATOR_KEY --yes
    """
    from tqdm import tqdm

    from services.matching import restore
    audit_url = audit_url or f"http://127.0.0.1:{config.http_port('audit')}"
    ops_url = f"http://127.0.0.1:{config.ops_port('matching')}" if ops_url is None else ops_url
    key = key or os.environ.get("TACOORD_API_KEY")
    if not key:
        raise click.UsageError("an operator API key is needed: --key tck_… or TACOORD_API_KEY")
    client = settings.mongo()
    database = client[config.db_name("matching", settings.db_prefix)]
    bar = tqdm(unit=" seq", desc="reading the audit feed", disable=quiet, file=sys.stderr)

    def progress(page):
        bar.total = max(page["head"], page["next"])
        bar.update(page["next"] - bar.n)

    def confirm(summary):
        bar.close()
        if yes:
            return True
        click.echo(f"replayed {summary['events_read']} events: {summary['needs']} needs, {summary['offers']} offers, "
                   f"{summary['experts']} experts, {summary['matches']} matches "
                   f"({summary['active_matches']} active), {summary['alerts']} alerts", err=True)
        return click.confirm(f"write them into {database.name}"
                             + (" (dropping what it holds)" if summary["replaced"] else "") + "?", err=True)

    try:
        feed = restore.AuditFeed(audit_url, key, page_size=page_size)
        summary = restore.restore(database, feed, amqp_uri=settings.amqp_uri, ops_url=ops_url, force=force,
                                  replace=replace, confirm=confirm, progress=progress)
    except restore.RestoreError as exc:
        raise click.ClickException(str(exc))
    finally:
        bar.close()
        client.close()
    emit(summary)
    if summary.get("differing_matches"):
        click.echo("warning: the rebuilt active matches differ from those the live service emitted "
                   "(see differing_matches): the audit log's order differs from matching's", err=True)

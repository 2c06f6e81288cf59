"""``tacoord import iati``: supply's command, put by the composition root (``services/cli.py``) in
place of the core's generic upload, under the same name.

    tacoord import iati FILE --dry-run [--json] [--map MAP.json]     # offline: no stack, nothing stored
    tacoord import iati FILE [--key tck_…] [--url URL] [--json]      # upload to POST /offers/import/iati
    tacoord [--amqp-uri URI] [--mongo-uri URI] [--db-prefix P] import iati FILE --direct [--actor A]

``--direct`` writes to the supply database and publishes through the outbox with the repository a
worker gets (``tacoord.store.opened``). Every way prints the same report, one activity a few lines
(``--json``: the report as JSON). A document that is not IATI 2.01–2.03 exits 2.
"""
from pathlib import Path

import click

from services.supply import iati
from tacoord import config
from tacoord.cli import emit, upload


class NotIati(click.ClickException):
    exit_code = 2


def _amounts(amounts):
    parts = []
    for currency, sums in amounts.items():
        named = ", ".join(f"{kind} {value:,.2f}" for kind, value in sums.items() if value)
        parts.append(f"{currency} {named or '0'}")
    return "; ".join(parts)


def report_lines(report, dry_run=False):
    """The report in words: one line per activity, then what it covers, its money and warnings."""
    for result in report.get("results", []):
        line = f"#{result['position']:<4} {result['iati_identifier'] or '(no identifier)'}  {result['outcome']}"
        if result.get("offer_id"):
            line += f" → {result['offer_id']}"
        if result.get("reason"):
            line += f": {result['reason']}"
        yield line
        if "level" in result:
            where = ", ".join(result["states"] + result["regions"]) or "every State"
            what = ", ".join(f"art. {a}" for a in result["articles"]) or ", ".join(
                f"chapter {c}" for c in result["chapters"])
            period = f"{result['period_start']} – {result['period_end'] or 'open-ended'}"
            yield (f"      {result['level']}: {where} · {what} · {', '.join(result['forms'])} · {period} · "
                   f"anti-corruption share {result['share']:.0%}")
            if result["amounts"]:
                yield f"      reported: {_amounts(result['amounts'])}"
                yield f"      anti-corruption: {_amounts(result['anti_corruption_amounts'])}"
        for warning in result.get("warnings", []):
            yield f"      warning: {warning}"
    imported = "would be imported" if dry_run else "imported"
    yield (f"{report.get('activities', 0)} activities: {report.get('imported', 0)} {imported}, "
           f"{report.get('updated', 0)} updated, {report.get('unchanged', 0)} unchanged, "
           f"{report.get('skipped', 0)} skipped")


def _direct(settings, xml_bytes, sector_map, actor):
    from services.supply.dependencies import SupplyStore
    from tacoord.store import opened
    _, activities = iati.parse(xml_bytes)
    overrides = {config.MONGO_URI_KEY: settings.mongo_uri,
                 config.DB_NAME_KEY: config.db_name("supply", settings.db_prefix)}
    if settings.amqp_given:   # else supply's own broker user, as the service
        overrides[config.AMQP_URI_KEY] = settings.amqp_uri
    container_config = config.service_config("supply", **overrides)
    with opened(SupplyStore, container_config) as repository:
        return repository.import_iati(activities, sector_map, actor)


@click.command("iati")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Report what an import would do, offline: no stack, nothing stored.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--map", "map_file", type=click.File("r", encoding="utf-8"),
              help="JSON: extra DAC sector code → {articles, chapters, forms} (--dry-run and --direct).")
@click.option("--direct", is_flag=True, help="Import into the supply database (global --mongo-uri, --amqp-uri, "
                                             "--db-prefix) instead of uploading to the service.")
@click.option("--actor", default="operator:cli", show_default=True, help="Who the events name (--direct).")
@click.option("--key", metavar="TCK", help="API key for the upload (default: $TACOORD_API_KEY).")
@click.option("--url", metavar="URL", help="Base URL of the supply service (default: http://127.0.0.1:<its port>).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_obj
def iati_import(settings, file, dry_run, as_json, map_file, direct, actor, key, url, quiet):
    """Import offers from an IATI activity file (2.01–2.03) and print the report per activity.

    By default FILE is uploaded to the supply service (POST /offers/import/iati), which uses its
    own sector map. --dry-run reads it here, offline, and says for each activity whether it would
    be imported, and why not, its State(s) or regions, UNCAC articles and forms, anti-corruption
    share, amounts and warnings.
    """
    if dry_run and direct:
        raise click.UsageError("--dry-run stores nothing; --direct stores: give one of them")
    if dry_run or direct:
        try:
            sector_map = iati.load_map(map_file.read() if map_file else None)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--map")
        xml_bytes = Path(file).read_bytes()
        try:
            report = (iati.dry_run(xml_bytes, sector_map) if dry_run
                      else _direct(settings, xml_bytes, sector_map, actor))
        except iati.IatiError as exc:
            raise NotIati(f"{file}: {exc}")
    else:
        if map_file:
            raise click.UsageError("--map is read by --dry-run and --direct; the service uses its own sector map")
        report = upload("iati", file, url, key, "application/xml", quiet)
    if as_json or "results" not in report:
        emit(report)
        return
    for line in report_lines(report, dry_run):
        click.echo(line)

"""``tacoord``: the operator's command line, the core's part of it.

    tacoord deadletters list|show ID|replay ID|replay --all|discard ID|purge
    tacoord credentials issue --role R --subject S [--label L] | revoke KEY_ID | list
    tacoord import needs|offers|iati FILE
    tacoord asyncapi [--output FILE] [--check]
    tacoord openapi [--output FILE] [--check]

``main`` is the group; the commands owned elsewhere (``stack`` in
``infra/commands.py``, ``audit`` and ``matching`` in
``services/<name>/commands.py``), ``asyncapi``, which needs every
service's schemas registered first, and ``openapi``, which needs every
service's routes, are added to it by the composition root
``services/cli.py``, which the ``tacoord`` console script runs
(``python -m services.cli`` from a checkout).

Settings come from the environment (``tacoord/config.py``: ``AMQP_URI``,
``MONGO_URI``, ``TACOORD_DB_PREFIX``, ``TACOORD_AMQP_VHOST``…); the options
before the command override them (``tacoord --vhost v --db-prefix p …``).
Every failure prints one line ``Error: …`` and exits non-zero (1 for a
failed operation, 2 for bad usage).
"""
import json
import os
import sys
import warnings
from pathlib import Path

import click

# nameko imports eventlet, which warns on every import; an operator's CLI need not show it.
warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")

from tacoord import auth, config

IMPORTS = {
    # what: (service, path, description)
    "needs": ("needs", "/needs/import", "States' needs (the needs service's bulk import)"),
    "offers": ("supply", "/offers/import", "donors' offers (the supply service's bulk import)"),
    "iati": ("supply", "/offers/import/iati", "offers from an IATI activity file (supply service)"),
}
CONTENT_TYPES = {".json": "application/json", ".csv": "text/csv", ".xml": "application/xml",
                 ".ndjson": "application/x-ndjson", ".jsonl": "application/x-ndjson"}


class Settings:
    """Where the CLI connects: the environment, overridden by the global options."""

    def __init__(self, amqp_uri=None, vhost=None, mongo_uri=None, db_prefix=None):
        self._amqp_uri = amqp_uri
        self.vhost = vhost
        self.amqp_given = bool(amqp_uri or vhost)   # else a service's command may use its own broker user
        self.mongo_uri = mongo_uri or config.mongo_uri()
        self.db_prefix = db_prefix or config.db_prefix()

    @property
    def amqp_uri(self):
        if self._amqp_uri:
            return self._amqp_uri
        return config.amqp_uri(vhost=self.vhost) if self.vhost else config.amqp_uri()

    def mongo(self):
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError
        client = MongoClient(self.mongo_uri, serverSelectionTimeoutMS=3000)
        try:
            client.admin.command("ping")
        except PyMongoError:
            client.close()
            raise click.ClickException(f"cannot reach the database at {self.mongo_uri} (is the stack up? "
                                       "`tacoord stack up`)")
        return client


def _version():
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("tacoord")
    except PackageNotFoundError:
        return "0.1.0 (not installed; run from a checkout)"


def emit(data):
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--amqp-uri", metavar="URI", help="Broker URI (default: $AMQP_URI or the local stack's).")
@click.option("--vhost", metavar="VHOST", help="RabbitMQ vhost on the local broker (instead of --amqp-uri).")
@click.option("--mongo-uri", metavar="URI", help="Database URI (default: $MONGO_URI or the local stack's).")
@click.option("--db-prefix", metavar="PREFIX", help="Database name prefix (default: $TACOORD_DB_PREFIX or tacoord).")
@click.version_option(version=_version(), prog_name="tacoord")
@click.pass_context
def main(ctx, amqp_uri, vhost, mongo_uri, db_prefix):
    """Operate tacoord: the local stack, dead letters, API keys, the audit log and bulk imports.

    \b
    Examples:
      tacoord stack up && tacoord stack services
      tacoord credentials issue --role state --subject KEN --label "Kenya focal point"
      tacoord deadletters list
      tacoord deadletters replay 3f0c…
      tacoord audit history need KEN-9-2026-1
      tacoord import needs needs.json --key tck_…
    """
    ctx.obj = Settings(amqp_uri, vhost, mongo_uri, db_prefix)


# --- dead letters ------------------------------------------------------------

@main.group()
def deadletters():
    """Inspect and replay messages parked in the dead-letter queue (tacoord.dead-letters)."""


def _dead_letters(settings):
    from tacoord.deadletters import DeadLetters
    from nameko.utils import sanitize_url
    try:
        return DeadLetters(settings.amqp_uri).__enter__()
    except Exception as exc:
        raise click.ClickException(f"cannot reach the broker at {sanitize_url(settings.amqp_uri)}: {exc}")


def _dlq_action(settings, action):
    from tacoord.deadletters import DeadLetterError
    dlq = _dead_letters(settings)
    try:
        return action(dlq)
    except DeadLetterError as exc:
        raise click.ClickException(str(exc))
    finally:
        dlq.__exit__(None, None, None)


@deadletters.command("list")
@click.option("--limit", default=100, show_default=True, help="Show at most this many (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (full headers and bodies).")
@click.pass_obj
def deadletters_list(settings, limit, as_json):
    """List parked messages without removing or reordering them."""
    def run(dlq):
        return dlq.depth(), dlq.peek(limit)
    depth, letters = _dlq_action(settings, run)
    if as_json:
        emit({"depth": depth, "dead_letters": [letter.as_dict() for letter in letters]})
        return
    click.echo(f"{depth} dead letter(s) in tacoord.dead-letters" + (f"; showing {len(letters)}"
                                                                      if depth > len(letters) else ""))
    for letter in letters:
        reason = (letter.reason or "")
        reason = reason if len(reason) <= 100 else reason[:97] + "..."
        click.echo(f"{letter.id}  {letter.failed_at or '-'}  {letter.queue or '-'}  "
                   f"{letter.event_type or '-'}  [{letter.kind or '-'}]  {reason}")


@deadletters.command("show")
@click.argument("dead_letter_id")
@click.pass_obj
def deadletters_show(settings, dead_letter_id):
    """Show one parked message (headers, reason and body) as JSON; it stays in the queue."""
    emit(_dlq_action(settings, lambda dlq: dlq.get(dead_letter_id)).as_dict())


@deadletters.command("replay")
@click.argument("dead_letter_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every parked message.")
@click.option("--body", "body_file", type=click.File("rb"),
              help="Publish this JSON file instead of the parked body (a corrected message).")
@click.pass_obj
def deadletters_replay(settings, dead_letter_id, replay_all, body_file):
    """Republish a parked message to its original exchange and routing key, then remove it.

    The publish is confirmed by the broker before the message leaves the
    dead-letter queue. A message that fails again is parked again, with a
    new id.
    """
    if replay_all == bool(dead_letter_id):
        raise click.UsageError("give either one DEAD_LETTER_ID or --all")
    if replay_all and body_file:
        raise click.UsageError("--body replaces one message's body; it cannot be used with --all")
    body = None
    if body_file:
        try:
            body = json.loads(body_file.read())
        except ValueError as exc:
            raise click.ClickException(f"{body_file.name} is not JSON: {exc}")
    if replay_all:
        letters = _dlq_action(settings, lambda dlq: dlq.replay_all())
        for letter in letters:
            click.echo(f"replayed {letter.id} to {letter.exchange or '(default)'} {letter.routing_key}")
        click.echo(f"{len(letters)} dead letter(s) replayed")
        return
    letter = _dlq_action(settings, lambda dlq: dlq.replay(dead_letter_id, body=body))
    click.echo(f"replayed {letter.id} to {letter.exchange or '(default)'} {letter.routing_key}"
               + (" with the corrected body" if body is not None else ""))


@deadletters.command("discard")
@click.argument("dead_letter_id")
@click.pass_obj
def deadletters_discard(settings, dead_letter_id):
    """Remove one parked message without replaying it (the audit log keeps its record)."""
    letter = _dlq_action(settings, lambda dlq: dlq.discard(dead_letter_id))
    click.echo(f"discarded {letter.id}")


@deadletters.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def deadletters_purge(settings, yes):
    """Remove every parked message (the audit log keeps their records)."""
    if not yes:
        click.confirm("Remove every message from tacoord.dead-letters?", abort=True)
    count = _dlq_action(settings, lambda dlq: dlq.purge())
    click.echo(f"purged {count} dead letter(s)")


# --- credentials ---------------------------------------------------------------

@main.group()
def credentials():
    """Issue, revoke and list API keys (stored hashed in <prefix>_auth.credentials)."""


@credentials.command("issue")
@click.option("--role", required=True, type=click.Choice(auth.ROLES), help="What the key may do.")
@click.option("--subject", required=True,
              help="Whom it acts for: ISO3 code (state), IATI org id (donor), network or partner id, '*' (operator).")
@click.option("--label", default="", help="A note for whoever lists the keys later.")
@click.pass_obj
def credentials_issue(settings, role, subject, label):
    """Issue a key and print it once (only its hash is stored)."""
    if role == "state":
        from tacoord import reference
        if subject.upper() not in reference.states():
            raise click.BadParameter(f"unknown State {subject!r} (use its ISO3 code, e.g. KEN)",
                                     param_hint="--subject")
        subject = subject.upper()
    if role == "operator" and subject != "*":
        raise click.BadParameter("an operator key acts for everyone: use --subject '*'", param_hint="--subject")
    client = settings.mongo()
    key = auth.issue(auth.auth_db(client, settings.db_prefix), role, subject, label)
    client.close()
    click.echo(key)
    click.echo(f"issued key {key.split('_')[1]} ({role}:{subject}); it is shown only once", err=True)


@credentials.command("revoke")
@click.argument("key_id")
@click.pass_obj
def credentials_revoke(settings, key_id):
    """Revoke a key by its id (the part after tck_; services notice within 5 seconds)."""
    if key_id.startswith("tck_"):
        key_id = key_id.split("_")[1]
    client = settings.mongo()
    found = auth.revoke(auth.auth_db(client, settings.db_prefix), key_id)
    client.close()
    if not found:
        raise click.ClickException(f"no key {key_id!r}")
    click.echo(f"revoked {key_id}")


@credentials.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def credentials_list(settings, as_json):
    """List keys (id, role, subject, label, revoked); secrets are never stored or shown."""
    client = settings.mongo()
    keys = auth.list_credentials(auth.auth_db(client, settings.db_prefix))
    client.close()
    if as_json:
        emit(keys)
        return
    for key in keys:
        state = "revoked" if key.get("revoked") else "active"
        click.echo(f"{key['_id']}  {key['role']:<8}  {key['subject']:<14}  {state:<7}  "
                   f"{key.get('issued_at', '')}  {key.get('label') or ''}")
    click.echo(f"{len(keys)} key(s)", err=True)


# --- contract ------------------------------------------------------------------

def _document_command(name, title, render):
    """A command that writes (or, with ``--check``, compares) one generated document, docs/<name>.json."""
    default_path = config.PROJECT_ROOT / "docs" / f"{name}.json"

    @click.command(name, help=f"Generate {title}.")
    @click.option("--output", "-o", default=None, metavar="FILE",
                  help=f"Where to write it (default: docs/{default_path.name} of this checkout; '-' for stdout).")
    @click.option("--check", is_flag=True, help="Write nothing; exit 1 if FILE differs from a fresh generation.")
    def command(output, check):
        text = render()
        path = Path(output) if output and output != "-" else default_path
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                raise click.ClickException(f"{path} is out of date: run `tacoord {name} -o {path}`")
            click.echo(f"{path} is up to date")
            return
        if output == "-":
            click.echo(text, nl=False)
            return
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path}", err=True)

    return command


def asyncapi_command(register_schemas):
    """The ``asyncapi`` command; ``register_schemas()`` registers the payload schemas it documents."""

    def render():
        from tacoord import asyncapi
        register_schemas()
        return asyncapi.render()
    return _document_command("asyncapi", "the AsyncAPI 2.6.0 document of the AMQP interface from the registered "
                             "schemas", render)


def openapi_command(http_apis):
    """The ``openapi`` command; ``http_apis()`` gives ``{service: (routes, summary)}`` (``services.http_apis``)."""

    def render():
        from tacoord import openapi
        return openapi.render(openapi.document(http_apis()))
    return _document_command("openapi", "the OpenAPI 3.1 document of every service's HTTP API, as the gateway "
                             "serves them (/api/<service>/...), from the routes' declarations", render)


# --- imports -------------------------------------------------------------------

class _ProgressFile:
    """A file that advances a progress bar as requests streams it (Content-Length is set)."""

    def __init__(self, path, bar):
        self.file = open(path, "rb")
        self.size = os.path.getsize(path)
        self.bar = bar

    def __len__(self):
        return self.size

    def read(self, size=-1):
        chunk = self.file.read(size)
        self.bar.update(len(chunk))
        return chunk

    def close(self):
        self.file.close()


def upload(what, file, url=None, key=None, content_type=None, quiet=False):
    """POST ``file`` to the import route of ``what`` (``IMPORTS``) and return the summary it answers;
    ClickException naming the cause when it is refused or unreachable. Commands owned elsewhere
    (``tacoord import iati``, supply's) upload through it."""
    import requests
    from tqdm import tqdm
    service, path, _ = IMPORTS[what]
    key = key or os.environ.get("TACOORD_API_KEY")
    if not key:
        raise click.UsageError("an API key is needed: --key tck_… or TACOORD_API_KEY")
    base = (url or f"http://127.0.0.1:{config.http_port(service)}").rstrip("/")
    content_type = content_type or CONTENT_TYPES.get(Path(file).suffix.lower(), "application/octet-stream")
    size = os.path.getsize(file)
    with tqdm(total=size, unit="B", unit_scale=True, desc=f"uploading {Path(file).name}",
              disable=quiet or size < 256 * 1024, file=sys.stderr) as bar:
        body = _ProgressFile(file, bar)
        try:
            response = requests.post(f"{base}{path}", data=body, timeout=(5, 600), headers={
                "Authorization": f"Bearer {key}", "Content-Type": content_type})
        except requests.RequestException as exc:
            raise click.ClickException(f"cannot reach the {service} service at {base}: {exc}")
        finally:
            body.close()
    try:
        result = response.json()
    except ValueError:
        result = None
    if response.status_code >= 400:
        if response.status_code == 413:
            detail = "file too large for one request (TACOORD_MAX_BODY_BYTES); split it"
        elif response.status_code in (404, 405) and not isinstance(result, dict):
            detail = f"the {service} service at {base} has no import route POST {path} (is it up to date?)"
        elif response.status_code == 401 and not isinstance(result, dict):
            detail = "the API key was not accepted"
        elif isinstance(result, dict):
            detail = result.get("error") or result
            if result.get("details"):
                detail = f"{detail}: " + "; ".join(result["details"][:20])
        else:
            detail = response.text[:500] if "<html" not in response.text[:500].lower() else response.reason
        raise click.ClickException(f"import refused by {service} ({response.status_code}): {detail}")
    return result if result is not None else {"status": response.status_code, "body": response.text[:2000]}


def _import(what, file, url, key, content_type, quiet):
    emit(upload(what, file, url, key, content_type, quiet))


def _import_command(what):
    service, _, description = IMPORTS[what]

    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--key", metavar="TCK", help="API key (default: $TACOORD_API_KEY).")
    @click.option("--url", metavar="URL",
                  help=f"Base URL of the {service} service (default: http://127.0.0.1:<its HTTP port>).")
    @click.option("--content-type", help="Content-Type to send (default: from the file extension).")
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    def command(file, key, url, content_type, quiet):
        _import(what, file, url, key, content_type, quiet)

    command.__doc__ = f"Upload FILE of {description} and print the summary."
    return command


@main.group("import")
def import_():
    """Bulk-import files through the services' HTTP import routes.

    The composition root may put a service's own command in place of a generic one
    (``services/cli.py``: ``import iati`` is supply's, with an offline ``--dry-run``).
    """


for _what in IMPORTS:
    import_.command(_what)(_import_command(_what))

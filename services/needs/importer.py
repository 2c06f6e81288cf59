"""Import a self-assessment checklist export (CSV or JSON; one file, many States).

    python -m services.needs.importer checklist.csv                     # straight into the store
    python -m services.needs.importer checklist.json --url http://127.0.0.1:8001 --key tck_…

Without ``--url`` the file goes straight into the needs database and its
events to the broker, through the repository a needs worker gets
(``dependencies.opened``: ``MONGO_URI``, ``TACOORD_DB_PREFIX``, and
``AMQP_URI`` or else the needs service's broker user), as the operator on
this host. With ``--url`` it is sent to ``POST /needs/import``
in chunks with an operator or partner key (``--key`` or ``TACOORD_API_KEY``).
Either way: rows are validated here first (bad rows are reported with their
line and reason and skipped), a tqdm bar shows progress, and the summary
``{accepted, updated, unchanged, rejected: [{line, reason}]}`` is printed as
JSON. Exit status: 0, or 1 when any row was rejected, 2 when the file could
not be read at all.
"""
import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from services.needs import checklist

CHUNK = 500


def chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def merge(total, counts):
    for key in ("accepted", "updated", "unchanged"):
        total[key] += counts.get(key, 0)
    return total


def import_direct(rows, actor, chunk=CHUNK, progress=None):
    """Store validated rows through the repository a needs worker gets (same rules as the HTTP route)."""
    from services.needs import dependencies  # here: the --url mode needs no database or broker client

    total = {"accepted": 0, "updated": 0, "unchanged": 0}
    with dependencies.opened() as repository:
        for part in chunks(rows, chunk):
            merge(total, repository.import_needs([r.need for r in part], "needs", actor))
            if progress:
                progress(len(part))
    return total


def import_http(rows, url, key, chunk=CHUNK, progress=None):
    """Send validated rows to ``POST /needs/import`` as JSON arrays; rejected lines map back to the file."""
    import requests

    from services.needs.schemas import NeedSchema

    schema = NeedSchema()
    total = {"accepted": 0, "updated": 0, "unchanged": 0}
    rejected = []
    for part in chunks(rows, chunk):
        body = json.dumps([{k: v for k, v in schema.dump(r.need).items() if v is not None} for r in part])
        response = requests.post(f"{url.rstrip('/')}/needs/import", data=body.encode(), timeout=300,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.text[:500]}")
        summary = response.json()
        merge(total, summary)
        rejected += [{"line": part[e["line"] - 1].line, "reason": e["reason"]} for e in summary["rejected"]]
        if progress:
            progress(len(part))
    return total, rejected


def run(path, url=None, key=None, chunk=CHUNK, quiet=False):
    """Import one file; returns the summary dict."""
    fmt = checklist.format_of(filename=path)
    if fmt is None:
        raise checklist.ChecklistError(f"{path}: name the file .csv or .json")
    rows, errors = checklist.parse_all(Path(path).read_bytes(), fmt)
    with tqdm(total=len(rows), unit="row", desc=Path(path).name, disable=quiet, file=sys.stderr) as bar:
        if url:
            counts, remote = import_http(rows, url, key, chunk, bar.update)
        else:
            counts, remote = import_direct(rows, f"operator:{getpass.getuser()}", chunk, bar.update), []
    rejected = sorted([e.as_dict() for e in errors] + remote, key=lambda e: e["line"])
    return {**counts, "rejected": rejected}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m services.needs.importer", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="checklist export, .csv or .json")
    parser.add_argument("--url", help="needs service base URL (default: write straight into the store)")
    parser.add_argument("--key", default=os.environ.get("TACOORD_API_KEY"), help="API key for --url")
    parser.add_argument("--chunk", type=int, default=CHUNK, help="rows per batch (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.url and not args.key:
        parser.error("--url needs --key (or TACOORD_API_KEY)")
    try:
        summary = run(args.file, args.url, args.key, max(1, args.chunk), args.quiet)
    except (checklist.ChecklistError, OSError) as exc:
        print(f"cannot import {args.file}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 1 if summary["rejected"] else 0


if __name__ == "__main__":
    sys.exit(main())

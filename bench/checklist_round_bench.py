"""A whole checklist round imported over HTTP, timed until the matrix and the audit log hold it.

    python bench/checklist_round_bench.py [--states 193] [--first-article 5] [--last-article 62] [--keep-logs]

Needs the local stack (``tacoord stack up``). Like ``pipeline_bench.py`` it makes its own vhost,
database prefix and free ports and starts audit, needs, supply, matching and notify as real
processes. It writes the round as an operator's CSV export — every State of the reference data ×
articles 5–62, two forms each (193 × 58 = 11,194 rows) — publishes a few offers so matching has
real work, then runs the operator's import command over HTTP
(``python -m services.needs.importer FILE --url … --key …``, batches of 500 rows) and reports:

- time to the import command's answer;
- time until matching's ``GET /matrix`` holds every need and the audit log every ``need.submitted``
  (the round has *settled*; the anchor is 31.5 s, the target ≤ 10 s);
- ``GET /matrix?rows=article&cols=state`` with the round loaded (58 × 193 cells): the handler's own
  time from matching's ``tacoord_matching_http_request_seconds`` histogram, added for this (target ≤ 200 ms) and the
  client's time over loopback;
- CPU per need across the chain (services, database, RabbitMQ) and RSS per service (target ≤ 150 MB).

Figures are printed beside their anchors; nothing is asserted (speed targets live here, not in tests).
"""
import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import requests  # noqa: E402

from pipeline_bench import Stack, wait_for  # noqa: E402
from tacoord import reference  # noqa: E402
from tacoord.testing import stack_problem  # noqa: E402

SERVICES = ("audit", "needs", "supply", "matching", "notify")
ROUND = "2027-1"
DONORS = (("GB-GOV-1", "global", {}), ("XM-DAC-41114", "regional", {"scope_groups": ["AFRICAN"]}),
          ("SE-0", "bilateral", {"scope_states": ["KEN", "UGA"]}))
ANCHORS = {"import_s": 21.8, "settled_s": 31.5, "cpu_ms": 23.1}
TARGETS = {"settled_s": 10.0, "matrix_handler_ms": 200.0, "cpu_ms": 12.0, "rss_mb": 150.0}


def write_round(path, states, articles):
    """The operator's CSV export of a round: one row per State × article, two forms each."""
    forms = ("LEGAL_ADVICE", "CAPACITY_BUILDING")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("state", "article", "forms", "priority", "checklist_round", "languages", "description"))
        for state in states:
            for article in articles:
                priority = 1 if reference.chapter_of(article) in (2, 4) else 2
                writer.writerow((state, article, ";".join(forms), priority, ROUND, "en",
                                 f"Self-assessment gap, article {article}"))
    return len(states) * len(articles)


def matrix_needs(stack, headers):
    response = requests.get(stack.url("matching", "/matrix?rows=chapter&cols=regional_group"), headers=headers,
                            timeout=30)
    if response.status_code != 200:
        return 0
    return sum(cell["needs"] for cell in response.json()["cells"])


def submitted_records(stack):
    return stack.db("audit")["audit"].count_documents({"type": "need.submitted"})


def handler_seconds(stack, route):
    """(count, sum) of matching's own request timer for ``route`` (its ops port's /metrics)."""
    text = requests.get(f"http://127.0.0.1:{stack.ops['matching']}/metrics", timeout=10).text
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("tacoord_matching_http_request_seconds_") and f'route="{route}"' in line:
            name, value = line.rsplit(" ", 1)
            if name.split("{")[0].endswith("_count"):
                count += float(value)
            elif name.split("{")[0].endswith("_sum"):
                total += float(value)
    return count, total


def offers(stack):
    for provider, level, scope in DONORS:
        body = {"provider": provider, "provider_name": f"Benchmark {provider}", "level": level,
                "chapters": [2, 3, 4, 5], "forms": ["LEGAL_ADVICE", "CAPACITY_BUILDING"], "capacity": 500,
                "period_start": "2027-01-01", "period_end": "2029-12-31", "languages": ["en"], **scope}
        response = requests.post(stack.url("supply", "/offers"), json=body, timeout=30,
                                 headers=stack.headers("donor", provider))
        response.raise_for_status()


def row(label, value, unit, anchor=None, target=None):
    anchor_text = f"{anchor:g} {unit}" if anchor is not None else "—"
    target_text = f"≤ {target:g} {unit}" if target is not None else ""
    verdict = "" if target is None else (" ✔" if value <= target else " ✘")
    print(f"{label:<52} {value:>10.1f} {unit:<4} anchor {anchor_text:<10} target {target_text}{verdict}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, default=0, help="first N States of the reference (default: all)")
    parser.add_argument("--first-article", type=int, default=5)
    parser.add_argument("--last-article", type=int, default=62)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the round to settle")
    parser.add_argument("--profile", metavar="SERVICE", action="append", choices=SERVICES, default=[],
                        help="record SERVICE with py-spy from the import until settled (repeatable; collapsed "
                             "stacks kept in the log dir)")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    problem = stack_problem()
    if problem:
        raise SystemExit(problem)
    states = [c["iso3"] for c in reference.data()["countries"]]
    states = states[:args.states] if args.states else states
    articles = list(range(args.first_article, args.last_article + 1))

    workdir = Path(tempfile.mkdtemp(prefix="tacoord-round-"))
    export = workdir / f"checklist-{ROUND}.csv"
    count = write_round(export, states, articles)
    stack = Stack(workdir)
    try:
        stack.start(SERVICES, {"TACOORD_OUTBOX_RELAY_SECONDS": "1"})
        operator = stack.headers("operator", "bench")
        offers(stack)
        wait_for(lambda: stack.db("audit")["audit"].count_documents({}) >= len(DONORS), 60,
                 "the offers' audit records")
        key = operator["Authorization"].removeprefix("Bearer ")
        stop_profile = stack.profile(args.profile) if args.profile else None
        args.keep_logs = args.keep_logs or bool(args.profile)
        cpu_before = stack.cpu_seconds()
        started = time.perf_counter()
        imported = subprocess.run([sys.executable, "-m", "services.needs.importer", str(export), "--quiet",
                                   "--url", stack.url("needs", ""), "--key", key],
                                  cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        answered = time.perf_counter()
        if imported.returncode != 0:
            raise SystemExit(f"the import failed ({imported.returncode}): {imported.stderr[-2000:]}")
        summary = json.loads(imported.stdout)
        if summary["accepted"] != count:
            raise SystemExit(f"{summary['accepted']} of {count} rows accepted: {summary['rejected'][:5]}")
        # polled every half second: a matrix of the whole round is real work for matching, asked too often
        # it would slow the very thing measured
        in_matrix = wait_for(lambda: matrix_needs(stack, operator) >= count, args.timeout, f"{count} needs in the matrix",
                             interval=0.5)
        audited = wait_for(lambda: submitted_records(stack) >= count, args.timeout, f"{count} need.submitted records",
                           interval=0.5)
        settled = max(in_matrix, audited)
        cpu_after = stack.cpu_seconds()
        if stop_profile is not None:
            stop_profile()

        full = "/matrix?rows=article&cols=state"
        before = handler_seconds(stack, "/matrix")
        client_times = []
        for _ in range(5):
            t0 = time.perf_counter()
            response = requests.get(stack.url("matching", full), headers=operator, timeout=60)
            response.raise_for_status()
            client_times.append(time.perf_counter() - t0)
        after = handler_seconds(stack, "/matrix")
        cells = len(response.json()["cells"])
        handler_ms = ((after[1] - before[1]) / (after[0] - before[0]) * 1000) if after[0] > before[0] else float("nan")
        rss = stack.rss()

        cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
        services_cpu = sum(v for k, v in cpu.items() if k in SERVICES)
        print(f"\ncheck-list round: {len(states)} States × articles {articles[0]}–{articles[-1]} = {count} rows, "
              f"two forms each; machine: {platform.node()}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, Python {platform.python_version()}")
        row("import command answered", answered - started, "s", ANCHORS["import_s"])
        row("settled (matrix holds every need, audit every record)", settled - started, "s", ANCHORS["settled_s"],
            TARGETS["settled_s"])
        row(f"GET {full} ({cells} cells), handler mean", handler_ms, "ms", None, TARGETS["matrix_handler_ms"])
        row(f"GET {full}, client over loopback, best of 5", min(client_times) * 1000, "ms")
        row("CPU per need, all (services + database + RabbitMQ)", sum(cpu.values()) * 1000 / count, "ms",
            ANCHORS["cpu_ms"], TARGETS["cpu_ms"])
        print("  CPU per need by process: " + ", ".join(f"{k} {v * 1000 / count:.2f} ms" for k, v in cpu.items())
              + f" (services {services_cpu * 1000 / count:.2f} ms)")
        for name, fields in rss.items():
            row(f"RSS {name} (peak {fields.get('VmHWM', 0):.0f} MB)", fields.get("VmRSS", 0), "MB", None,
                TARGETS["rss_mb"])
        print("SUMMARY " + json.dumps({
            "rows": count, "import_s": round(answered - started, 2), "settled_s": round(settled - started, 2),
            "matrix_handler_ms": round(handler_ms, 1), "matrix_client_ms": round(min(client_times) * 1000, 1),
            "cpu_ms_per_need": round(sum(cpu.values()) * 1000 / count, 2),
            "rss_mb": {k: round(v.get("VmRSS", 0), 1) for k, v in rss.items()}}))
    finally:
        stack.close()
        if args.keep_logs:
            print(f"service logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

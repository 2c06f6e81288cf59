"""How long the IATI import's reading takes on a 500 KB activity file (no stack needed).

    /work/main/.venv/bin/python bench/iati_parse_bench.py [--kb 500] [--repeat 5]

Builds a file of at least ``--kb`` kilobytes from tests/fixtures/iati/many.py (invented but
realistic activities: sectors in two vocabularies, budgets, four transactions each), then times,
best of ``--repeat``: parsing alone (``iati.parse``: defusedxml + the activity dicts) and the
whole dry run (parsing, mapping every activity onto an offer, checking it with the offer schema,
the report). Prints the figures; asserts nothing (the machine is shared: read the figure).
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.supply import iati, iati_mapping  # noqa: E402
from tests.fixtures.iati.many import document  # noqa: E402


def sized(kilobytes):
    count = 50
    while len(document(count)) < kilobytes * 1024:
        count += 25
    return document(count), count


def best(repeat, run):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kb", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    xml_bytes, count = sized(args.kb)
    sector_map = iati_mapping.merged_sector_map()
    parse_s, (_, activities) = best(args.repeat, lambda: iati.parse(xml_bytes))
    dry_s, report = best(args.repeat, lambda: iati.dry_run(xml_bytes, sector_map))
    print(f"file: {len(xml_bytes) / 1024:,.0f} KB, {count} activities ({report['imported']} anti-corruption)")
    print(f"parse (defusedxml → activity dicts): {parse_s * 1000:,.0f} ms  "
          f"({parse_s / len(activities) * 1e6:,.0f} µs per activity)")
    print(f"dry run (parse + map + schema + report): {dry_s * 1000:,.0f} ms  "
          f"({dry_s / len(activities) * 1e6:,.0f} µs per activity)")


if __name__ == "__main__":
    main()

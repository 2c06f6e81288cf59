"""Demo data: a seeded, generated scenario on top of the real UNCAC reference data.

    python -m infra.demo [--seed 7]

Issues an operator key and per-State keys (written to .stack/demo-keys.json),
files needs for a sample of States over HTTP the way States would, and
prints where to look. Running it again files the same needs (updates, not
duplicates).
"""
import argparse
import json
import random
import sys

import requests
from pymongo import MongoClient

from tacoord import auth, config, reference

NEEDS_PER_STATE = 4


def generated_needs(rng, states):
    forms = [f for f in reference.assistance_forms() if f != "OTHER"]
    articles = [a["article"] for a in reference.checklist_articles()] + [46, 46, 5, 9, 13, 43]
    for state in states:
        for article in rng.sample(articles, NEEDS_PER_STATE):
            yield {"state": state, "article": article, "forms": rng.sample(forms, rng.randint(1, 2)),
                   "priority": rng.choice((1, 1, 2, 3)), "checklist_round": "2026-1",
                   "description": f"Self-assessment: assistance needed on article {article}"}


def key(database, role, subject):
    return auth.issue(database, role, subject, label="demo")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--states", type=int, default=24)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    database = auth.auth_db(MongoClient(config.mongo_uri()), config.db_prefix())
    operator = key(database, "operator", "*")
    states = sorted(rng.sample(sorted(c["iso3"] for c in reference.data()["countries"]), args.states))
    if "KEN" not in states:
        states[0] = "KEN"
    state_keys = {s: key(database, "state", s) for s in states}
    base = f"http://127.0.0.1:{config.http_port('needs')}"
    filed = 0
    for need in generated_needs(rng, states):
        response = requests.post(f"{base}/needs", json=need, timeout=10,
                                 headers={"Authorization": f"Bearer {state_keys[need['state']]}"})
        if response.status_code not in (200, 201):
            print(f"demo: need for {need['state']} refused: {response.status_code} {response.text}",
                  file=sys.stderr)
            return 1
        filed += 1
    keys_file = config.state_dir() / "demo-keys.json"
    keys_file.write_text(json.dumps({"operator": operator, "states": state_keys}, indent=2))
    print(f"demo: filed {filed} needs for {len(states)} States (seed {args.seed})")
    print(f"demo: API keys in {keys_file} (operator key: {operator})")
    print("where to look:")
    for name in config.SERVICES:
        print(f"  {name:<9} http://127.0.0.1:{config.http_port(name)}/   "
              f"metrics http://127.0.0.1:{config.ops_port(name)}/metrics")
    print(f"  needs     curl -H 'Authorization: Bearer {operator}' {base}/needs?state=KEN")
    print(f"  RabbitMQ  http://127.0.0.1:{config.amqp_mgmt_port()}/  (user tacoord / tacoord)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

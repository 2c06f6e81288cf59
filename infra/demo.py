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


DONORS = (("GB-GOV-1", "FCDO"), ("XM-DAC-41114", "UNDP"), ("DE-GOV-1", "BMZ"), ("XM-DAC-47066", "IOM"))

# What coordination is for: two donors, unaware of each other, both committed to Kenya's
# legal advice on article 15 -> matching raises duplication.detected, the matrix shows it.
DUPLICATED_NEED = {"state": "KEN", "article": 15, "forms": ["LEGAL_ADVICE"], "priority": 1,
                   "checklist_round": "2026-1", "description": "Bribery offences: review of the draft penal code"}
DUPLICATED_OFFERS = tuple(
    (provider, {"provider": provider, "provider_name": name, "level": "bilateral", "scope_states": ["KEN"],
                "articles": [15], "forms": ["LEGAL_ADVICE"], "capacity": 2, "languages": ["en"],
                "period_start": "2027-01-01", "period_end": "2027-12-31", "status": "active",
                "external_ref": f"demo-duplicate-{index}"})
    for index, (provider, name) in enumerate((("GB-GOV-1", "FCDO"), ("SE-0-SE-6", "Sida"))))


def generated_offers(rng, states):
    forms = [f for f in reference.assistance_forms() if f != "OTHER"]
    groups = list(reference.regional_groups())
    for index, (provider, name) in enumerate(DONORS):
        level = ("bilateral", "regional", "global", "regional")[index]
        scope = {"bilateral": {"scope_states": rng.sample(states, 3)},
                 "regional": {"scope_groups": [rng.choice(groups)]}, "global": {}}[level]
        yield provider, {"provider": provider, "provider_name": name, "level": level, **scope,
                         "articles": rng.sample([5, 9, 10, 15, 46, 52, 53], 3), "chapters": [2] if index == 2 else [],
                         "forms": rng.sample(forms, 2), "capacity": rng.randint(2, 6), "languages": ["en", "fr"],
                         "period_start": "2027-01-01", "period_end": "2028-12-31", "status": "active",
                         "external_ref": f"demo-{index}"}


def post(url, body, api_key, what):
    response = requests.post(url, json=body, timeout=10, headers={"Authorization": f"Bearer {api_key}"})
    if response.status_code not in (200, 201):
        raise SystemExit(f"demo: {what} refused: {response.status_code} {response.text}")
    return response.json()


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
    post(f"{base}/needs", DUPLICATED_NEED, state_keys["KEN"], "need of KEN")
    supply = f"http://127.0.0.1:{config.http_port('supply')}"
    donor_keys = {}
    for provider, offer in (*generated_offers(rng, states), *DUPLICATED_OFFERS):
        donor_keys[provider] = donor_keys.get(provider) or key(database, "donor", provider)
        post(f"{supply}/offers", offer, donor_keys[provider], f"offer of {provider}")
    workshop = post(f"http://127.0.0.1:{config.http_port('requests')}/requests", {
        "kind": "regional_workshop", "state": "KEN", "regional_group": "AFRICAN", "articles": [9, 46],
        "expected_outcomes": "A regional gap analysis on procurement and mutual legal assistance",
        "preferred_dates": [{"from": "2027-03-01", "to": "2027-03-05"}], "language": "en",
        "support_received": []}, state_keys["KEN"], "workshop request")
    keys_file = config.state_dir() / "demo-keys.json"
    keys_file.write_text(json.dumps({"operator": operator, "states": state_keys, "donors": donor_keys}, indent=2))
    print(f"demo: filed {filed + 1} needs for {len(states)} States, {len(DONORS) + len(DUPLICATED_OFFERS)} offers "
          f"(two of them duplicating each other on KEN x article 15) and "
          f"workshop request {workshop['request_id']} (seed {args.seed})")
    print(f"demo: API keys in {keys_file} (operator key: {operator})")
    gateway = f"http://127.0.0.1:{config.gateway_port()}"
    print(f"open {gateway}/   (the one address: the workspace, the API docs at /docs/, every API under /api/)")
    print("where to look:")
    print(f"  docs      {gateway}/docs/  (paste a key under Authorize to try a route)")
    print(f"  matrix    {gateway}/api/matching/matrix/page  (paste a key, e.g. the operator's)")
    print(f"  needs     curl -H 'Authorization: Bearer {operator}' '{gateway}/api/needs/needs?state=KEN'")
    for name in config.SERVICES:
        print(f"  {name:<9} {gateway}/api/{name}/  (directly http://127.0.0.1:{config.http_port(name)}/)   "
              f"metrics http://127.0.0.1:{config.ops_port(name)}/metrics")
    print(f"  RabbitMQ  http://127.0.0.1:{config.amqp_mgmt_port()}/  (user tacoord / tacoord)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

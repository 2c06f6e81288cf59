"""Demo data for the needs service: a self-assessment checklist export (no I/O).

    rng = random.Random(7)
    needs = generate_checklist(rng, reference.states_in_group("AFRICAN"))
    checklist.to_csv(needs)      # or checklist.to_json(needs): a file for the importer

Used by the tests and by the demo scenario.
"""
from tacoord import reference

FORMS = tuple(f for f in reference.assistance_forms() if f != "OTHER")
LANGUAGES = ("en", "fr", "es", "ar", "ru", "zh", "pt")
TOPICS = {
    2: "prevention: policies, bodies, procurement and public reporting",
    3: "criminalization and law enforcement",
    4: "international cooperation",
    5: "asset recovery",
}


def checklist_article_numbers():
    return tuple(a["article"] for a in reference.checklist_articles())


def generate_checklist(rng, states, articles=None, need_probability=1.0, checklist_round="2026-1",
                       other_share=0.05):
    """One row per State × article (kept with ``need_probability``), as checklist column dicts.

    ``rng``: a ``random.Random``; ``states``: ISO3 codes; ``articles``:
    defaults to the checklist articles (15). Forms are 1–3 distinct ids, with
    ``OTHER`` (and its text) in about ``other_share`` of the rows.
    """
    articles = tuple(articles or checklist_article_numbers())
    paragraphs = {a["article"]: a["paragraph"] for a in reference.checklist_articles()}
    rows = []
    for state in states:
        language = rng.choice(LANGUAGES)
        for article in articles:
            if need_probability < 1.0 and rng.random() >= need_probability:
                continue
            forms = rng.sample(FORMS, rng.randint(1, 3))
            other_text = None
            if rng.random() < other_share:
                forms.append("OTHER")
                other_text = f"Peer exchange with another State on article {article}"
            paragraph = paragraphs.get(article)
            chapter = reference.chapter_of(article)
            rows.append({
                "state": state,
                "article": article,
                "paragraph": paragraph if paragraph and len(paragraph) <= 40 else None,
                "forms": sorted(forms),
                "other_text": other_text,
                "priority": rng.choice((1, 1, 2, 2, 2, 3)),
                "description": f"{state}: help implementing article {article} ({TOPICS.get(chapter, 'UNCAC')})",
                "checklist_round": checklist_round,
                "languages": [language] if language == "en" else [language, "en"],
            })
    return rows

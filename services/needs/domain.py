"""Needs: pure rules (no I/O)."""
import hashlib

from tacoord import reference


def need_key(state, article, forms):
    """The duplicate key: the same State × article × forms is one need, updated in place."""
    return f"{state}:{article}:{'+'.join(sorted(set(forms)))}"


def need_id(state, article, forms):
    digest = hashlib.sha256(need_key(state, article, forms).encode()).hexdigest()[:10]
    return f"{state}-{article}-{digest}"


def new_need(filed, now):
    """A need document from a validated filing."""
    forms = sorted(set(filed["forms"]))
    return {
        **filed,
        "forms": forms,
        "need_id": need_id(filed["state"], filed["article"], forms),
        "status": "open",
        "regional_group": reference.regional_group_of(filed["state"]),
        "chapter": reference.chapter_of(filed["article"]),
        "created_at": now,
        "updated_at": now,
    }

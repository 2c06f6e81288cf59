"""An ingress message's actor: who in the partner's system did it, kept only within that partner."""
import pytest

from tacoord.envelope import partner_actor, partner_source


@pytest.mark.parametrize("claimed", ["partner:acme/officer-12", "partner:acme/desk/j.doe"])
def test_an_actor_within_the_partner_is_kept(claimed):
    assert partner_actor("acme", claimed) == claimed


@pytest.mark.parametrize("claimed", [None, "", "partner:acme", "partner:acme/", "partner:acmex/officer-12",
                                     "partner:other/officer-12", "state:KEN", "operator:*", "officer-12", 12])
def test_any_other_actor_becomes_the_partner_itself(claimed):
    assert partner_actor("acme", claimed) == partner_source("acme") == "partner:acme"

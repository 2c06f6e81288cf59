"""The directory of coordination networks (recommendation 31): registering, updating, retiring (no I/O)."""
import pytest

from services.requests import networks
from tacoord.errors import Conflict, Forbidden, Rejected

NOW, LATER = "2027-01-10T09:00:00+00:00", "2027-02-01T09:00:00+00:00"
ENTRY = {"network_id": "GLOBE", "name": "GlobE Network", "kind": "un", "states": ["KEN", "FRA", "KEN"],
         "donors": [], "focus_articles": [46, 43], "website": "https://globenetwork.unodc.org",
         "contacts": [{"name": "Secretariat", "email": "globe@example.org", "role": "secretariat"}],
         "description": "Law-enforcement authorities fighting corruption across borders"}


def test_a_registered_network_is_active_and_its_event_carries_the_whole_entry():
    network, [(kind, data)] = networks.register(ENTRY, NOW)
    assert kind == "network.registered"
    assert (network["status"], network["states"], network["focus_articles"]) == ("active", ["FRA", "KEN"], [43, 46])
    assert data == networks.public(network) and set(data) == set(networks.EVENT_FIELDS)


def test_a_un_regional_group_cannot_be_registered_again():
    with pytest.raises(Conflict, match="AFRICAN is a UN regional group"):
        networks.register({**ENTRY, "network_id": "AFRICAN"}, NOW)


def test_an_update_emits_only_what_changes_and_keeps_the_entry_complete():
    network, _ = networks.register(ENTRY, NOW)
    assert networks.update(network, {"states": ["KEN", "FRA"]}, LATER) == ({}, [])
    changes, [(kind, data)] = networks.update(network, {"website": None, "states": ["UGA", "KEN"]}, LATER)
    assert kind == "network.updated" and changes == {"website": None, "states": ["KEN", "UGA"], "updated_at": LATER}
    assert data["states"] == ["KEN", "UGA"] and data["created_at"] == NOW
    donors, _ = networks.register({**ENTRY, "network_id": "DONORS", "kind": "donor_coordination_group",
                                   "states": [], "donors": ["GB-GOV-1"]}, NOW)
    with pytest.raises(Rejected) as refused:
        networks.update(donors, {"donors": []}, LATER)
    assert refused.value.field == "donors"


def test_a_retired_network_is_final_and_the_refusal_names_what_is_allowed():
    network, _ = networks.register(ENTRY, NOW)
    changes, [(kind, data)] = networks.retire(network, "merged into a new network", LATER)
    assert kind == "network.retired" and data["status"] == "retired" and data["retired_reason"].startswith("merged")
    retired = {**network, **changes}
    with pytest.raises(Conflict, match="allowed from 'retired': none"):
        networks.retire(retired, "again", LATER)
    with pytest.raises(Conflict, match="is 'retired'; it cannot be updated"):
        networks.update(retired, {"name": "GlobE"}, LATER)


def test_an_operator_or_the_network_itself_edits_an_entry():
    network, _ = networks.register(ENTRY, NOW)
    networks.check_editor(network, "operator", "*")
    networks.check_editor(network, "network", "GLOBE")
    with pytest.raises(Forbidden, match="network:ARINSA may not change network GLOBE"):
        networks.check_editor(network, "network", "ARINSA")
    with pytest.raises(Forbidden, match="donor:GB-GOV-1 may not change"):
        networks.check_editor(network, "donor", "GB-GOV-1")


def test_the_directory_is_filtered_by_kind_member_and_focus_article():
    network, _ = networks.register(ENTRY, NOW)
    assert networks.matches(network, networks.check_filters({"state": "ken", "article": "46", "kind": "un"}))
    assert not networks.matches(network, {"article": 5})
    assert not networks.matches(network, {"status": "retired"})
    with pytest.raises(Rejected) as refused:
        networks.check_filters({"kind": "club"})
    assert refused.value.field == "kind"

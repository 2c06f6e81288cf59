"""The IATI test fixtures are what the standard says: valid against the official IATI 2.03 XSD
(tests/fixtures/iati/xsd, see its LICENSE.md), except those broken on purpose, for the reason named."""
from pathlib import Path

import pytest
from lxml import etree

FIXTURES = Path(__file__).parent.parent / "fixtures"
XSD = FIXTURES / "iati" / "xsd" / "iati-activities-schema.xsd"
VALID = ["iati/sectors.xml", "iati/refs_scope_dates.xml", "iati/reimport_v1.xml", "iati/reimport_v2.xml",
         "iati/many_activities.xml", "iati_activities.xml"]
BROKEN_ON_PURPOSE = {
    "iati/identifiers_and_values.xml": "is not a valid value of the atomic type 'xs:decimal'",
    "iati/no_version.xml": "The attribute 'version' is required but missing",
    "iati/version_1_01.xml": "Element 'reporting-org': This element is not expected",   # 1.01 element order
}


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(XSD)))


@pytest.mark.parametrize("name", VALID)
def test_a_fixture_is_valid_against_the_iati_2_03_schema(schema, name):
    document = etree.parse(str(FIXTURES / name))
    assert schema.validate(document), [str(e) for e in schema.error_log][:5]


@pytest.mark.parametrize("name, error", sorted(BROKEN_ON_PURPOSE.items()))
def test_a_fixture_broken_on_purpose_fails_for_that_reason_only(schema, name, error):
    document = etree.parse(str(FIXTURES / name))
    assert not schema.validate(document)
    assert all(error in str(e) for e in schema.error_log), [str(e) for e in schema.error_log]


def test_every_iati_fixture_is_checked():
    found = {f"iati/{p.name}" for p in (FIXTURES / "iati").glob("*.xml")}
    assert found == set(VALID + list(BROKEN_ON_PURPOSE)) - {"iati_activities.xml"}

"""The packaged catalogue: lookups both ways and name search."""

from __future__ import annotations

from shared import catalog


def test_offices_for_service() -> None:
    offices = catalog.offices_for_service(1063475)  # Wohnsitzanmeldung
    ids = [o.id for o in offices]
    assert ids == sorted(ids)
    assert {102522, 102523, 10489} <= set(ids)
    assert all(o.public and 1063475 in o.service_ids for o in offices)
    assert catalog.offices_for_service(123) == []


def test_hidden_offices_only_on_request() -> None:
    cat = catalog.get_catalog()
    hidden = {o.id for o in cat.offices.values() if not o.public}
    assert hidden  # the catalogue has some
    every = {o.id for s in cat.services.values() for o in cat.offices_for_service(s.id, include_hidden=True)}
    public = {o.id for s in cat.services.values() for o in cat.offices_for_service(s.id)}
    assert not (public & hidden)
    assert every & hidden


def test_lookup_by_id() -> None:
    service = catalog.service(1063475)
    assert service is not None and service.name == "Wohnsitzanmeldung" and service.max_quantity >= 1
    office = catalog.office(102522)
    assert office is not None and "Orleansplatz" in office.display_name
    assert "München" in office.address
    assert catalog.service(1) is None and catalog.office(1) is None


def test_search_ignores_case_and_accents() -> None:
    assert catalog.search_services("wohnsitzanmeldung")[0].id == 1063475
    assert any(o.id == 102523 for o in catalog.search_offices("leonrodstrasse"))
    assert any(o.id == 102523 for o in catalog.search_offices("LEONROD bürgerbüro"))
    assert catalog.search_services("   ") == []


def test_catalogue_is_loaded_once() -> None:
    assert catalog.get_catalog() is catalog.get_catalog("munich")


def test_passport_services_are_not_offered_where_the_site_hides_them() -> None:
    """The catalogue lists passport services at 10489, but the site hides them there (spec §5):
    a subscription must not be able to pick that office for them."""
    from shared.catalog import offices_for_service

    offices = {o.id for o in offices_for_service(1063441)}
    assert 10489 not in offices and offices
    assert 10489 in {o.id for o in offices_for_service(1063441, include_hidden=True)}
    assert 10489 in {o.id for o in offices_for_service(1063475)}

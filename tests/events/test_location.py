"""Division, grid cell and gazetteer of the demo city."""

import pytest

from cityos_events.config import DATA
from cityos_events.location import Locator, OutsideCity, coarse_cell, neighbour_cells
from cityos_kit.city import City
from cityos_kit.config import load_settings


@pytest.fixture(scope="module")
def locator() -> Locator:
    return Locator.load(City(load_settings("events").city_dir).divisions, DATA / "gazetteer.json")


def test_points_get_their_street_district_and_grid(locator: Locator) -> None:
    found = locator.resolve(121.05, 31.95, None)
    assert (found.street, found.street_name, found.district, found.district_name) == \
        ("329903003", "港闸街道", "329903", "南港区")
    assert found.source == "point" and found.precision_m is None
    # About 100 m cells, counted from the city's south-west corner.
    assert found.grid == "329903003-350-055"
    assert locator.resolve(121.0505, 31.95, None).grid == found.grid
    assert locator.resolve(121.0515, 31.95, None).grid != found.grid
    # On the border of two streets: the lower code, every time.
    assert locator.resolve(120.9, 32.0, None).street == "329903001" or \
        locator.resolve(120.9, 32.0, None).street == "329904003"
    with pytest.raises(OutsideCity):
        locator.resolve(118.78, 32.04, None)


def test_addresses_are_found_in_the_gazetteer(locator: Locator) -> None:
    found = locator.resolve(None, None, "文峰苑12号楼")
    assert found.source == "gazetteer" and found.street == "329901002"
    # The most specific name wins: a crossing over either of its roads.
    crossing = locator.geocode("青年西路与工农路交叉口东北角")
    assert crossing is not None and crossing.name == "青年西路与工农路交叉口"
    # Only a street named: placed at the street, too vaguely to merge on.
    street = locator.resolve(None, None, "唐闸街道")
    assert street.street == "329904002" and (street.precision_m or 0) > 1000
    # No address it knows, and no point: taken in without a place.
    assert locator.resolve(None, None, "某某路").source == "none"
    # The text is searched when the address says nothing.
    assert locator.resolve(None, None, "我家门口", "天生港电厂门口冒黑烟").street == "329904003"


def test_the_duplicate_search_covers_its_radius() -> None:
    lon, lat = 120.8049, 32.0851
    cells = neighbour_cells(lon, lat, 600)
    assert coarse_cell(lon, lat) in cells
    for dlon, dlat in ((0.006, 0), (-0.006, 0), (0, 0.0054), (0, -0.0054)):
        assert coarse_cell(lon + dlon, lat + dlat) in cells
    assert len(neighbour_cells(lon, lat, 10)) <= 4

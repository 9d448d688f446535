"""A plausible population layer for the demo city: residents at the centre of every H3 cell of
its streets, dense around the city centre and two town centres, thinning out to farmland.

    uv run python -m cityos_hazchem.population [CITY_DIR] > data/population_demo.csv

writes the committed `data/population_demo.csv`. A city loads its own layer (census grid,
household registration points) as the entity dataset of `data/population_dataset.json` through
the ingestion service; the risk index reads it back through the spatio-temporal entity listing.
"""

import csv
import sys
from pathlib import Path
from typing import Any

import h3
import numpy as np

from cityos_hazchem.risk import street_cells
from cityos_kit.city import City
from cityos_kit.config import DEFAULT_CITY_DIR

# (lon, lat, residents per cell at the centre, spread in km): the old town, a port town and a
# new town; elsewhere a rural baseline.
CENTRES = ((120.87, 32.02, 9000.0, 3.0), (121.05, 31.95, 4000.0, 2.0), (120.98, 32.10, 3000.0, 2.5))
RURAL = 250.0
# The census the layer stands for: its records are valid from then (not from when loaded), so a
# day computed before the load still sees them.
AS_OF = "2020-11-01T00:00:00+08:00"
KM_PER_DEG = 111.0


def generate(divisions: dict[str, Any], resolution: int = 8, seed: int = 7
             ) -> list[dict[str, Any]]:
    """One row per cell: cell id, centre lon/lat, residents, street code, census date."""
    cells = sorted(street_cells(divisions, resolution).items())
    centre = np.array([h3.cell_to_latlng(c) for c, _ in cells])  # (lat, lon)
    lat, lon = centre[:, 0], centre[:, 1]
    people = np.full(len(cells), RURAL)
    for x, y, peak, spread_km in CENTRES:
        d_km = np.hypot((lon - x) * KM_PER_DEG * np.cos(np.radians(y)), (lat - y) * KM_PER_DEG)
        people += peak * np.exp(-0.5 * (d_km / spread_km) ** 2)
    people *= np.random.default_rng(seed).uniform(0.85, 1.15, len(cells))
    return [{"cell": c, "lon": round(float(lon[i]), 6), "lat": round(float(lat[i]), 6),
             "population": int(people[i]), "street": s, "as_of": AS_OF} for i, (c, s) in enumerate(cells)]


def main() -> None:
    city = City(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CITY_DIR)
    rows = generate(city.divisions)
    out = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    out.writeheader()
    out.writerows(rows)


if __name__ == "__main__":
    main()

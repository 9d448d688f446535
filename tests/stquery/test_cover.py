"""Z2 key runs cover every point of the box, with few runs."""

import numpy as np

from cityos_spatiotemporal.cells import z2
from cityos_spatiotemporal.queries.cover import cell_centres, cover


def test_every_point_in_the_box_falls_in_a_run() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        w, s = rng.uniform(120.7, 121.0), rng.uniform(31.9, 32.1)
        e, n = w + rng.uniform(0.0005, 0.1), s + rng.uniform(0.0005, 0.05)
        runs = np.array(cover(w, s, e, n))
        assert len(runs) <= 64
        keys = z2(rng.uniform(w, e, 500), rng.uniform(s, n, 500))
        inside = ((keys[:, None] >= runs[:, 0]) & (keys[:, None] <= runs[:, 1])).any(axis=1)
        assert inside.all()


def test_cell_centres_invert_the_keys() -> None:
    lon, lat = np.array([120.9, 121.05]), np.array([32.0, 31.95])
    clon, clat = cell_centres(z2(lon, lat))
    assert np.allclose(clon, lon, atol=360 / 2**20) and np.allclose(clat, lat, atol=180 / 2**20)

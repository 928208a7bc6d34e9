"""Which model outline answers a tap (annotations.tap, the rule web/static/app.js follows).

Squares: area s^2, so D = 2 s / sqrt(pi) ~ 1.128 s, and the centre is exact."""

from __future__ import annotations

import numpy as np

from annotations.tap import outline_at, outline_holding


def _square(cx: float, cy: float, side: float) -> np.ndarray:
    h = side / 2
    return np.array([[cx - h, cy - h], [cx + h, cy - h], [cx + h, cy + h], [cx - h, cy + h]], float)


def test_a_tap_inside_nested_outlines_takes_the_smallest():
    blob, particle = _square(50, 50, 100), _square(50, 50, 20)
    assert outline_holding([blob, particle], 50, 50) == 1
    assert outline_at([particle, blob], 52, 48) == 0
    assert outline_at([blob, particle], 10, 10) == 0  # outside the small one, inside the blob


def test_a_tap_in_an_outlines_box_but_outside_it_is_not_held():
    ell = np.array([[0, 0], [40, 0], [40, 10], [10, 10], [10, 40], [0, 40]], float)
    assert outline_holding([ell], 5, 30) == 0
    assert outline_holding([ell], 30, 30) is None


def test_a_tap_beside_an_outline_takes_it_within_half_its_diameter():
    square = [_square(100, 100, 20)]  # D 22.6: its centre answers taps up to 11.3 px away
    assert outline_holding(square, 111, 100) is None
    assert outline_at(square, 111, 100) == 0
    assert outline_at(square, 112, 100) is None
    assert outline_at([], 5, 5) is None


def test_beside_two_outlines_the_nearer_relative_to_its_size_answers():
    small, large = _square(100, 100, 10), _square(100, 127, 40)  # D 11.3 and 45.1
    # 5.5 px from the small one's centre (0.488 D), 21.5 px from the large one's (0.477 D)
    assert outline_at([small, large], 100, 105.5) == 1
    # 5.2 px (0.461 D) and 21.8 px (0.483 D)
    assert outline_at([small, large], 100, 105.2) == 0
    # 6 px (0.53 D) and 44 px from a D 67.7 (0.65 D): neither
    assert outline_at([small, _square(150, 100, 60)], 106, 100) is None

"""The business bar: at least half of the searches the model calls positive must find contraband."""

from __future__ import annotations

import pytest

from training.evaluation import choose_threshold, verify_success_rate_above


def test_verify_success_rate_above() -> None:
    y_true = [True, True, False, False, True, False]
    assert verify_success_rate_above(y_true, [True, True, True, False, False, False], 0.6)
    assert not verify_success_rate_above(y_true, [True, False, True, True, False, False], 0.5)


def test_no_positive_call_does_not_pass_the_bar() -> None:
    assert not verify_success_rate_above([True, False], [False, False])


def test_threshold_is_the_lowest_that_meets_the_bar() -> None:
    y_true = [False, True, False, True, True]
    proba = [0.1, 0.2, 0.3, 0.4, 0.9]
    threshold = choose_threshold(y_true, proba, min_precision=0.7)
    assert threshold == 0.2
    assert verify_success_rate_above(y_true, [p >= threshold for p in proba], 0.7)
    assert not verify_success_rate_above(y_true, [p >= 0.1 for p in proba], 0.7)


def test_unreachable_bar_is_an_error() -> None:
    with pytest.raises(ValueError, match="no threshold"):
        choose_threshold([False, False, True], [0.9, 0.8, 0.1], min_precision=0.9)

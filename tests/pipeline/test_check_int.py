"""The one rule for integer parameters (pipeline._validation.check_int)."""

import numpy as np
import pytest

from pipeline._validation import check_int


def test_integers_in_range_come_back_as_int():
    value = check_int("n", np.int64(5), 1, 5)
    assert value == 5 and type(value) is int
    assert check_int("n", 0, 0) == 0


@pytest.mark.parametrize("bad", [True, 2.0, "3", None])
def test_non_integers_are_a_type_error(bad):
    with pytest.raises(TypeError, match="'n' must be of type int"):
        check_int("n", bad, 1)


def test_out_of_range_names_the_range_its_bound_and_the_fix():
    with pytest.raises(ValueError, match=r"^'n' must be an int >= 2\. Got 1\.$"):
        check_int("n", 1, 2)
    with pytest.raises(ValueError, match=r"^'n' must be an int in \[1, 4\]\. Got 5\.$"):
        check_int("n", 5, 1, 4)
    with pytest.raises(ValueError, match=r"^'k' must be an int in \[1, n_volumes - 1 = 4\]\. "
                                         r"Got 0\. Use longer runs\.$"):
        check_int("k", 0, 1, 4, bound="n_volumes - 1", fix="Use longer runs.")

"""workflows.bids.participants: the one participants.tsv reader and its dtype policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.exceptions import InputDataError
from workflows.bids.participants import read_participants

TABLE = (
    "participant_id\tsite\tage\tsex\tdiagnosis\tmedication\tscore\n"
    "sub-01\t01\t34\tF\tcontrol\tn/a\t1.5\n"
    "sub-02\t02\tn/a\tM\tpatient\t1\t\n"
    "sub-03\t01\t41\tF\tpatient\t0\t2\n"
)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "participants.tsv"
    path.write_text(TABLE)
    return path


def test_values_stay_as_written(table):
    read = read_participants(table)
    assert read["participant_id"].tolist() == ["sub-01", "sub-02", "sub-03"]
    # identifiers and categories keep their zeros and their spelling
    assert read["site"].tolist() == ["01", "02", "01"]
    assert read["age"].tolist()[::2] == ["34", "41"] and pd.isna(read["age"][1])
    assert read["medication"].tolist()[1:] == ["1", "0"] and pd.isna(read["medication"][0])
    assert read["score"][1] == ""  # only n/a is missing (BIDS); an empty cell stays empty
    assert all(pd.api.types.is_string_dtype(read[c]) for c in read.columns)


def test_numeric_columns_parsed_like_pandas(table):
    read = read_participants(table, numeric=["age", "sex", "score", "not_a_column"])
    inferred = pd.read_csv(table, sep="\t", na_values="n/a", keep_default_na=False)
    pd.testing.assert_series_equal(read["age"], inferred["age"])
    assert read["age"].dtype == np.float64 and np.isnan(read["age"][1])
    assert read["sex"].tolist() == ["F", "M", "F"]  # not numbers: a category
    assert pd.api.types.is_string_dtype(read["score"])  # an empty cell is not a number
    assert read["site"].tolist() == ["01", "02", "01"]  # not named: strings


def test_bad_tables_fail_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"participants.tsv does not exist; add"):
        read_participants(tmp_path / "participants.tsv")
    path = tmp_path / "participants.tsv"
    path.write_text("subject\tage\nsub-01\t3\n")
    with pytest.raises(InputDataError, match=r"has no participant_id column \(its columns: "
                                             r"subject, age\); name the first column"):
        read_participants(path)
    path.write_text("participant_id\tage\nsub-01\t3\nsub-02\t4\nsub-01\t5\n")
    with pytest.raises(InputDataError, match=r"lists sub-01 more than once; keep one row"):
        read_participants(path)
    path.write_text("")
    with pytest.raises(InputDataError, match=r"is not a readable tab-separated table"):
        read_participants(path)

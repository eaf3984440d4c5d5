"""Template labels: msica/NeuroMark TSV tables and GIFT's domain files."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.exceptions import InputDataError
from pipeline.templates import LABEL_COLUMNS, read_template_labels


def test_no_file_names_every_network():
    table = read_template_labels(None, 3)
    assert list(table.columns) == list(LABEL_COLUMNS)
    assert table["label"].tolist() == ["N1", "N2", "N3"] and table["in_fnc"].all()
    assert (table["domain"] == "").all()


def test_neuromark_tsv_labels_and_domains(tmp_path):
    path = tmp_path / "labels.tsv"
    pd.DataFrame({"component_index": [1, 2, 3], "label": ["Thal", "n/a", "Put"],
                  "domain": ["SC", "SC", "n/a"]}).to_csv(path, sep="\t", index=False)
    table = read_template_labels(path, 3)
    assert table["label"].tolist() == ["Thal", "N2", "Put"]
    assert table["domain"].tolist() == ["SC", "SC", ""]
    assert table["in_fnc"].all()


def test_tsv_with_the_wrong_row_count(tmp_path):
    path = tmp_path / "labels.tsv"
    pd.DataFrame({"label": ["a", "b"]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputDataError, match=r"labels.tsv has 2 rows but the template has 3 "
                                             r"networks; give one row per template volume"):
        read_template_labels(path, 3)


@pytest.mark.realdata
def test_gift_neuromark_domain_file(shared_data):
    """GIFT's own Neuromark_fMRI_1.0.txt: 53 networks in 7 domains, all in FNC."""
    path = shared_data / "neuromark" / "gift_tables" / "Neuromark_fMRI_1.0.txt"
    table = read_template_labels(path, 53)
    assert table["domain"].value_counts().to_dict() == {
        "CC": 17, "SM": 9, "VI": 9, "DM": 7, "SC": 5, "CB": 4, "AU": 2}
    assert table.loc[table["index"] == 6, "domain"].item() == "AU"
    assert table["in_fnc"].all() and table["label"].iloc[0] == "N1"


@pytest.mark.realdata
def test_gift_file_of_bare_indices_leaves_the_rest_out_of_fnc(shared_data):
    """NeuroMark 3.0 lists the networks to keep, one per line, with no domain."""
    path = shared_data / "neuromark" / "gift_tables" / "Neuromark_fMRI_3.0_aging_modelorder-100.txt"
    listed = [int(line) for line in path.read_text().split()]
    table = read_template_labels(path, 100)
    assert table.loc[table["in_fnc"], "index"].tolist() == sorted(listed)
    assert not table.loc[~table["in_fnc"], "index"].isin(listed).any()
    assert (table["domain"] == "").all()


def test_gift_file_leaves_unlisted_networks_out(tmp_path):
    path = tmp_path / "domains.txt"
    path.write_text("SC, 1, 3\n\nDMN, 4\n")
    table = read_template_labels(path, 5)
    assert table["in_fnc"].tolist() == [True, False, True, True, False]
    assert table["domain"].tolist() == ["SC", "", "SC", "DMN", ""]


@pytest.mark.parametrize(("text", "message"), [
    ("SC, 1, 7\n", r"line 1: '7' is not a network index in 1..5"),
    ("SC, 1, x\n", r"line 1: 'x' is not a network index"),
    ("SC, 1, 2\nAU, 2\n", r"lists network 2 on lines 1 and 2; list each network once"),
    ("\n\n", r"lists no network"),
])
def test_bad_gift_files(tmp_path, text, message):
    path = tmp_path / "domains.txt"
    path.write_text(text)
    with pytest.raises(InputDataError, match=message):
        read_template_labels(path, 5)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="check --template-labels"):
        read_template_labels(tmp_path / "nope.txt", 5)

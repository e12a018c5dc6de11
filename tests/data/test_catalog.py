import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from src.classes import BASE_CLASSES, GALAXY_CLASSES
from src.data.catalog import CatalogError, find_catalog, load_catalog, parse_gz2_class, parse_gz2_classes


@pytest.mark.parametrize(
    "text, base, group, arms, winding, odd",
    [
        ("A", "A", "artifact", None, None, None),
        ("Er", "Er", "elliptical", None, None, None),
        ("Ec(m)", "Ec", "elliptical", None, None, "m"),
        ("Ser", "Ser", "spiral edge-on", None, None, None),
        ("Seb(u)", "Seb", "spiral edge-on", None, None, "u"),
        ("Sc2m", "Sc", "spiral", "2", "m", None),
        ("Sb+t", "Sb", "spiral", "+", "t", None),
        ("Sb?t", "Sb", "spiral", "?", "t", None),
        ("Sd", "Sd", "spiral", None, None, None),
        ("SBb2m", "SBb", "spiral barred", "2", "m", None),
        ("SBc3m(r)", "SBc", "spiral barred", "3", "m", "r"),
        ("Sb(d)", "Sb", "spiral", None, None, "d"),
    ],
)
def test_grammar_examples(text, base, group, arms, winding, odd):
    parsed = parse_gz2_class(text)
    assert (parsed.base, parsed.group, parsed.arms, parsed.winding, parsed.odd) == (base, group, arms, winding, odd)
    assert parsed.barred == base.startswith("SB")


@pytest.mark.parametrize(
    "text", ["", "S", "E", "Ex", "Se", "SBe", "Sc5m", "Sc2x", "Er(z)", "sc2m", "Sc2m(r)x", "B", "Sen1", None]
)
def test_unknown_strings_are_errors_naming_them(text):
    with pytest.raises(ValueError, match="gz2_class"):
        parse_gz2_class(text)


def test_all_real_strings_parse(real_dir):
    strings = (real_dir / "gz2_class_strings.txt").read_text().split()
    assert len(strings) == 818
    parsed = [parse_gz2_class(s) for s in strings]
    bases = {p.base for p in parsed}
    assert bases == set(BASE_CLASSES)
    assert {p.group for p in parsed} == set(GALAXY_CLASSES)
    # arm counts and windings only occur on face-on spirals
    assert all(
        p.arms is None and p.winding is None for p in parsed if not p.base.startswith("S") or p.base.startswith("Se")
    )


def _write_csv(path, rows, header="dr7objid,ra,dec,sample,gz2_class,t01_smooth_count"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_load_catalog_keeps_18_digit_ids_exact(tmp_path):
    ids = [587722981736120347, 588848899908370674, 587741534399692859]
    rows = [f"{i},10.5,0.25,original,{c},12" for i, c in zip(ids, ["Er", "SBc2m", "Seb"])]
    frame = load_catalog(_write_csv(tmp_path / "gz2_hart16.csv", rows))
    assert frame["dr7objid"].dtype == np.int64
    assert frame["dr7objid"].tolist() == ids
    assert frame["gz2_class_15"].tolist() == ["Er", "SBc", "Seb"]
    assert frame["gz2_class_5"].tolist() == ["elliptical", "spiral barred", "spiral edge-on"]
    assert "t01_smooth_count" not in frame  # only the needed columns are read


def test_load_catalog_gzip_and_find(tmp_path):
    plain = _write_csv(tmp_path / "plain.csv", ["587722981736120347,1,2,original,Ei,3"])
    with open(plain, "rb") as src, gzip.open(tmp_path / "gz2_hart16.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    path = find_catalog(tmp_path)
    assert path.name == "gz2_hart16.csv.gz"
    assert load_catalog(path)["gz2_class_15"].tolist() == ["Ei"]


def test_find_catalog_missing_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="gz2_hart16.csv"):
        find_catalog(tmp_path)


def test_missing_column_is_named(tmp_path):
    path = _write_csv(tmp_path / "c.csv", ["587722981736120347,1,2,original"], header="dr7objid,ra,dec,sample")
    with pytest.raises(CatalogError, match="gz2_class"):
        load_catalog(path)


def test_non_numeric_objid_names_file(tmp_path):
    path = _write_csv(tmp_path / "c.csv", ["5877229817x6120347,1,2,original,Er,1"])
    with pytest.raises(CatalogError, match="c.csv"):
        load_catalog(path)


def test_duplicate_objid_is_an_error(tmp_path):
    path = _write_csv(
        tmp_path / "c.csv", ["587722981736120347,1,2,original,Er,1", "587722981736120347,1,2,original,Ei,1"]
    )
    with pytest.raises(CatalogError, match="duplicate dr7objid 587722981736120347"):
        load_catalog(path)


def test_unknown_class_names_row_and_string(tmp_path):
    path = _write_csv(
        tmp_path / "c.csv", ["587722981736120347,1,2,original,Er,1", "587722981736120348,1,2,original,Zz9,1"]
    )
    with pytest.raises(CatalogError, match=r"row 1: unknown gz2_class string 'Zz9'"):
        load_catalog(path)


def test_parse_column_is_aligned():
    values = pd.Series(["Er", "Sc2m", "Er", "A"], index=[10, 11, 12, 13])
    out = parse_gz2_classes(values)
    assert out.index.tolist() == [10, 11, 12, 13]
    assert out["gz2_class_15"].tolist() == ["Er", "Sc", "Er", "A"]

import json

import numpy as np
import pytest

from src.classes import CLASS_NAMES, class_id, class_info, group_of_base
from src.data.via import ViaError, entry_objid, entry_regions, load_via, polygon_area, polygon_mask, region_polygon


def test_load_via_rejects_malformed_json(tmp_path):
    path = tmp_path / "via_region_data.json"
    path.write_text('{"1": {"filename": ')
    with pytest.raises(ViaError, match="via_region_data.json: malformed JSON"):
        load_via(path)


def test_load_via_rejects_non_entries(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"123": {"filename": "a.jpg"}}))
    with pytest.raises(ViaError, match="entry '123'"):
        load_via(path)


def test_regions_list_or_dict():
    region = {"shape_attributes": {"name": "polygon", "all_points_x": [1, 2, 3], "all_points_y": [1, 3, 1]}}
    assert entry_regions({"regions": [region]}) == [region]
    assert entry_regions({"regions": {"0": region}}) == [region]
    assert entry_regions({"regions": []}) == []


def test_objid_from_key_or_filename():
    assert entry_objid("587741534399692859", {}) == 587741534399692859
    assert (
        entry_objid("Dr7_587741534399692859.jpg1501648", {"filename": "Dr7_587741534399692859.jpg"})
        == 587741534399692859
    )
    with pytest.raises(ViaError, match="no objid"):
        entry_objid("abc", {"filename": "x.jpg"}, source="f.json")


def test_ragged_polygon_is_an_error():
    region = {"shape_attributes": {"name": "polygon", "all_points_x": [1, 2, 3], "all_points_y": [1, 2]}}
    with pytest.raises(ViaError, match="differ in length"):
        region_polygon(region, where="f.json: entry 7")


def test_polygon_mask_square():
    xs, ys = [2, 6, 6, 2], [1, 1, 4, 4]
    mask = polygon_mask(xs, ys, (8, 10))
    assert mask.shape == (8, 10)
    # x is the column, y the row: the square spans rows 1..4, columns 2..6 (boundary included or not,
    # depending on the rasteriser, but the interior is set and nothing outside is)
    assert mask[2:4, 3:6].all()
    assert not mask[5:, :].any() and not mask[:, 7:].any() and not mask[0].any()
    assert polygon_area(xs, ys, (8, 10)) == mask.sum()


def test_classes_single_source_of_truth():
    assert CLASS_NAMES[0] == "background" and len(CLASS_NAMES) == 6
    assert [class_id(n) for n in CLASS_NAMES] == list(range(6))
    info = class_info()
    assert info["0"] == {"name": "background", "isthing": 0}
    assert all(info[str(i)]["isthing"] == 1 for i in range(1, 6))
    assert group_of_base("SBd") == "spiral barred" and group_of_base("Seb") == "spiral edge-on"
    with pytest.raises(ValueError, match="unknown class name"):
        class_id("lenticular")
    with pytest.raises(ValueError, match="unknown base class"):
        group_of_base("S0")
    assert np.unique([tuple(c) for c in __import__("src.classes").classes.colour_palette()], axis=0).shape[0] == 6


def test_polygon_inside_uses_pixel_bounds():
    from src.data.via import polygon_inside

    assert polygon_inside([0, 63, 63], [0, 0, 63], (64, 64))
    assert not polygon_inside([0, 64, 63], [0, 0, 63], (64, 64))  # x = width is off the image
    assert not polygon_inside([0, 10, 10], [-1, 0, 5], (64, 64))
    assert not polygon_inside([0, 10, 10], [0, 0, 40], (32, 64))  # (height, width) order


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"filename": "a.jpg", "regions": [None]}, "entry '7': region 0 is null, expected an object"),
        ({"filename": "a.jpg", "regions": 5}, "entry '7': 'regions' is int, expected a list of regions"),
        ({"filename": "a.jpg", "regions": "polygon"}, "entry '7': 'regions' is str"),
        ({"filename": 12, "regions": []}, "entry '7': 'filename' is int, expected a string"),
        (
            {"filename": "a.jpg", "regions": [{"shape_attributes": [1, 2]}]},
            "entry '7': region 0: 'shape_attributes' is list",
        ),
        (
            {"filename": "a.jpg", "regions": {"0": {"shape_attributes": {}, "region_attributes": "E"}}},
            "entry '7': region 0: 'region_attributes' is str",
        ),
    ],
)
def test_malformed_entries_name_file_and_key(tmp_path, entry, message):
    path = tmp_path / "via_region_data.json"
    path.write_text(json.dumps({"7": entry}))
    with pytest.raises(ViaError, match=f"via_region_data.json: {message}"):
        load_via(path)


@pytest.mark.parametrize("xs", [["1", "2", "3"], [True, False, True], [[1], [2], [3]], 5, None])
def test_coordinates_must_be_lists_of_numbers(xs):
    region = {"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": [1, 3, 1]}}
    with pytest.raises(ViaError, match="f.json: entry 1"):
        region_polygon(region, "f.json: entry 1")


def test_malformed_via_through_the_conversion_cli(tmp_path, capsys):
    from src.data.conversion import main
    from tests.tiny_data import write_tiny_raw

    root = write_tiny_raw(tmp_path, n=5, size=32)
    via_file = root / "original" / "train" / "via_region_data.json"
    data = json.loads(via_file.read_text())
    key = next(iter(data))
    data[key]["regions"] = [None]
    via_file.write_text(json.dumps(data))
    assert main(["--data-root", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{via_file}: entry '{key}': region 0 is null" in err and "Traceback" not in err

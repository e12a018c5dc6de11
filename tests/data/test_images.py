import json
import os
import stat

import numpy as np
import pytest

from src.atomic import atomic_open, atomic_path, replace_folder, write_json_atomic
from src.data.images import ImageError, lupton_rgb, read_rgb, write_jpeg, write_png


def test_write_json_atomic_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})  # not serialisable: the old file stays intact
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_open_keeps_old_file_on_error_and_sets_normal_permissions(tmp_path):
    path = tmp_path / "table.csv"
    with atomic_open(path) as fh:
        fh.write("a,b\n1,2\n")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "a,b\n1,2\n"
    assert os.listdir(tmp_path) == ["table.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(path, "a"):
            pass


def test_atomic_path_keeps_suffix_for_writers_that_read_it(tmp_path):
    with atomic_path(tmp_path / "fig.png", keep_suffix=True) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"png")
    assert (tmp_path / "fig.png").read_bytes() == b"png"


def test_replace_folder_swaps_whole_folders(tmp_path):
    final, staging = tmp_path / "model", tmp_path / ".model.new"
    final.mkdir()
    (final / "old.txt").write_text("old")
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    replace_folder(staging, final)
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_images_round_trip_and_clear_errors(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", rgb)
    assert np.array_equal(read_rgb(tmp_path / "a.png"), rgb)
    write_png(tmp_path / "grey.png", rgb[..., 0])
    grey = read_rgb(tmp_path / "grey.png")
    assert grey.shape == (20, 30, 3) and np.array_equal(grey[..., 1], rgb[..., 0])
    size = write_jpeg(tmp_path / "a.jpg", rgb)
    assert size == (tmp_path / "a.jpg").stat().st_size
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "a.jpg").read_bytes()[: size // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        read_rgb(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match="missing.png: file not found"):
        read_rgb(tmp_path / "missing.png")
    # 16-bit and float pixels are refused, not clipped or zeroed by PIL's RGB conversion
    from PIL import Image

    Image.fromarray(np.full((20, 30), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.full((20, 30), 0.5, dtype=np.float32)).save(tmp_path / "float.tif")
    for name in ("deep.png", "float.tif"):
        with pytest.raises(ImageError, match=f"{name}: .*not supported"):
            read_rgb(tmp_path / name)


def test_lupton_rgb_is_astropys_with_the_project_parameters():
    from astropy.visualization import make_lupton_rgb

    from src.data.images import LUPTON_Q, LUPTON_STRETCH

    bands = np.random.default_rng(1).normal(0, 1, (3, 16, 16)).astype(np.float32) + 2
    expected = make_lupton_rgb(bands[2], bands[1], bands[0], minimum=0.0, stretch=LUPTON_STRETCH, Q=LUPTON_Q)
    assert np.array_equal(lupton_rgb(bands), expected)

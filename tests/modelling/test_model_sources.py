"""Model names as users type them: local-looking names resolve to files or folders and never reach the network."""

import pytest
import torch
from safetensors.torch import save_model
from transformers import OneFormerForUniversalSegmentation

import src.modelling.model
from src.modelling.model import (
    ModelSourceError,
    build_config,
    load_model,
    looks_local,
    resolve_model_source,
    save_export,
)


@pytest.fixture
def models(tmp_path, monkeypatch):
    """A working folder with ``safetensors/galaxy_sem_5_1.safetensors`` (a bare state dict of the galaxy-tiny
    architecture, saved as the original project saved its weights) and an export ``safetensors/export/``."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    source = OneFormerForUniversalSegmentation(build_config("galaxy-tiny"))
    (tmp_path / "safetensors").mkdir()
    save_model(source, "safetensors/galaxy_sem_5_1.safetensors")
    model, processor = load_model("galaxy-tiny")
    save_export(model, processor, "safetensors/export")

    def no_network(*args, **kwargs):
        raise AssertionError(f"the hub was asked for {args[1:2]}")

    monkeypatch.setattr(src.modelling.model, "_from_source", no_network)
    return source


@pytest.mark.parametrize(
    "name",
    [
        "safetensors/galaxy_sem_5_1",
        "safetensors/galaxy_sem_5_1.safetensors",
        "./safetensors/galaxy_sem_5_1",
        "galaxy_sem_5_1",
        "galaxy_sem_5_1.safetensors",
    ],
)
def test_original_weights_found_without_the_extension(models, name):
    assert resolve_model_source(name) == ("state_dict", "safetensors/galaxy_sem_5_1.safetensors")
    model, _ = load_model(name, base_card="galaxy-tiny")
    assert torch.equal(
        model.state_dict()["model.transformer_module.decoder.class_embed.weight"],
        models.state_dict()["model.transformer_module.decoder.class_embed.weight"],
    )


def test_export_folder_preset_and_hub_card(models, tmp_path):
    assert resolve_model_source("safetensors/export") == ("export", "safetensors/export")
    assert resolve_model_source("export") == ("export", "safetensors/export")
    assert resolve_model_source(str(tmp_path / "safetensors" / "export"))[0] == "export"
    assert resolve_model_source("galaxy-tiny") == ("preset", "galaxy-tiny")
    assert resolve_model_source("shi-labs/oneformer_ade20k_swin_tiny") == ("hub", "shi-labs/oneformer_ade20k_swin_tiny")
    load_model("safetensors/export")  # an export loads without the hub


@pytest.mark.parametrize(
    "name",
    [
        "safetensors/galaxy_sem_inst_10_2",
        "galaxy_missing",
        "./models/x",
        "/nowhere/model",
        "runs/a/b",
        "missing.safetensors",
    ],
)
def test_missing_local_names_are_errors_naming_what_was_tried(models, name):
    assert looks_local(name)
    with pytest.raises(ModelSourceError, match="not found \\(tried .*safetensors"):
        load_model(name)


def test_a_folder_or_file_that_is_not_a_model_is_named(models, tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(ModelSourceError, match="notes: not a model folder"):
        resolve_model_source("notes")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelSourceError, match="weights.bin: not a model"):
        resolve_model_source("weights.bin")


@pytest.mark.parametrize("stats", [None, ([20.0, 15.0, 10.0], [30.0, 25.0, 20.0])])
def test_bare_state_dict_preprocessing_matches_the_original_processor_settings(models, stats):
    """The original project ran its weights on the 256 px cutouts with no resize and no rescale, normalising the
    0-255 pixels by the cutout mean/std: ``OneFormerImageProcessor(do_resize=False, do_rescale=False,
    image_mean=MEAN, image_std=STD)``.  A bare state dict loads with a processor that gives the same input."""
    import numpy as np
    from transformers import OneFormerImageProcessorPil

    from src.modelling.model import DEFAULT_MEAN, DEFAULT_STD

    mean, std = stats if stats is not None else (list(DEFAULT_MEAN), list(DEFAULT_STD))
    original = OneFormerImageProcessorPil(
        do_resize=False,
        do_rescale=False,
        do_normalize=True,
        image_mean=mean,
        image_std=std,
        num_labels=6,
        ignore_index=255,
    )
    kwargs = {} if stats is None else {"mean": stats[0], "std": stats[1]}
    _, processor = load_model("safetensors/galaxy_sem_5_1", base_card="galaxy-tiny", **kwargs)
    rng = np.random.default_rng(0)
    for shape in ((256, 256, 3), (200, 180, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        ours = processor(images=[image], task_inputs=["semantic"], return_tensors="pt")["pixel_values"]
        expected = original(images=[image], return_tensors="pt")["pixel_values"]
        assert ours.shape == (1, 3, shape[0], shape[1])  # no resize
        assert torch.allclose(ours, expected, atol=1e-4)  # same normalisation of the 0-255 pixels
        by_hand = (torch.from_numpy(image).permute(2, 0, 1).float() - torch.tensor(mean)[:, None, None]) / torch.tensor(
            std
        )[:, None, None]
        assert torch.allclose(ours[0], by_hand, atol=1e-4)

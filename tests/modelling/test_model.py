"""Offline OneFormer presets, tokenizer, processor, bare state dicts and save_pretrained exports."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the hub

import numpy as np
import pytest
import torch
from safetensors.torch import save_model
from transformers import OneFormerForUniversalSegmentation, OneFormerProcessor

from src.classes import CLASS_NAMES, ID2LABEL, NUM_LABELS
from src.inference.segmentation import forward
from src.modelling.model import (
    PRESETS,
    ModelSourceError,
    _new_model,
    build_config,
    build_processor,
    load_model,
    num_text_for,
    offline_tokenizer,
    save_export,
    set_training_mode,
)


def test_offline_tokenizer_matches_hub_ids():
    tok = offline_tokenizer()
    assert tok("the task is semantic")["input_ids"] == [49406, 518, 10549, 533, 29119, 1550, 49407]
    assert len(tok) == 49408
    # class prompts of the processor tokenise without unknown tokens
    ids = tok("a photo with a spiral edge-on")["input_ids"]
    assert ids[0] == 49406 and ids[-1] == 49407 and tok.unk_token_id not in ids[1:-1]


def test_presets_have_galaxy_labels():
    assert {"galaxy-small", "swin-tiny", "galaxy-tiny"} <= set(PRESETS)
    for name in PRESETS:
        config = build_config(name)
        assert config.num_labels == NUM_LABELS == 6
        assert config.id2label == ID2LABEL and config.label2id["spiral barred"] == 4
        assert config.text_encoder_width == config.hidden_dim  # the text mapper concatenates both
    tiny = build_config("swin-tiny")  # = shi-labs/oneformer_ade20k_swin_tiny architecture
    assert (tiny.backbone_config.embed_dim, list(tiny.backbone_config.depths)) == (96, [2, 2, 6, 2])
    assert (tiny.num_queries, tiny.hidden_dim, tiny.decoder_layers, tiny.task_seq_len) == (150, 256, 10, 77)
    small = build_config("galaxy-small", num_queries=24)
    assert small.backbone_config.embed_dim == 48 and list(small.backbone_config.depths) == [1, 1, 2, 1]
    assert small.num_queries == 24
    with pytest.raises(ValueError, match="text_encoder_n_ctx"):
        build_config("galaxy-small", num_queries=4)


def test_processor_offline_encodes_training_batch():
    config = build_config("galaxy-tiny")
    processor = build_processor(image_size=64, mean=[10, 20, 30], std=[5, 5, 5], config=config)
    assert processor.image_processor.metadata["class_names"] == list(CLASS_NAMES)
    assert processor.image_processor.metadata["thing_ids"] == [1, 2, 3, 4, 5]
    assert (processor.task_seq_length, processor.max_seq_length) == (77, 77)
    image = np.full((48, 48, 3), 30, np.uint8)
    semantic = np.zeros((48, 48), np.uint8)
    semantic[5:20, 5:20] = 3
    batch = processor(images=[image], task_inputs=["semantic"], segmentation_maps=[semantic], return_tensors="pt")
    assert batch["pixel_values"].shape == (1, 3, 64, 64)
    # normalisation with the given mean/std in 0-255 units: channel 2 is (30 - 30) / 5 = 0
    assert torch.allclose(batch["pixel_values"][0, 2], torch.zeros(64, 64), atol=1e-5)
    assert torch.allclose(batch["pixel_values"][0, 0], torch.full((64, 64), 4.0), atol=1e-4)
    assert batch["class_labels"][0].tolist() == [0, 3]
    assert batch["text_inputs"].shape == (1, num_text_for(config), 77)
    assert batch["task_inputs"][0, :7].tolist() == [49406, 518, 10549, 533, 29119, 1550, 49407]


@pytest.mark.parametrize("preset", ["galaxy-small", "galaxy-tiny"])
def test_cpu_presets_predict_the_same_in_training_and_eval_mode(preset):
    """The from-scratch presets have no dropout: validation and inference (eval mode) see the model that training
    optimised.  With OneFormer's default dropout 0.1 the two modes give different class logits."""
    torch.manual_seed(0)
    model, processor = load_model(preset, image_size=64)
    rng = np.random.default_rng(0)
    semantic = np.zeros((64, 64), np.uint8)
    semantic[20:40, 18:44] = 2
    batch = processor(
        images=[rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)],
        task_inputs=["semantic"],
        segmentation_maps=[semantic],
        return_tensors="pt",
    )
    inputs = {k: batch[k] for k in ("pixel_values", "pixel_mask", "task_inputs")}
    logits = {}
    for training in (True, False):
        set_training_mode(model, training)
        with torch.no_grad():
            logits[training] = model(
                **inputs, text_inputs=batch["text_inputs"] if training else None
            ).class_queries_logits
    assert torch.allclose(logits[True], logits[False], atol=1e-5)
    config = build_config(preset)
    config.dropout = 0.1  # OneFormer's default: the same check fails
    torch.manual_seed(0)
    noisy = _new_model(config)
    set_training_mode(noisy, True)
    with torch.no_grad():
        a = noisy(**inputs, text_inputs=batch["text_inputs"]).class_queries_logits
    set_training_mode(noisy, False)
    with torch.no_grad():
        b = noisy(**inputs).class_queries_logits
    assert not torch.allclose(a, b, atol=1e-5)


def test_hub_card_offline_names_presets():
    with pytest.raises(ModelSourceError, match="galaxy-small"):
        load_model("shi-labs/oneformer_ade20k_swin_tiny")


def test_bare_state_dict_loads(tmp_path):
    # the original project's published weights are bare state dicts saved like this (from the swin-tiny
    # architecture with 6 labels); the tiny preset exercises the same code path in seconds
    torch.manual_seed(1)
    source = OneFormerForUniversalSegmentation(build_config("galaxy-tiny"))
    path = tmp_path / "galaxy_sem_5_1.safetensors"
    save_model(source, str(path))
    model, processor = load_model(str(path), base_card="galaxy-tiny")
    loaded = model.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert not model.training and not model.config.is_training  # returned ready for inference
    assert processor.image_processor.num_text == num_text_for(model.config)
    with pytest.raises(ModelSourceError, match="does not match"):
        load_model(str(path), base_card="galaxy-small")


def test_export_roundtrip_offline_and_movable(tmp_path):
    model, processor = load_model("galaxy-tiny", image_size=64)
    save_export(model, processor, tmp_path / "a")
    (tmp_path / "a").rename(tmp_path / "b")  # the export must not depend on its original location
    folder = tmp_path / "b"
    assert {"config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    again = OneFormerForUniversalSegmentation.from_pretrained(folder)
    assert again.config.id2label == ID2LABEL and not again.config.is_training
    state = model.state_dict()
    for key, value in again.state_dict().items():
        assert torch.equal(state[key], value), key
    proc = OneFormerProcessor.from_pretrained(folder)
    assert proc.image_processor.metadata["thing_ids"] == [1, 2, 3, 4, 5]
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    inputs = proc(images=[image], task_inputs=["instance"], return_tensors="pt")
    with torch.no_grad():
        out = again(**inputs)
    seg = proc.post_process_instance_segmentation(out, target_sizes=[(64, 64)])[0]["segmentation"]
    assert seg.shape == (64, 64)
    # load_model on the export gives a trainable model (fresh text mapper) with the same weights
    reloaded, _ = load_model(str(folder))
    set_training_mode(reloaded, True)
    assert reloaded.model.text_mapper is not None and reloaded.config.is_training
    assert torch.equal(
        reloaded.state_dict()["model.transformer_module.decoder.class_embed.weight"],
        state["model.transformer_module.decoder.class_embed.weight"],
    )


def test_export_with_missing_weights_is_an_error(tmp_path):
    from safetensors.torch import load_file, save_file

    model, processor = load_model("galaxy-tiny", image_size=64)
    folder = save_export(model, processor, tmp_path / "export")
    weights = load_file(folder / "model.safetensors")
    weights.pop("model.transformer_module.decoder.class_embed.weight")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelSourceError, match="weights do not match its config.json"):
        load_model(str(folder))


def test_input_projections_must_be_identities(tmp_path):
    """transformers keeps OneFormer's input projections (conv_dim != hidden_dim) in a plain list: unregistered,
    untrained, unsaved, and garbage after loading.  Every preset avoids them; a config that needs them is refused."""
    from transformers import OneFormerConfig

    from src.modelling.model import check_config

    for name in PRESETS:
        config = build_config(name)
        assert config.conv_dim == config.hidden_dim, name
    with pytest.raises(ValueError, match="conv_dim 32 != hidden_dim 64"):
        check_config(OneFormerConfig(conv_dim=32, hidden_dim=64))
    model, processor = load_model("galaxy-tiny", image_size=64)
    save_export(model, processor, tmp_path / "export")
    loaded, processor = load_model(str(tmp_path / "export"))
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    first, second = (forward(loaded, processor, [image], "semantic").class_queries_logits for _ in range(2))
    assert torch.isfinite(first).all() and torch.equal(first, second)

"""src/modelling/patches.py: the fast deformable attention agrees with transformers' own, the layout hook changes
nothing."""

import copy

import pytest
import torch
from transformers.models.oneformer import modeling_oneformer

from src.modelling.patches import (
    contiguous_attention_inputs,
    fast_deformable_attention,
    install_fast_deformable_attention,
    transformers_deformable_attention,
    unweighted_query_attention,
)


@pytest.mark.parametrize("shapes", [[(8, 8), (4, 4), (2, 2)], [(6, 5), (3, 3)]])
def test_fast_deformable_attention_matches_transformers(shapes):
    torch.manual_seed(0)
    batch, heads, dim, queries, points = 2, 3, 4, 7, 4
    tokens = sum(h * w for h, w in shapes)
    value = torch.randn(batch, tokens, heads, dim, dtype=torch.float64, requires_grad=True)
    where = torch.rand(batch, queries, heads, len(shapes), points, 2, dtype=torch.float64) * 1.2 - 0.1
    where.requires_grad_(True)
    weights = torch.rand(batch, queries, heads, len(shapes), points, dtype=torch.float64, requires_grad=True)
    install_fast_deformable_attention()
    reference = transformers_deformable_attention()
    assert reference is not fast_deformable_attention
    want = reference(value, shapes, where, weights)
    got = fast_deformable_attention(value, shapes, where, weights)
    assert got.shape == want.shape == (batch, queries, heads * dim)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(want)
    want_grads = torch.autograd.grad(want, (value, where, weights), grad)
    got_grads = torch.autograd.grad(got, (value, where, weights), grad)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_load_model_installs_the_patches():
    from src.modelling.model import load_model

    model, _ = load_model("galaxy-tiny")
    assert modeling_oneformer.multi_scale_deformable_attention is fast_deformable_attention
    hooked = [type(m).__name__ for m in model.modules() if getattr(m, "_contiguous_inputs", False)]
    assert hooked.count("OneFormerTransformerDecoderQueryTransformerDecoder") == 1
    assert hooked.count("OneFormerTransformerDecoderCrossAttentionLayer") == model.config.decoder_layers - 1
    unweighted = [m for m in model.modules() if getattr(m, "_no_attention_weights", False)]
    assert len(unweighted) == 2 * model.config.query_dec_layers


def test_contiguous_attention_inputs_changes_no_value():
    from src.modelling.model import _new_model, build_config, set_training_mode

    torch.manual_seed(0)
    plain = _new_model(build_config("galaxy-tiny"))
    set_training_mode(plain, False)
    hooked = copy.deepcopy(plain)
    contiguous_attention_inputs(hooked)
    contiguous_attention_inputs(hooked)  # idempotent: one hook
    assert sum(len(m._forward_pre_hooks) for m in hooked.modules()) == hooked.config.decoder_layers
    pixels = torch.randn(2, 3, 64, 64)
    task = torch.randint(0, 100, (2, 77))
    with torch.no_grad():
        a = plain(pixel_values=pixels, task_inputs=task)
        b = hooked(pixel_values=pixels, task_inputs=task)
    assert torch.equal(a.class_queries_logits, b.class_queries_logits)
    assert torch.equal(a.masks_queries_logits, b.masks_queries_logits)


def test_unweighted_query_attention_same_output_and_training_untouched():
    from src.modelling.model import _new_model, build_config, set_training_mode

    torch.manual_seed(0)
    plain = _new_model(build_config("galaxy-tiny"))
    set_training_mode(plain, False)
    hooked = copy.deepcopy(plain)
    unweighted_query_attention(hooked)
    unweighted_query_attention(hooked)  # idempotent: one hook per attention layer
    attentions = [m for m in hooked.modules() if getattr(m, "_no_attention_weights", False)]
    assert attentions and all(len(m._forward_pre_hooks) == 1 for m in attentions)
    calls = []
    attentions[0].register_forward_hook(lambda module, args, output: calls.append(output[1]))
    pixels = torch.randn(2, 3, 64, 64)
    task = torch.randint(0, 100, (2, 77))
    with torch.no_grad():
        a = plain(pixel_values=pixels, task_inputs=task)
        b = hooked(pixel_values=pixels, task_inputs=task)
    assert calls == [None]  # the map was not computed
    torch.testing.assert_close(b.class_queries_logits, a.class_queries_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.masks_queries_logits, a.masks_queries_logits, rtol=1e-4, atol=1e-4)
    a = plain(pixel_values=pixels, task_inputs=task)
    b = hooked(pixel_values=pixels, task_inputs=task)
    assert calls[-1] is not None  # with gradients on, nothing changes
    assert torch.equal(a.masks_queries_logits, b.masks_queries_logits)

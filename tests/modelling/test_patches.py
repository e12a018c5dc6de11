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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sampling_locations_are_transformers_expression(dtype):
    from src.modelling.patches import sampling_locations

    torch.manual_seed(1)
    batch, queries, heads, points = 2, 11, 3, 4
    shapes = torch.tensor([[8, 6], [4, 3], [2, 2]])
    reference_points = torch.rand(batch, queries, len(shapes), 2)
    offsets = (torch.randn(batch, queries, heads, len(shapes), points, 2) * 3).to(dtype)
    normaliser = torch.stack([shapes[..., 1], shapes[..., 0]], -1)
    want = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
    got = sampling_locations(reference_points, offsets, shapes)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got, want)


def test_patched_pixel_decoder_attention_matches_transformers_forward():
    from src.modelling.patches import transformers_deformable_modules

    torch.manual_seed(2)
    install_fast_deformable_attention()
    attention = modeling_oneformer.OneFormerPixelDecoderEncoderMultiscaleDeformableAttention(16, 2, 3, 4).double()
    shapes_list = [(6, 5), (3, 3), (2, 1)]
    shapes = torch.tensor(shapes_list)
    tokens = sum(h * w for h, w in shapes_list)
    hidden = torch.randn(2, tokens, 16, dtype=torch.float64, requires_grad=True)
    position = torch.randn(2, tokens, 16, dtype=torch.float64)
    reference_points = torch.rand(2, tokens, 3, 2, dtype=torch.float64)
    kwargs = dict(
        encoder_hidden_states=hidden,
        position_embeddings=position,
        reference_points=reference_points,
        spatial_shapes=shapes,
        spatial_shapes_list=shapes_list,
    )
    got, got_weights = attention(hidden, **kwargs)
    with transformers_deformable_modules():
        assert modeling_oneformer.multi_scale_deformable_attention is not fast_deformable_attention
        want, want_weights = attention(hidden, **kwargs)
    assert modeling_oneformer.multi_scale_deformable_attention is fast_deformable_attention  # back after the block
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(got_weights, want_weights)
    grad = torch.randn_like(want)
    (got_grad,) = torch.autograd.grad(got, hidden, grad)
    (want_grad,) = torch.autograd.grad(want, hidden, grad)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.flatten(2).permute(2, 0, 1),  # (tokens, batch, dim) of a (batch, dim, h, w) map: two steps
        lambda x: x.flatten(2).transpose(1, 2).transpose(0, 1),  # the same view reached another way
        lambda x: x.flatten(2).transpose(1, 2),  # (batch, tokens, dim): a plain copy
        lambda x: x.flatten(2),  # already contiguous
    ],
)
def test_tokens_first_contiguous_is_contiguous_with_the_same_values(make):
    from src.modelling.patches import tokens_first_contiguous

    view = make(torch.randn(3, 5, 4, 6))
    out = tokens_first_contiguous(view)
    assert out.is_contiguous() and out.shape == view.shape
    assert torch.equal(out, view)


def test_position_embeddings_cached_per_shape_and_inference_mode():
    from src.modelling.patches import cache_position_embeddings

    cache_position_embeddings()
    cache_position_embeddings()  # idempotent
    from src.modelling.patches import _REPLACED

    embedding = modeling_oneformer.OneFormerSinePositionEmbedding(num_position_features=8, normalize=True)
    uncached = _REPLACED["build_sine_position_embedding"]
    shapes = [torch.Size([2, 16, 8, 8]), torch.Size([2, 16, 4, 4]), torch.Size([2, 16, 2, 2])]
    first = [embedding(s, "cpu", torch.float32) for s in shapes]
    again = [embedding(s, "cpu", torch.float32) for s in shapes]
    assert all(a is b for a, b in zip(first, again))  # several shapes in turn all stay cached
    assert torch.equal(first[0], uncached(shapes[0], "cpu", torch.float32, 8, True, 2 * torch.pi, 10000, None))
    with torch.inference_mode():
        inference = embedding(shapes[0], "cpu", torch.float32)
    assert inference is not first[0] and torch.equal(inference, first[0])
    assert not first[0].is_inference()
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    masked = embedding(shapes[0], "cpu", torch.float32, mask)
    assert masked is not first[0] and embedding(shapes[0], "cpu", torch.float32, mask) is not masked
    torch.testing.assert_close(masked, first[0])

"""Changes to transformers' OneFormer, in one place: speed on the CPU (same outputs within float rounding) and the
two that several training processes need.

* :func:`install_fast_deformable_attention` replaces the pure-PyTorch multi-scale deformable attention of the
  pixel decoder by one that never builds the stacked ``(batch x heads, dim, queries, levels, points)`` tensor, and
  computes the sampling locations without broadcasting over the innermost axes (:func:`sampling_locations`);
  with the patches below, the demo model's forward pass at 256 px, batch 8, runs faster than transformers' own
  on 2 cores with the same labels (``bench/precision_parity.py --compare patches``).
* :func:`contiguous_attention_inputs` hands the query transformer and the decoder's cross-attention layers their
  memory in contiguous layout (:func:`tokens_first_contiguous`): under bf16 autocast, a linear layer on the
  permuted ``(tokens, batch, dim)`` view made PyTorch expand its weight to one copy per token (a 4096 x 128 x 128
  batched matmul), which is why the bf16 forward ran 3x slower than fp32.
* :func:`cache_position_embeddings` keeps the sine position embeddings of every feature-map shape.
* :func:`unweighted_query_attention` spares the query transformer's attention layers the attention maps that
  transformers discards, at inference.
* :func:`attention_kernels`: the attention kernel of a CPU training step.
* :func:`freeze_unused_parameters` and :func:`count_masks_per_process`: see their docstrings.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn import functional as F

#: What the install functions replaced, by name.
_REPLACED: dict = {}


def fast_deformable_attention(
    value: torch.Tensor, value_spatial_shapes, sampling_locations: torch.Tensor, attention_weights: torch.Tensor
) -> torch.Tensor:
    """Multi-scale deformable attention (Zhu et al. 2021), as ``transformers``' ``multi_scale_deformable_attention``.

    The reference samples every level, stacks the samples of all levels and points and weighs them in one
    product; here each level's samples are weighed and summed as soon as they are drawn, so the largest
    temporary is one level's samples (a quarter of the stack at 4 levels x 4 points) and there is no stack to
    copy.  Same arithmetic, summed level by level: outputs agree to float rounding (tests/modelling/test_patches.py).

    Parameters
    ----------
    value : Tensor ``(batch, tokens, heads, dim)``
    value_spatial_shapes : sequence of ``(height, width)`` per level, pixels of that level's feature map
    sampling_locations : Tensor ``(batch, queries, heads, levels, points, 2)``, normalised to [0, 1]
    attention_weights : Tensor ``(batch, queries, heads, levels, points)``

    Returns
    -------
    Tensor ``(batch, queries, heads x dim)``
    """
    batch, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    per_level = value.split([int(h) * int(w) for h, w in value_spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1
    # points ahead of queries: the weighted sum then runs over a middle axis, vectorised along the queries, which
    # is 3-4x faster on the CPU than a sum over an innermost axis of 4; each output element sums the same terms
    weights = attention_weights.permute(0, 2, 3, 4, 1).reshape(batch * heads, 1, levels, points, queries)
    output = None
    for level, (height, width) in enumerate(value_spatial_shapes):
        level_value = per_level[level].flatten(2).transpose(1, 2).reshape(batch * heads, dim, int(height), int(width))
        grid = grids[:, :, :, level].permute(0, 2, 3, 1, 4).flatten(0, 1)  # (batch x heads, points, queries, 2)
        samples = F.grid_sample(level_value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # the weights in the samples' dtype (float32 under autocast, where grid_sample runs in float32): a product
        # of mixed dtypes takes PyTorch's slow casting loop; the values are the same
        term = (samples * weights[:, :, level].to(samples.dtype)).sum(2)  # (batch x heads, dim, queries)
        output = term if output is None else output + term
    return output.view(batch, heads * dim, queries).transpose(1, 2).contiguous()


def sampling_locations(reference_points: torch.Tensor, offsets: torch.Tensor, spatial_shapes) -> torch.Tensor:
    """``reference_points[:, :, None, :, None, :] + offsets / (width, height)`` of each level, as transformers
    writes it, without its broadcasts over the two innermost axes (a loop of 2 elements, 2 ms per product at
    1344 queries x batch 8): the normaliser and the reference points are laid out along the last
    ``levels x points x 2`` values instead.  Same dtypes, same values.

    Parameters
    ----------
    reference_points : Tensor ``(batch, queries, levels, 2)``, normalised to [0, 1]
    offsets : Tensor ``(batch, queries, heads, levels, points, 2)``, pixels of each level
    spatial_shapes : Tensor ``(levels, 2)`` of ``(height, width)``

    Returns
    -------
    Tensor ``(batch, queries, heads, levels, points, 2)``
    """
    batch, queries, heads, levels, points, _ = offsets.shape
    normaliser = spatial_shapes.flip(-1)[:, None, :].expand(levels, points, 2).reshape(-1)
    scaled = offsets.reshape(batch, queries, heads, -1) / normaliser
    reference = reference_points[:, :, :, None, :].expand(batch, queries, levels, points, 2)
    located = reference.reshape(batch, queries, 1, -1) + scaled
    return located.view(batch, queries, heads, levels, points, 2)


def _deformable_attention_forward(
    self,
    hidden_states,
    attention_mask=None,
    encoder_hidden_states=None,
    encoder_attention_mask=None,
    position_embeddings=None,
    reference_points=None,
    spatial_shapes=None,
    level_start_index=None,
    output_attentions=False,
    spatial_shapes_list=None,
):
    """transformers' ``OneFormerPixelDecoderEncoderMultiscaleDeformableAttention.forward`` with
    :func:`sampling_locations` and :func:`fast_deformable_attention` (2-d reference points, the pixel decoder's)."""
    if reference_points is None or reference_points.shape[-1] != 2 or spatial_shapes_list is None:
        return _REPLACED["deformable_attention_forward"](
            self,
            hidden_states,
            attention_mask,
            encoder_hidden_states,
            encoder_attention_mask,
            position_embeddings,
            reference_points,
            spatial_shapes,
            level_start_index,
            output_attentions,
            spatial_shapes_list,
        )
    if position_embeddings is not None:
        hidden_states = hidden_states + position_embeddings
    batch, queries, _ = hidden_states.shape
    _, tokens, _ = encoder_hidden_states.shape
    if sum(int(h) * int(w) for h, w in spatial_shapes_list) != tokens:
        raise ValueError("Make sure to align the spatial shapes with the sequence length of the encoder hidden states")
    heads, levels, points = self.n_heads, self.n_levels, self.n_points
    value = self.value_proj(encoder_hidden_states)
    if attention_mask is not None:
        value = value.masked_fill(attention_mask[..., None], float(0))
    value = value.view(batch, tokens, heads, self.d_model // heads)
    offsets = self.sampling_offsets(hidden_states).view(batch, queries, heads, levels, points, 2)
    weights = self.attention_weights(hidden_states).view(batch, queries, heads, levels * points)
    weights = F.softmax(weights, -1).view(batch, queries, heads, levels, points)
    locations = sampling_locations(reference_points, offsets, spatial_shapes)
    output = self.output_proj(fast_deformable_attention(value, spatial_shapes_list, locations, weights))
    return output, weights


def install_fast_deformable_attention() -> None:
    """Make every OneFormer of this process use :func:`fast_deformable_attention` and :func:`sampling_locations`
    (idempotent).

    transformers looks the function up in its module at each call, so replacing the module attribute is enough for
    the first; the second replaces the pixel decoder attention's ``forward``.
    """
    from transformers.models.oneformer import modeling_oneformer

    if modeling_oneformer.multi_scale_deformable_attention is not fast_deformable_attention:
        _REPLACED["multi_scale_deformable_attention"] = modeling_oneformer.multi_scale_deformable_attention
    modeling_oneformer.multi_scale_deformable_attention = fast_deformable_attention
    attention = modeling_oneformer.OneFormerPixelDecoderEncoderMultiscaleDeformableAttention
    if attention.forward is not _deformable_attention_forward:
        _REPLACED["deformable_attention_forward"] = attention.forward
    attention.forward = _deformable_attention_forward


def transformers_deformable_attention():
    """transformers' own multi-scale deformable attention (the reference of the tests and benchmarks)."""
    from transformers.models.oneformer import modeling_oneformer

    current = modeling_oneformer.multi_scale_deformable_attention
    return _REPLACED.get("multi_scale_deformable_attention", current)


@contextlib.contextmanager
def transformers_deformable_modules():
    """transformers' own deformable attention (function and module ``forward``) for the duration of the block; the
    patches come back after it (the reference of ``bench/precision_parity.py --compare patches``)."""
    from transformers.models.oneformer import modeling_oneformer

    install_fast_deformable_attention()
    attention = modeling_oneformer.OneFormerPixelDecoderEncoderMultiscaleDeformableAttention
    modeling_oneformer.multi_scale_deformable_attention = _REPLACED["multi_scale_deformable_attention"]
    attention.forward = _REPLACED["deformable_attention_forward"]
    try:
        yield
    finally:
        install_fast_deformable_attention()


def tokens_first_contiguous(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor.contiguous()``, in two cheap copies when ``tensor`` is a ``(tokens, batch, dim)`` view of a
    ``(batch, dim, tokens)`` feature map (an image's features flattened and permuted, as transformers does): a
    transpose within each image, then a swap of the two outer axes, each reading and writing long runs of memory.
    PyTorch's single copy of that permutation strides through memory at every element, several times slower at
    4096 tokens x 8 images x 128.  Same values."""
    if tensor.is_contiguous() or tensor.dim() != 3 or tensor.stride(0) != 1:
        return tensor.contiguous()
    feature_map = tensor.permute(1, 2, 0)  # (batch, dim, tokens)
    if not feature_map.is_contiguous():
        return tensor.contiguous()
    return feature_map.transpose(1, 2).contiguous().transpose(0, 1).contiguous()


#: Position embeddings kept per process (one per feature-map shape, device, dtype and inference mode).
POSITION_CACHE_SIZE = 32


def cache_position_embeddings() -> None:
    """Keep OneFormer's sine position embeddings of recent feature-map shapes (idempotent).

    transformers caches only the last one, but a forward pass asks for six or seven shapes in turn (three levels in
    the pixel decoder, three in the transformer module, the mask features), so each is rebuilt at every pass: about
    1 ms per image at 256 px, batch 8.  Same tensors.  Calls with a padding mask are not cached (the mask differs
    from batch to batch); the inference mode is part of the key, since a tensor made under
    ``torch.inference_mode`` cannot take part in a training step's autograd.
    """
    import functools

    from transformers.models.oneformer import modeling_oneformer as oneformer

    embedding = oneformer.OneFormerSinePositionEmbedding
    if getattr(embedding.build_sine_position_embedding, "_project_cache", False):
        return
    build = getattr(embedding.build_sine_position_embedding, "__wrapped__", embedding.build_sine_position_embedding)
    _REPLACED["build_sine_position_embedding"] = build

    @functools.lru_cache(maxsize=POSITION_CACHE_SIZE)
    def cached(inference: bool, *args):
        return build(*args)

    def build_sine_position_embedding(*args, **kwargs):
        if kwargs or (len(args) >= 8 and args[7] is not None) or torch.compiler.is_compiling():
            return build(*args, **kwargs)
        return cached(torch.is_inference_mode_enabled(), *args)

    build_sine_position_embedding._project_cache = True
    embedding.build_sine_position_embedding = staticmethod(build_sine_position_embedding)


def _contiguous_inputs(module, args, kwargs):
    args = tuple(tokens_first_contiguous(a) if torch.is_tensor(a) else a for a in args)
    kwargs = {k: tokens_first_contiguous(v) if torch.is_tensor(v) else v for k, v in kwargs.items()}
    return args, kwargs


def contiguous_attention_inputs(model) -> None:
    """Give the query transformer's decoder and the cross-attention layers contiguous inputs (their memory is a
    permuted view of image features).  Values are unchanged; only the layout, which decides the matmul kernel, is."""
    from transformers.models.oneformer import modeling_oneformer as oneformer

    kinds = (
        oneformer.OneFormerTransformerDecoderQueryTransformerDecoder,
        oneformer.OneFormerTransformerDecoderCrossAttentionLayer,
    )
    for module in model.modules():
        if isinstance(module, kinds) and not getattr(module, "_contiguous_inputs", False):
            module.register_forward_pre_hook(_contiguous_inputs, with_kwargs=True)
            module._contiguous_inputs = True


def _no_attention_weights(module, args, kwargs):
    if torch.is_grad_enabled():
        return None
    return args, {**kwargs, "need_weights": False}


def unweighted_query_attention(model) -> None:
    """Let the query transformer's attention layers skip their attention maps when no gradient is recorded.

    ``nn.MultiheadAttention`` returns its head-averaged attention map unless told ``need_weights=False``, and
    computing it keeps PyTorch on its explicit batched-matmul path, with a transposed copy of the 4096-token keys;
    transformers' query transformer throws the map away.  Without it the fused scaled-dot-product kernel runs:
    same attention output to float rounding (tests/modelling/test_patches.py).  Training (gradients on) is untouched.
    """
    from transformers.models.oneformer import modeling_oneformer as oneformer

    for layer in model.modules():
        if isinstance(layer, oneformer.OneFormerTransformerDecoderQueryTransformerDecoderLayer):
            for attention in (layer.self_attn, layer.multihead_attn):
                if not getattr(attention, "_no_attention_weights", False):
                    attention.register_forward_pre_hook(_no_attention_weights, with_kwargs=True)
                    attention._no_attention_weights = True


def attention_kernels(device: torch.device):
    """The scaled-dot-product-attention kernels of a training step: on the CPU the plain (math) one, whose backward
    pass ran the ``galaxy-small`` step 4 % faster than the flash kernel's at these sizes
    (``bench/profile_train_step.py``); elsewhere PyTorch's choice."""
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH]) if torch.device(device).type == "cpu" else contextlib.nullcontext()


def freeze_unused_parameters(model) -> list[str]:
    """Switch off the gradient of parameters that no forward pass uses; returns their names.

    The Swin backbone builds a ``SwinModel`` whose final LayerNorm (``swin.layernorm``, for image
    classification) never sees a tensor: ``SwinBackbone`` normalises each stage with its own
    ``hidden_states_norms`` (transformers lists ``swin.layernorm`` in ``_keys_to_ignore_on_load_missing``).
    DistributedDataParallel waits for a gradient of every parameter that requires one, so it stops at the
    second step.  The graph is the same for every task and image, so freezing (rather than DDP's per-step
    unused-parameter search) is enough; in one process nothing changes, since AdamW skips parameters without a
    gradient.  The weights stay in the state dict.
    """
    frozen = []
    backbone = model.model.pixel_level_module.encoder
    swin = getattr(backbone, "swin", None)
    if swin is not None and getattr(swin, "layernorm", None) is not None:
        for name, param in swin.layernorm.named_parameters():
            param.requires_grad_(False)
            frozen.append(f"model.pixel_level_module.encoder.swin.layernorm.{name}")
    return frozen


def count_masks_per_process(model) -> None:
    """Normalise the mask losses by this process's own number of target masks, as one process does.

    transformers 5.23's ``OneFormerLoss.get_num_masks`` averages the count over the processes with Accelerate's
    ``reduce`` (whose default reduction is the mean) and then divides by the number of processes again, so with
    N processes the mask and Dice losses weigh N times more than in one process (measured on the same images:
    a loss of 37.0 with 2 processes, 22.9 with one).  With the count of each process's own batch instead, N
    processes with batch size B compute what one process computes with batch size B and ``--grad-accum N``
    (same batches, same normalisation; DDP averages the gradients as accumulation does), and the loss has no
    collective call, so validation needs no lockstep.  One process is unchanged.
    """

    def get_num_masks(class_labels, device):
        count = torch.as_tensor([float(sum(len(classes) for classes in class_labels))], device=device)
        return torch.clamp(count, min=1)

    model.criterion.get_num_masks = get_num_masks

"""OneFormer model, configuration and processor for the galaxy classes; offline by default.

Three sources of a model, all returning ``(model, processor)`` through :func:`load_model`:

* an offline **preset** (``PRESETS``; random initialisation, no network at all);
* a ``save_pretrained`` **directory** (our exports under ``safetensors/NAME/``) or a hub **model card**
  (the only case that may touch the network; when it fails the error names the offline presets);
* a bare **``.safetensors`` state dict** written by ``safetensors.torch.save_model`` (the original project's
  published ``galaxy_sem_5_1.safetensors`` / ``galaxy_sem_inst_10_2.safetensors``), loaded into the
  ``swin-tiny`` preset architecture (= ``shi-labs/oneformer_ade20k_swin_tiny`` with 6 labels).

Names are resolved by :func:`resolve_model_source` without the network: ``safetensors/galaxy_sem_5_1`` (as the
original project's users type it) finds ``safetensors/galaxy_sem_5_1.safetensors``; only an ``org/name`` card
that is not a local path reaches the hub.

The processor is ``OneFormerImageProcessorPil`` (no torchvision) plus a ``CLIPTokenizer`` built from the CLIP BPE
vocabulary that ships inside the ``open_clip_torch`` wheel, with the class metadata of ``src.classes``.

OneFormer's ``config.is_training`` switches on the text mapper (contrastive loss, needs ``text_inputs``) and the
pixel-decoder dropout; :func:`set_training_mode` flips it on a built model, so one model object serves training
(``True``) and inference / validation (``False``).
"""

from __future__ import annotations

import copy
import functools
import gzip
import importlib.util
import json
import os
from pathlib import Path

from transformers import (
    CLIPTokenizer,
    OneFormerConfig,
    OneFormerForUniversalSegmentation,
    OneFormerImageProcessorPil,
    OneFormerProcessor,
    SwinConfig,
)

from src.allocator import tune_allocator
from src.classes import ID2LABEL, LABEL2ID, NUM_LABELS, class_info
from src.modelling.patches import (
    cache_position_embeddings,
    contiguous_attention_inputs,
    install_fast_deformable_attention,
    unweighted_query_attention,
)

HUB_SWIN_TINY = "shi-labs/oneformer_ade20k_swin_tiny"
#: Sequence lengths of the hub cards' processor (``max_seq_length``, ``task_seq_length``) and config.
SEQ_LEN = 77
CLASS_INFO_FILE = "galaxy_class_info.json"
#: Real cutout pixel statistics (0-255) used when no ``dataset_stats.json`` is given.
DEFAULT_MEAN = (8.6, 6.0, 4.9)
DEFAULT_STD = (14.7, 12.4, 8.7)

_OUT = ["stage1", "stage2", "stage3", "stage4"]


def _swin(embed_dim: int, depths: list, num_heads: list, window_size: int, drop_path_rate: float, image_size: int):
    """SwinConfig kwargs of a preset's backbone, with all four stages as outputs.

    Parameters
    ----------
    embed_dim, depths, num_heads, window_size, drop_path_rate, image_size
        The SwinConfig arguments of the same names.

    Returns
    -------
    dict
        SwinConfig kwargs.
    """
    return dict(
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
        drop_path_rate=drop_path_rate,
        image_size=image_size,
        out_features=_OUT,
    )


def _compact_oneformer(
    num_queries: int,
    width: int,
    feedforward: int,
    layers: tuple[int, int],
    heads: int,
    text: tuple[int, int],
    points: int,
    **extra,
) -> dict:
    """OneFormerConfig kwargs of a reduced preset: no dropout, one width for every feature and text channel.

    Parameters
    ----------
    num_queries : int
        Object queries.
    width : int
        ``conv_dim``, ``mask_dim``, ``hidden_dim`` and ``text_encoder_width`` (check_config wants them equal).
    feedforward : int
        ``encoder_feedforward_dim`` and ``dim_feedforward``.
    layers : tuple of int
        ``(encoder_layers, decoder_layers)``.
    heads : int
        ``num_attention_heads``.
    text : tuple of int
        ``(text_encoder_num_layers, text_encoder_n_ctx)``.
    points : int
        ``train_num_points``.
    **extra
        Further OneFormerConfig kwargs.

    Returns
    -------
    dict
        OneFormerConfig kwargs.
    """
    return dict(
        num_queries=num_queries,
        dropout=0.0,
        conv_dim=width,
        mask_dim=width,
        hidden_dim=width,
        encoder_layers=layers[0],
        encoder_feedforward_dim=feedforward,
        decoder_layers=layers[1],
        dim_feedforward=feedforward,
        num_attention_heads=heads,
        text_encoder_width=width,
        text_encoder_num_layers=text[0],
        text_encoder_n_ctx=text[1],
        train_num_points=points,
        **extra,
    )


#: Offline architectures.  Each entry: ``backbone`` (SwinConfig kwargs) and ``oneformer`` (OneFormerConfig kwargs).
PRESETS: dict[str, dict] = {
    # shi-labs/oneformer_ade20k_swin_tiny: the OneFormerConfig defaults (Swin-T 96, depths 2-2-6-2, 150 queries).
    "swin-tiny": {
        "backbone": _swin(96, [2, 2, 6, 2], [3, 6, 12, 24], window_size=7, drop_path_rate=0.3, image_size=224),
        "oneformer": dict(num_queries=150),
    },
    # Reduced for CPU training (>= 4 img/s at 128 px on 2 cores, see bench/bench_train.py), ~12M parameters.
    # No dropout / drop path: trained from scratch for minutes, the model underfits, and with dropout 0.1 its
    # class logits in eval mode drifted far from those in training mode (the query transformer's post-norm
    # layers see other activation statistics without dropout): validation cross-entropy 19 vs 2.7 on the same
    # images, see the "dropout" note in docs/results-history.md.  Class loss weight 10 (OneFormer's default: 2,
    # against 5 + 5 for the mask losses): the spiral / barred-spiral distinction needs the backbone to learn the
    # bar, and a larger share of the gradient for the class loss helps it do so within the demo's 10 minutes
    # (weight 5 / 10 with training seeds 0 and 2: spiral IoU 0.09 / 0.59 and 0.00 / 0.29,
    # bench/bench_demo_quality.py).
    "galaxy-small": {
        "backbone": _swin(48, [1, 1, 2, 1], [3, 6, 12, 24], window_size=7, drop_path_rate=0.0, image_size=128),
        "oneformer": _compact_oneformer(
            32, width=128, feedforward=512, layers=(2, 4), heads=4, text=(2, 8), points=2048, class_weight=10.0
        ),
    },
    # Test-only: as small as OneFormer allows, so tests at 32-64 px take seconds.  conv_dim = hidden_dim, as in
    # every preset (see check_config).
    "galaxy-tiny": {
        "backbone": _swin(8, [1, 1, 1, 1], [1, 1, 1, 1], window_size=4, drop_path_rate=0.0, image_size=64),
        "oneformer": _compact_oneformer(
            8,
            width=64,
            feedforward=32,
            layers=(1, 2),
            heads=2,
            text=(1, 2),
            points=256,
            query_dec_layers=1,
            text_encoder_proj_layers=1,
        ),
    },
}


class ModelSourceError(ValueError):
    """A model name that is neither a preset, a local directory/file, nor a reachable hub card."""


# ----------------------------------------------------------------------------------------------- sources
#: Where trained models live (``safetensors/NAME/`` exports, the original ``safetensors/NAME.safetensors``).
MODELS_DIR = "safetensors"


def looks_local(name: str) -> bool:
    """A name that can only mean a local file or folder, never a hub card (``org/name``): an absolute or
    ``./``, ``../``, ``~`` path, a ``.safetensors`` name, a bare name or one of three or more parts, or
    ``X/name`` where ``X`` is a local folder or :data:`MODELS_DIR`."""
    path = Path(name)
    return (
        path.is_absolute()
        or name.startswith((".", "~"))
        or "\\" in name
        or path.suffix == ".safetensors"
        or len(path.parts) != 2
        or path.parts[0] == MODELS_DIR
        or Path(path.parts[0]).is_dir()
    )


def resolve_model_source(name: str | os.PathLike) -> tuple[str, str]:
    """``(kind, source)`` of a model name, without touching the network.

    ``kind`` is ``"preset"``, ``"export"`` (a ``save_pretrained`` folder), ``"state_dict"`` (a bare
    ``.safetensors`` file) or ``"hub"``.  A local-looking name (:func:`looks_local`) is tried as given, then with
    ``.safetensors`` appended, and a bare name also under :data:`MODELS_DIR`: so the original project's
    ``safetensors/galaxy_sem_5_1`` finds ``safetensors/galaxy_sem_5_1.safetensors``.  A local-looking name that
    matches nothing is a :class:`ModelSourceError` listing what was tried; only an ``org/name`` card reaches the hub.
    """
    name = str(name)
    if name in PRESETS:
        return "preset", name
    path = Path(name).expanduser()
    candidates = [path]
    if path.suffix != ".safetensors":
        candidates.append(path.with_name(path.name + ".safetensors"))
    if len(path.parts) == 1:
        candidates += [Path(MODELS_DIR) / c.name for c in candidates]
    for candidate in candidates:
        if candidate.is_dir():
            if not (candidate / "config.json").is_file():
                raise ModelSourceError(
                    f"{candidate}: not a model folder (no config.json; expected a "
                    "save_pretrained export, e.g. one written by train_script.py)"
                )
            return "export", str(candidate)
        if candidate.is_file():
            if candidate.suffix != ".safetensors":
                raise ModelSourceError(
                    f"{candidate}: not a model: expected a save_pretrained folder or a .safetensors state dict"
                )
            return "state_dict", str(candidate)
    if looks_local(name):
        raise ModelSourceError(
            f"model {name!r} not found (tried {', '.join(str(c) for c in candidates)}); presets: {', '.join(PRESETS)}"
        )
    return "hub", name


# ----------------------------------------------------------------------------------------------- tokenizer
def clip_vocab_path() -> Path:
    """``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``open_clip`` package (never imported)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            "the CLIP BPE vocabulary ships in open_clip_torch: pip install --no-deps open_clip_torch (see the Makefile)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise ModelSourceError(f"{path}: CLIP BPE vocabulary not found in the open_clip_torch install")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable character table (the order fixes the first 256 token ids)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@functools.lru_cache(maxsize=1)
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    # The CLIP construction (openai/CLIP simple_tokenizer.py): 48,894 merges, 49,408 tokens.
    lines = gzip.open(clip_vocab_path(), "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def offline_tokenizer() -> CLIPTokenizer:
    """The OneFormer (CLIP) tokenizer built offline; same ids as the hub cards' tokenizer."""
    vocab, merges = _clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=SEQ_LEN)


# ----------------------------------------------------------------------------------------------- config
def build_config(preset_or_card: str = "galaxy-small", num_queries: int | None = None) -> OneFormerConfig:
    """OneFormer configuration with the 6 galaxy labels: an offline preset, a local directory or a hub card."""
    if preset_or_card in PRESETS:
        spec = PRESETS[preset_or_card]
        backbone = SwinConfig(**spec["backbone"])
        config = OneFormerConfig(backbone_config=backbone, **spec["oneformer"])
    elif Path(preset_or_card).is_dir():
        check_model_type(_read_config_json(Path(preset_or_card) / "config.json"), preset_or_card)
        config = OneFormerConfig.from_pretrained(preset_or_card)
    else:
        try:
            raw = OneFormerConfig.get_config_dict(preset_or_card)[0]
        except (OSError, ValueError):
            raw = None  # _from_source says why
        if raw is not None:
            check_model_type(raw, preset_or_card)
        config = _from_source(OneFormerConfig, preset_or_card)
    check_config(config, preset_or_card)
    config.num_labels = NUM_LABELS
    config.id2label = dict(ID2LABEL)
    config.label2id = dict(LABEL2ID)
    if num_queries is not None:
        if num_queries <= config.text_encoder_n_ctx:
            raise ValueError(f"num_queries={num_queries} must exceed text_encoder_n_ctx={config.text_encoder_n_ctx}")
        config.num_queries = num_queries
    return config


def _read_config_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelSourceError(f"{path}: unreadable model configuration ({err})") from None
    if not isinstance(config, dict):
        raise ModelSourceError(f"{path}: not a model configuration (a JSON {type(config).__name__})")
    return config


def check_model_type(config: dict, name: str) -> None:
    """Refuse a configuration of another architecture: transformers would only warn, then build a OneFormer from
    the other model's settings (random weights where the names differ)."""
    if config.get("model_type") != OneFormerConfig.model_type:
        raise ModelSourceError(
            f"{name}: model_type {config.get('model_type')!r} in its config.json, not "
            f"{OneFormerConfig.model_type!r}: this project runs OneFormer models only"
        )


def check_weights(path: str | os.PathLike) -> None:
    """Read the header of a ``.safetensors`` file: a truncated or garbage file is a :class:`ModelSourceError`
    naming it (the ``safetensors`` library raises its own exception type, which names no file)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelSourceError(f"{path}: not a readable .safetensors file ({err}); truncated or not a model") from None


def check_config(config: OneFormerConfig, name: str = "") -> None:
    """Refuse a configuration whose transformer module would need input projections (``conv_dim`` different from
    ``hidden_dim``, or ``enforce_input_proj``).

    transformers 5.23 keeps those 1x1 convolutions in a plain Python list (``OneFormerTransformerModule.
    input_projections``), so they are not registered: never trained, never saved, and after ``from_pretrained``
    they hold uninitialised (meta) weights whose outputs change from call to call (measured: NaN or 1e38 values
    in the class logits on repeated calls with the same image).  With equal sizes they are identities.
    """
    if config.conv_dim != config.hidden_dim or getattr(config, "enforce_input_proj", False):
        raise ValueError(
            f"{name or 'OneFormer config'}: conv_dim {config.conv_dim} != hidden_dim {config.hidden_dim} "
            "(or enforce_input_proj): transformers' OneFormer would leave the input projections "
            "unregistered (untrained, unsaved); use equal sizes"
        )


def _from_source(cls, name: str, **kwargs):
    """``cls.from_pretrained(name)`` of a hub card, with a clear error when it cannot be fetched."""
    try:
        return cls.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelSourceError(
            f"cannot load {name!r}: not a local directory, and the hub card could not be fetched ({err}). "
            f"Work offline with a preset ({', '.join(PRESETS)}), a save_pretrained directory, or a bare "
            f".safetensors state dict; or download the card first (huggingface-cli download {name})."
        ) from None


# ----------------------------------------------------------------------------------------------- processor
def num_text_for(config: OneFormerConfig) -> int:
    """Text queries per image: the contrastive loss pairs num_queries image queries with num_text + n_ctx texts."""
    return config.num_queries - config.text_encoder_n_ctx


def build_processor(
    image_size: int | None = None,
    mean=None,
    std=None,
    card: str | None = None,
    *,
    config: OneFormerConfig | None = None,
) -> OneFormerProcessor:
    """The OneFormer processor for galaxy images, offline unless ``card`` names a hub model card.

    ``image_size`` (pixels): resize to a square of that side; ``None`` keeps the input size.
    ``mean``/``std``: per-channel RGB statistics in 0-255 units (``dataset_stats.json``); default: real GZ2 cutouts.
    ``config``: the model's configuration (fixes ``num_text``); default: the swin-tiny preset (150 queries).
    """
    config = config or build_config("swin-tiny")
    if card is not None and card not in PRESETS:
        base = _from_source(OneFormerImageProcessorPil, card)
        tokenizer = _from_source(CLIPTokenizer, card)
        kwargs = {k: getattr(base, k) for k in ("resample", "do_resize", "size")}
    else:
        tokenizer = offline_tokenizer()
        kwargs = {"resample": 2}  # PIL bilinear, as the hub cards
    mean = DEFAULT_MEAN if mean is None else mean
    std = DEFAULT_STD if std is None else std
    if image_size is not None:
        kwargs.update(do_resize=True, size={"height": int(image_size), "width": int(image_size)})
    else:
        kwargs.setdefault("do_resize", False)
    image_processor = OneFormerImageProcessorPil(
        image_mean=[float(m) / 255.0 for m in mean],
        image_std=[float(s) / 255.0 for s in std],
        do_rescale=True,
        do_normalize=True,
        ignore_index=255,
        do_reduce_labels=False,
        num_labels=NUM_LABELS,
        num_text=num_text_for(config),
        class_info_file=None,
        **kwargs,
    )
    _attach_class_info(image_processor)
    return OneFormerProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        max_seq_length=config.text_encoder_context_length,
        task_seq_length=config.task_seq_len,
    )


def _attach_class_info(image_processor) -> None:
    """Galaxy class metadata (names, thing ids) on the image processor, from ``src.classes``."""
    from transformers.models.oneformer.image_processing_pil_oneformer import prepare_metadata

    image_processor.metadata = prepare_metadata(class_info())
    image_processor.class_info_file = None


def save_processor(processor: OneFormerProcessor, folder: str | os.PathLike) -> None:
    """``save_pretrained`` plus the class metadata JSON, so ``from_pretrained(folder)`` works offline."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # The class metadata is serialised with the image processor (its ``metadata`` attribute), so no
    # ``class_info_file`` / ``repo_path`` lookup happens at load time and the folder can move; the JSON beside it
    # is the same metadata in the hub cards' ``class_info_file`` format, for reference.
    (folder / CLASS_INFO_FILE).write_text(json.dumps(class_info(), indent=1))
    _attach_class_info(processor.image_processor)
    processor.save_pretrained(str(folder))


def load_processor(folder: str | os.PathLike, config: OneFormerConfig | None = None) -> OneFormerProcessor:
    """A saved processor; the class metadata comes from ``src.classes`` (robust to a moved folder)."""
    folder = Path(folder)
    image_processor = OneFormerImageProcessorPil.from_pretrained(str(folder))
    _attach_class_info(image_processor)
    if config is not None:
        image_processor.num_text = num_text_for(config)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError):
        tokenizer = offline_tokenizer()
    seq = config.text_encoder_context_length if config is not None else SEQ_LEN
    task_seq = config.task_seq_len if config is not None else SEQ_LEN
    return OneFormerProcessor(
        image_processor=image_processor, tokenizer=tokenizer, max_seq_length=seq, task_seq_length=task_seq
    )


# ----------------------------------------------------------------------------------------------- model
def set_training_mode(model: OneFormerForUniversalSegmentation, training: bool) -> None:
    """``model.train(training)`` plus OneFormer's own ``is_training`` flags (text mapper, contrastive loss)."""
    model.train(training)
    model.config.is_training = training
    for module in model.modules():
        if hasattr(module, "is_training"):
            module.is_training = training


def _new_model(config: OneFormerConfig) -> OneFormerForUniversalSegmentation:
    # Built with is_training=True so that the text mapper exists (training needs it); inference switches it off.
    config = copy.deepcopy(config)
    config.is_training = True
    return OneFormerForUniversalSegmentation(config)


def load_model(
    name_or_path: str,
    *,
    base_card: str | None = None,
    num_queries: int | None = None,
    device=None,
    image_size: int | None = None,
    mean=None,
    std=None,
):
    """``(model, processor)`` from a preset, a save_pretrained directory, a hub card or a bare ``.safetensors``
    (found as :func:`resolve_model_source` says: a local-looking name never reaches the network).

    The model is returned in inference mode (:func:`set_training_mode` ``False``); the text mapper exists, so
    ``set_training_mode(model, True)`` makes it trainable.  ``base_card`` is the architecture of a bare state
    dict (default the ``swin-tiny`` preset = ade20k_swin_tiny with 6 labels).  The process's C allocator is
    tuned for the model's large temporaries (:func:`src.allocator.tune_allocator`).
    """
    tune_allocator()
    kind, source = resolve_model_source(name_or_path)
    path = Path(source)
    if kind == "preset":
        config = build_config(source, num_queries)
        model = _new_model(config)
        processor = build_processor(image_size, mean, std, config=config)
    elif kind == "state_dict":
        model, processor = _load_state_dict_file(path, base_card or "swin-tiny", num_queries, image_size, mean, std)
    else:  # a save_pretrained directory (our exports) or a hub card
        config = build_config(source, num_queries)
        config.is_training = True
        if kind == "export":
            model = _load_export(path, config)
        else:
            model = _from_source(OneFormerForUniversalSegmentation, source, config=config, ignore_mismatched_sizes=True)
        saved_processor = ("processor_config.json", "preprocessor_config.json")
        if kind == "export" and any((path / f).is_file() for f in saved_processor):
            processor = load_processor(path, config)
            if image_size is not None:
                processor.image_processor.size = {"height": image_size, "width": image_size}
                processor.image_processor.do_resize = True
        else:
            processor = build_processor(image_size, mean, std, card=None if kind == "export" else source, config=config)
    set_training_mode(model, False)
    install_fast_deformable_attention()
    cache_position_embeddings()
    contiguous_attention_inputs(model)
    unweighted_query_attention(model)
    if device is not None:
        model.to(device)
    return model, processor


def _load_export(path: Path, config: OneFormerConfig) -> OneFormerForUniversalSegmentation:
    """A save_pretrained directory.  Its text mapper (training-only, left out by :func:`save_export`) is
    re-initialised silently; any other missing, unexpected or mismatched weight is an error."""
    from transformers.utils import logging as hf_logging

    from safetensors import SafetensorError

    for weights in sorted(path.glob("*.safetensors")):
        check_weights(weights)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report would list the expected text-mapper keys
    try:
        model, info = OneFormerForUniversalSegmentation.from_pretrained(
            str(path), config=config, ignore_mismatched_sizes=True, output_loading_info=True
        )
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:  # e.g. no weights file, a corrupt .bin
        raise ModelSourceError(
            f"{path}: the model's weights cannot be loaded ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [k for k in info.get("missing_keys", []) if ".text_mapper." not in k]
    problems = missing + list(info.get("unexpected_keys", [])) + [str(m) for m in info.get("mismatched_keys", [])]
    if problems:
        raise ModelSourceError(
            f"{path}: weights do not match its config.json ({len(problems)} keys; e.g. {problems[:3]})"
        )
    return model


def _load_state_dict_file(path: Path, base_card: str, num_queries, image_size, mean, std):
    from safetensors.torch import load_model as st_load_model

    check_weights(path)
    config = build_config(base_card, num_queries)
    model = _new_model(config)
    try:
        missing, unexpected = st_load_model(model, str(path), strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ModelSourceError(
            f"{path}: state dict does not match the {base_card!r} architecture with "
            f"{NUM_LABELS} labels ({str(err).splitlines()[1:2]}). Pass base_card= the "
            f"architecture it was saved from."
        ) from None
    # The text mapper is only needed for training (contrastive loss); inference-only exports may lack it.
    missing = [k for k in missing if ".text_mapper." not in k]
    if missing or unexpected:
        raise ModelSourceError(
            f"{path}: state dict does not match the {base_card!r} architecture with {NUM_LABELS} labels "
            f"({len(missing)} missing, {len(unexpected)} unexpected; e.g. {(missing + unexpected)[:3]}). "
            f"Pass base_card= the architecture it was saved from."
        )
    return model, build_processor(image_size, mean, std, config=config)


def check_export_folder(folder: str | os.PathLike) -> None:
    """An export replaces its folder as a whole: refuse a folder that holds anything but a former export (other
    files, or the ``checkpoints/`` of the former layout, in which they lived inside the export folder)."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder; choose another --output")
    if (folder / "checkpoints").exists():
        raise ValueError(
            f"{folder}: holds checkpoints/, which now live beside the export in {folder}.run/; move "
            f"{folder / 'checkpoints'} to {folder}.run/checkpoints (or choose another --output)"
        )
    if any(folder.iterdir()) and not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder}: not empty and not a model export; an export replaces its folder as a whole, "
            "so choose a new or an export folder for --output"
        )


def save_export(
    model, processor, folder: str | os.PathLike, extra_files: dict | None = None, extra_json: dict | None = None
) -> Path:
    """``save_pretrained`` folder for inference: config (``is_training`` false), weights, processor files, the
    ``extra_files`` (name -> source path; absent sources are left out), ``extra_json`` (name -> object) and the
    model card ``README.md`` (``src.modelling.model_card``).

    The text mapper (training-only) is left out so that ``from_pretrained`` loads without unused weights.  The
    export is written into a folder beside ``folder`` and then put in its place as a whole
    (``src.atomic.replace_folder``): a killed export leaves the former one, and files of two exports never mix.
    ``folder`` must be absent, empty or a former export (:func:`check_export_folder`).
    """
    import shutil
    import tempfile

    from src.atomic import replace_folder, write_json_atomic
    from src.modelling.model_card import write_model_card

    folder = Path(folder)
    check_export_folder(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.export-", dir=folder.parent))
    model = getattr(model, "module", model)
    state = {k: v for k, v in model.state_dict().items() if ".text_mapper." not in k}
    config = copy.deepcopy(model.config)
    config.is_training = False
    was = model.config
    model.config = config
    try:
        model.save_pretrained(str(staging), state_dict=state, safe_serialization=True)
        save_processor(processor, staging)
        for name, source in (extra_files or {}).items():
            if Path(source).is_file():
                shutil.copy2(source, staging / name)
        for name, obj in (extra_json or {}).items():
            write_json_atomic(staging / name, obj, indent=1)
        write_model_card(staging, path=str(folder))
        mask = _umask()
        for path in staging.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(path, 0o666 & ~mask)  # the usual permissions (the weights are written 0600)
        os.chmod(staging, 0o777 & ~mask)  # mkdtemp makes a 0700 folder
        replace_folder(staging, folder)
    finally:
        model.config = was
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())

"""Build a SAM 2 model from the ``sam2`` package's own config and load a checkpoint into it."""
from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import torch

from .table import ModelSpec
from .weights import CheckpointError

logger = logging.getLogger(__name__)

# Overrides Meta's build_sam2(apply_postprocessing=True) applies: when a single mask is asked for and
# it is not stable, fall back to the best of the multimask candidates.
POSTPROCESSING_OVERRIDES = {
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability": True,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta": 0.05,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh": 0.98,
}


def load_config(spec: ModelSpec, apply_postprocessing: bool):
    """The model's OmegaConf config, read from the file shipped in the ``sam2`` package.

    The file is read directly rather than through Hydra's global ``compose`` so that the plugin
    neither depends on nor touches the global Hydra state that ``sam2`` (or another plugin) set up.
    """
    from omegaconf import OmegaConf

    config_file = resources.files("sam2").joinpath(spec.config)
    cfg = OmegaConf.load(str(config_file))
    if apply_postprocessing:
        for key, value in POSTPROCESSING_OVERRIDES.items():
            OmegaConf.update(cfg, key, value, force_add=True)
    OmegaConf.resolve(cfg)
    return cfg


def build_model(spec: ModelSpec, checkpoint: Optional[Union[str, Path]],
                device: Union[str, torch.device] = "cpu", apply_postprocessing: bool = True):
    """Instantiate ``spec``'s architecture, load ``checkpoint`` (unless ``None``) and set eval mode.

    The checkpoint is a ``torch.save``'d dict whose ``"model"`` entry is the state dict (Meta's
    format). It is read with ``weights_only=True``: no pickled code runs.

    Raises:
        CheckpointError: the file is unreadable, not a SAM 2 checkpoint, or for another model size
            (missing / unexpected / mis-shaped keys); the message names the file and ``spec.name``.
    """
    import sam2  # noqa: F401  (registers the package; its configs' _target_s live there)
    from hydra.utils import instantiate

    model = instantiate(load_config(spec, apply_postprocessing).model, _recursive_=True)
    if checkpoint is not None:
        load_checkpoint(model, Path(checkpoint), spec)
    return model.to(device).eval()


def _read_problem(exc: BaseException) -> str:
    """A short, user-facing reason why ``torch.load(weights_only=True)`` refused a file."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: [^\s]+ [^\s]+", text)
    if found:
        return ("it holds pickled Python objects other than tensors, which could run code "
                f"({found.group(0)}); it was not loaded and nothing in it was run")
    if "Weights only load failed" in text:  # torch's long advice; keep its precise cause
        found = re.search(r"(Unsupported [^\n]*|WeightsUnpickler error: [^\n]+)", text)
        first = found.group(0).strip() if found else "not a weights-only pickle"
    else:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (f"it cannot be read as a PyTorch checkpoint ({type(exc).__name__}"
            f"{': ' + first[:200] if first else ''}); it may be truncated or not a checkpoint, "
            f"and nothing in it was run")


def _state_dict_of(data) -> Optional[dict]:
    """Meta's ``{"model": state_dict}``, or a bare state dict (every value a tensor)."""
    if not isinstance(data, dict):
        return None
    if "model" in data:
        return data["model"] if isinstance(data["model"], dict) else None
    if data and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        return data
    return None


def load_checkpoint(model: torch.nn.Module, path: Path, spec: ModelSpec) -> None:
    """Load Meta's checkpoint format into ``model`` strictly; errors name the file and the model.

    The file is a ``torch.save``'d ``{"model": state_dict}`` (a bare state dict is accepted too),
    read with ``weights_only=True`` so that no pickled code can run. Every key of the model must be
    present with the same shape, and no other key may be there.
    """
    path = Path(path)
    expected = (f"expected a {spec.name} checkpoint like {spec.filename} ({spec.size} bytes); "
                f"check model_name and model_weight_file")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist; {expected}.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip / unsafe-global / EOF errors: not a checkpoint
        raise CheckpointError(f"Checkpoint {path} is refused: {_read_problem(exc)}; "
                              f"{expected}.") from exc
    state = _state_dict_of(data)
    if state is None:
        what = (f"a dict with keys {', '.join(map(str, list(data)[:5]))}"
                if isinstance(data, dict) else f"a {type(data).__name__}")
        raise CheckpointError(f"Checkpoint {path} has no 'model' state dict (it holds {what}); "
                              f"{expected}.")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(map(str, set(state) - set(own)))
    mis_shaped = sorted(k for k in set(own) & set(state)
                        if not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape)
    if missing or unexpected or mis_shaped:
        details = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} "
                            f"({len(keys)})" for what, keys in
                            (("missing keys", missing), ("unexpected keys", unexpected),
                             ("wrong shapes", mis_shaped)) if keys)
        raise CheckpointError(f"Checkpoint {path} does not match model {spec.name} ({details}); "
                              f"it is probably another model size or version; {expected}.")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # e.g. a tensor of a type that cannot be copied into a parameter
        raise CheckpointError(f"Checkpoint {path} cannot be loaded into {spec.name} "
                              f"({type(exc).__name__}: {str(exc)[:200]}); {expected}.") from exc
    logger.info("Loaded checkpoint %s into %s", path, spec.name)

"""Model and weights: which SAM 2 models exist, where their checkpoints come from, how they are
loaded, and on which device and precision they run.

Entry points: :data:`MODELS` / :func:`get_model_spec` (the model table, the only list of model
names), :func:`ensure_checkpoint` (verified downloads), :func:`build_model` (a model from its
sam2 config and a checkpoint), :class:`DeviceChoice` / :func:`select_device` (device and
precision).

May import: nothing else of the engine.
"""
from .device import CPU, PRECISIONS, DeviceChoice, cuda_present, select_device
from .loader import build_model
from .table import DEFAULT_MODEL, MODELS, ModelSpec, get_model_spec
from .weights import CheckpointError, ensure_checkpoint, weight_file_problem

__all__ = ["CPU", "PRECISIONS", "DeviceChoice", "cuda_present", "select_device", "build_model",
           "DEFAULT_MODEL", "MODELS", "ModelSpec", "get_model_spec", "CheckpointError",
           "ensure_checkpoint", "weight_file_problem"]

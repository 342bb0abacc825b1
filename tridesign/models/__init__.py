"""Model zoo: one module per project; importing this package registers every model explicitly."""

from tridesign.models import deepzero, digits  # noqa: F401  (resnet20, and its trained twin resnet20_digits)
from tridesign.models import diffusion, dp4tl, idpatch, trimot, tvp, zoaeds  # noqa: F401
from tridesign.models import video_training  # noqa: F401  (qdtrack_center, the tracker's trained detector)
from tridesign.models.registry import ModelSpec, get_model, is_registered, list_models, register

__all__ = ["ModelSpec", "get_model", "is_registered", "list_models", "register"]

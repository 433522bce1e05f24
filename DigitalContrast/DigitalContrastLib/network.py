"""Build a network from a model card: a MONAI class from an allow-list, keyword arguments from JSON.

Nothing in a card is evaluated: the class name is looked up in :data:`ALLOWED_NETWORKS`, and the
keyword arguments must be names the class's constructor accepts, with JSON values (MONAI takes
lists where it documents sequences; ``act``/``norm`` given as ``[name, {args}]`` become tuples).
The networks map ``[batch, channels, z, y, x]`` float tensors to the same spatial shape.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .errors import ModelError

#: MONAI classes a card may name (all 3D dense-prediction networks with plain JSON arguments).
ALLOWED_NETWORKS = ("UNet", "BasicUNet", "AttentionUnet", "SegResNet", "DynUNet", "UNETR", "SwinUNETR")


def _network_class(name: str):
    if name not in ALLOWED_NETWORKS:
        raise KeyError(name)
    from monai.networks import nets

    return getattr(nets, name)


def _jsonable_to_monai(key: str, value: Any) -> Any:
    if key in {"act", "norm"} and isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return (value[0], dict(value[1]))
    return value


def build_network(class_name: str, kwargs: dict[str, Any], where: str = "the model card") -> torch.nn.Module:
    """Instantiate ``class_name`` (one of :data:`ALLOWED_NETWORKS`) with ``kwargs``.

    Raises:
        ModelError: the class is not allowed, an argument is unknown, or construction fails.
    """
    try:
        cls = _network_class(class_name)
    except (KeyError, AttributeError):
        raise ModelError(
            f"Network class '{class_name}' in {where} (field 'network/class') is not one of the allowed MONAI "
            f"networks ({', '.join(ALLOWED_NETWORKS)}); fix the card.",
            code="invalid_card",
        ) from None
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ModelError(
            f"Network arguments {unknown} in {where} (field 'network/kwargs') are not accepted by MONAI {class_name}; "
            "fix the card.",
            code="invalid_card",
        )
    try:
        return cls(**{k: _jsonable_to_monai(k, v) for k, v in kwargs.items()})
    except (TypeError, ValueError, AssertionError) as error:
        raise ModelError(
            f"MONAI {class_name} cannot be built from {where} (field 'network/kwargs'): {error}; fix the card.",
            code="invalid_card",
        ) from None


def count_parameters(network: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def load_network(card, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the card's network, load its verified weights (sha256 first) and return it in eval mode.

    Raises:
        ModelError: invalid network description, weights refused, or weights that do not fit.
    """
    from .weights import load_state_dict

    spec = card.data["network"]
    network = build_network(spec["class"], spec["kwargs"], where=str(card.path))
    state = load_state_dict(card)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ModelError(
            f"Weights file {card.weights_path} does not fit the network in {card.path} ({first}); "
            "the card and weights do not belong together, reinstall the model.",
            code="weights_mismatch",
        ) from None
    return network.to(device).eval()


def fold_batch_norm(network: torch.nn.Module) -> int:
    """Fold every eval-mode batch norm of MONAI ``Convolution`` blocks into the convolution before it.

    Inference-only (the running statistics become part of the weights); the function computed is
    unchanged up to float rounding and one memory pass per layer is saved. Returns how many
    layers were folded. The network must be in eval mode.
    """
    from monai.networks.blocks import Convolution
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for block in network.modules():
        adn = getattr(block, "adn", None)
        norm = getattr(adn, "N", None)
        if not isinstance(block, Convolution) or not isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
            continue
        if norm.training or not norm.track_running_stats:
            continue
        conv = block.conv
        transpose = isinstance(conv, torch.nn.modules.conv._ConvTransposeNd)
        block.conv = fuse_conv_bn_eval(conv, norm, transpose=transpose)
        adn.N = torch.nn.Identity()
        folded += 1
    return folded

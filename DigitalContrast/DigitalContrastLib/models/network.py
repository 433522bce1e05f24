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

from DigitalContrastLib.common.errors import ModelError

from .weights import load_state_dict

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

    spec = card.data["network"]
    network = build_network(spec["class"], spec["kwargs"], where=str(card.path))
    state = load_state_dict(card.weights)
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


class SubpixelConvTranspose3d(torch.nn.Module):
    """A ``ConvTranspose3d(kernel 3, stride 2, padding 1, output_padding 1)`` computed as one convolution.

    Output voxel ``2m + p`` (parity ``p`` per axis) of such a transposed convolution only reads input
    voxels ``m`` (and ``m + 1`` where ``p`` is odd): even outputs take kernel tap 1, odd outputs
    taps 2 and 0. So the layer equals one ordinary 2x2x2 convolution over the input padded by one
    voxel at the high end, with ``8 * out_channels`` outputs (one group per parity, unused taps
    zero), interleaved back onto the doubled grid ("sub-pixel convolution"). Same function up to
    float rounding. CPU convolution libraries handle transposed convolutions with very few output
    channels poorly: for the UNet's last layer (32 -> 1 channels) this form is about 2x faster in
    bf16 on the reference CPU (measured).

    Shapes: ``[B, C_in, z, y, x]`` -> ``[B, C_out, 2z, 2y, 2x]``.
    """

    #: per parity, ``(position in the 2-tap convolution, tap of the transposed kernel)``
    _TAPS = {0: ((0, 1),), 1: ((0, 2), (1, 0))}

    def __init__(self, transpose: torch.nn.ConvTranspose3d) -> None:
        super().__init__()
        if not self.supports(transpose):
            raise ValueError(f"{transpose} is not a kernel-3, stride-2, padding-1, output-padding-1 ConvTranspose3d")
        weight = transpose.weight.detach()  # [C_in, C_out, 3, 3, 3]
        c_in, c_out = weight.shape[:2]
        sub = weight.new_zeros(2, 2, 2, c_out, c_in, 2, 2, 2)
        for pz in (0, 1):
            for py in (0, 1):
                for px in (0, 1):
                    for a, ka in self._TAPS[pz]:
                        for b, kb in self._TAPS[py]:
                            for c, kc in self._TAPS[px]:
                                sub[pz, py, px, :, :, a, b, c] = weight[:, :, ka, kb, kc].t()
        self.out_channels = int(c_out)
        self.weight = torch.nn.Parameter(sub.reshape(8 * c_out, c_in, 2, 2, 2), requires_grad=False)
        bias = transpose.bias.detach() if transpose.bias is not None else weight.new_zeros(c_out)
        self.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)

    @staticmethod
    def supports(module: torch.nn.Module) -> bool:
        """Whether ``module`` is a transposed convolution this class reproduces exactly."""
        return (isinstance(module, torch.nn.ConvTranspose3d) and module.kernel_size == (3, 3, 3)
                and module.stride == (2, 2, 2) and module.padding == (1, 1, 1) and module.output_padding == (1, 1, 1)
                and module.dilation == (1, 1, 1) and module.groups == 1 and module.padding_mode == "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, d, h, w = x.shape
        # zero padding on both sides, then drop the first output along each axis: the 2x2x2 window
        # at output m + 1 covers inputs m and m + 1 (no padded copy of the wide input is made)
        y = torch.nn.functional.conv3d(x, self.weight, padding=1)[:, :, 1:, 1:, 1:]
        y = y.unflatten(1, (2, 2, 2, self.out_channels)).permute(0, 4, 5, 1, 6, 2, 7, 3)
        y = y.reshape(b, self.out_channels, 2 * d, 2 * h, 2 * w)
        return y + self.bias.view(1, -1, 1, 1, 1)


def use_subpixel_for_narrow_transposed_convs(network: torch.nn.Module, max_out_channels: int = 4) -> int:
    """Replace every supported ``ConvTranspose3d`` with at most ``max_out_channels`` outputs by
    :class:`SubpixelConvTranspose3d` (inference only; call after :func:`fold_batch_norm`, before any
    dtype or memory-format cast). Returns how many layers were replaced.
    """
    replaced = 0
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if SubpixelConvTranspose3d.supports(child) and child.out_channels <= max_out_channels:
                setattr(parent, name, SubpixelConvTranspose3d(child))
                replaced += 1
    return replaced

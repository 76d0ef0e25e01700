"""torch.hub entry points: the project's PyTorch ResNets, freshly He-initialised or with committed weights, and
the preprocessing those weights expect.

    model = torch.hub.load("/path/to/this/repo", "resnet32", source="local", pretrained=True)
    transform = torch.hub.load("/path/to/this/repo", "transform", source="local", depth=32)
    logits = model(transform(images))     # images: uint8, (N, 32, 32, 3) or (N, 3, 32, 32)
    model = torch.hub.load("<owner>/<repo>", "resnet", depth=56)        # from GitHub; any depth 6n+2

pretrained=True loads the final weights of the committed paper-recipe run of that depth that trained longest,
among equals the one with the lowest final test error (cifar_core.pretrained.pretrained_weights(depth) names the
file); the model comes in eval mode. The network expects float32 NCHW images scaled to [0, 1] with the
train set's per-pixel mean image subtracted, not torchvision's per-channel Normalize: `transform` does exactly
that, with the mean image the weights file carries. The JAX twin: jax_impl.hub.
"""

dependencies = ["torch", "numpy", "safetensors"]

from cifar_core import weights as _weights  # noqa: E402
from cifar_core.pretrained import pretrained_mean_image as _pretrained_mean_image  # noqa: E402
from cifar_core.pretrained import pretrained_weights as _pretrained_weights  # noqa: E402
from cifar_core.pretrained import preprocess as _preprocess  # noqa: E402
from torch_impl.checkpoint import from_neutral as _from_neutral  # noqa: E402
from torch_impl.model import resnet as _resnet  # noqa: E402


def resnet(depth: int = 32, pretrained: bool = False):
    """ResNet-`depth` (6n+2) for CIFAR-10, in eval mode; pretrained=True: the committed weights of that depth."""
    model = _resnet(depth)
    if pretrained:
        tensors, _, _ = _weights.read(_pretrained_weights(depth))
        _from_neutral(model, tensors)
    return model.eval()


def transform(depth: int = 32):
    """The preprocessing of the pretrained ResNet-`depth`: uint8 images (NHWC or NCHW, a NumPy array or a tensor)
    -> float32 NCHW tensor in [0, 1] minus the mean image its weights carry."""
    import torch
    mean = _pretrained_mean_image(depth)

    def apply(images):
        if isinstance(images, torch.Tensor):
            images = images.cpu().numpy()
        return torch.from_numpy(_preprocess(images, mean).transpose(0, 3, 1, 2).copy())
    return apply


def resnet20(pretrained: bool = False):
    """ResNet-20 (He et al. 2015, Table 6: 8.75% test error)."""
    return resnet(20, pretrained)


def resnet32(pretrained: bool = False):
    """ResNet-32 (Table 6: 7.51%)."""
    return resnet(32, pretrained)


def resnet44(pretrained: bool = False):
    """ResNet-44 (Table 6: 7.17%)."""
    return resnet(44, pretrained)


def resnet56(pretrained: bool = False):
    """ResNet-56 (Table 6: 6.97%)."""
    return resnet(56, pretrained)


def resnet110(pretrained: bool = False):
    """ResNet-110 (Table 6: 6.43%, best of 5)."""
    return resnet(110, pretrained)

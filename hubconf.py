"""torch.hub entry points: the project's PyTorch ResNets, freshly He-initialised or with committed weights.

    model = torch.hub.load("/path/to/this/repo", "resnet32", source="local", pretrained=True)
    model = torch.hub.load("<owner>/<repo>", "resnet", depth=56)        # from GitHub; any depth 6n+2

pretrained=True loads the final weights of the committed run of that depth that trained longest
(cifar_core.pretrained); the model comes in eval mode and expects NCHW float32 images with the train set's
per-pixel mean subtracted (cifar_core.data.normalize). The JAX twin: jax_impl.hub.resnet.
"""

dependencies = ["torch", "numpy", "safetensors"]

from cifar_core import weights as _weights  # noqa: E402
from cifar_core.pretrained import pretrained_weights as _pretrained_weights  # noqa: E402
from torch_impl.checkpoint import from_neutral as _from_neutral  # noqa: E402
from torch_impl.model import resnet as _resnet  # noqa: E402


def resnet(depth: int = 32, pretrained: bool = False):
    """ResNet-`depth` (6n+2) for CIFAR-10, in eval mode; pretrained=True: the committed weights of that depth."""
    model = _resnet(depth)
    if pretrained:
        tensors, _, _ = _weights.read(_pretrained_weights(depth))
        _from_neutral(model, tensors)
    return model.eval()


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

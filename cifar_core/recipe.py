"""The paper's recipe (He et al. 2015, §4.2), defined once and read by both backends."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    depth: int = 32  # 6n + 2
    batch_size: int = 128  # global, split across devices
    lr: float = 0.1
    # A lower lr at the start, until the running train error is below warmup_until_train_error: the paper's
    # ResNet-110 warm-up (PAPER_WARMUP_LR), decided by cifar_core.loop.WarmUp. None: none (the other depths').
    warmup_lr: float | None = None
    warmup_until_train_error: float = 0.8  # a fraction, as the records' train_error
    lr_decay: float = 0.1  # lr is multiplied by this at each milestone; 1 keeps it constant
    milestone_fractions: tuple = (0.5, 0.75)  # 32k and 48k of 64k
    iterations: int = 64_000
    momentum: float = 0.9
    weight_decay: float = 1e-4  # on every parameter, BN and bias included, as in the paper's Torch code
    seed: int = 0  # initialisation and the augmentation plan
    split_seed: int = 0  # which 5,000 training images are val; kept apart from `seed` so seeds share a val set
    val_fraction: float = 0.1  # 5,000 of 50,000
    full_train: bool = False  # train on all 50,000 (no val; best-val selection then off)
    eval_every: int = 3_200  # iterations between val/test evaluations
    log_every: int = 50  # iterations between training-loss records
    eval_batch_size: int = 1_000
    # Departures from the paper, for the ablations (results/ablations.md, scripts/ablations.py). The defaults are
    # the paper's, and a run's config.json written before these existed reads as the paper's.
    optimizer: str = "sgd"  # "sgd" (momentum `momentum`) or "adam" (betas 0.9/0.999, eps 1e-8); both with L2 decay
    augment: str = "crop-flip"  # 4-pixel pad, random 32x32 crop, random horizontal flip; "flip": flips only; "none"
    subtract_mean: bool = True  # the train split's per-pixel mean is subtracted from every image, test images too
    test_subtract_mean: bool | None = None  # whether val and test images get it; None: as in training
    logit_relu: bool = False  # a ReLU after the final linear layer: a bug people ask about
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1  # PyTorch's convention: the new batch's weight in BN's running averages
    downsample: str = "stride"  # stage entry: "stride" (a stride-2 conv), "maxpool" (2x2 max-pool, stride 1), "none"
    architecture: str = "cifar"  # "cifar" (§4.2, depth 6n+2) or "imagenet-resnet18" (torch_impl only; depth unused)
    imagenet_head: int = 10  # the ImageNet ResNet-18's outputs: 1000 is resnet18() as torchvision makes it

    def __post_init__(self):
        # config.json files written before augment named a mode hold true/false. A test-time mean choice equal to
        # training's is stored as None, so that it departs from nothing and a recipe has one spelling.
        if isinstance(self.augment, bool):
            object.__setattr__(self, "augment", "crop-flip" if self.augment else "none")
        if self.test_subtract_mean == self.subtract_mean:
            object.__setattr__(self, "test_subtract_mean", None)
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"--depth {self.depth}: must be 6n+2 with n >= 1 (8, 20, 32, 44, 56, 110, ...).")
        for name in ("batch_size", "iterations", "eval_every", "log_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}.")
        for name, allowed in (("optimizer", OPTIMIZERS), ("downsample", DOWNSAMPLING), ("architecture", ARCHITECTURES),
                              ("augment", AUGMENTATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}.")
        if not self.lr_decay > 0:
            raise ValueError(f"--lr-decay must be positive (1: a constant lr), got {self.lr_decay}.")
        if self.test_subtract_mean not in (None, True, False):
            raise ValueError(f"--test-mean-subtraction {self.test_subtract_mean!r}: choose yes or no.")
        if self.imagenet_head != 10 and self.architecture == "cifar":
            raise ValueError(f"--imagenet-head {self.imagenet_head}: the ImageNet ResNet-18's head; the CIFAR "
                             "ResNet has 10 outputs (add --architecture imagenet-resnet18).")
        if self.imagenet_head < 10:
            raise ValueError(f"--imagenet-head {self.imagenet_head}: needs at least the 10 classes' outputs.")
        if self.warmup_lr is not None and not self.warmup_lr > 0:
            raise ValueError(f"--warmup-lr must be positive, got {self.warmup_lr}.")
        if not 0 < self.warmup_until_train_error <= 1:
            raise ValueError(f"--warmup-until {self.warmup_until_train_error}: a train error, a fraction in (0, 1].")
        if self.warmup_lr is None and self.warmup_until_train_error != Recipe.warmup_until_train_error:
            raise ValueError(f"--warmup-until {self.warmup_until_train_error} without a warm-up: give --warmup-lr too.")
        if not self.bn_eps > 0:
            raise ValueError(f"--bn-eps must be positive, got {self.bn_eps}.")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"--bn-momentum {self.bn_momentum}: the new batch's weight (PyTorch's convention) lies in "
                             "(0, 1]; Keras's momentum=0.99 is PyTorch's 0.01.")

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    @property
    def eval_subtract_mean(self) -> bool:
        """Whether the images evaluated (val and test) have the train mean subtracted."""
        return self.subtract_mean if self.test_subtract_mean is None else self.test_subtract_mean

    @property
    def milestones(self) -> tuple:
        return tuple(int(round(f * self.iterations)) for f in self.milestone_fractions)

    def lr_at(self, step: int, warming_up: bool = False) -> float:
        """Learning rate of 0-indexed iteration `step`: warmup_lr while `warming_up` (WarmUp.on says when), else
        piecewise constant, divided at each milestone."""
        if warming_up:
            return self.warmup_lr
        return self.lr_values()[sum(step >= m for m in self.milestones)]

    def lr_values(self) -> tuple:
        """The lr of each piece, computed once in Python so both backends use the same float64 values."""
        return tuple(self.lr * self.lr_decay ** k for k in range(len(self.milestones) + 1))

    def model_options(self) -> dict:
        """The keyword arguments of both backends' ResNet that the recipe sets (the paper's values by default)."""
        return {"logit_relu": self.logit_relu, "bn_eps": self.bn_eps, "bn_momentum": self.bn_momentum,
                "downsample": self.downsample}

    def departures(self) -> dict:
        """The fields of the ablation block (and the warm-up) that differ from the paper's at this depth, name ->
        value ({} for the paper's recipe): the warm-up is the paper's at depth 110 only."""
        paper = Recipe(warmup_lr=PAPER_WARMUP_LR.get(self.depth))
        return {name: getattr(self, name) for name in DEPARTURES if getattr(self, name) != getattr(paper, name)}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        d["milestone_fractions"] = list(self.milestone_fractions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields}
        kwargs["milestone_fractions"] = tuple(kwargs.get("milestone_fractions", cls.milestone_fractions))
        return cls(**kwargs)


OPTIMIZERS = ("sgd", "adam")
DOWNSAMPLING = ("stride", "maxpool", "none")
ARCHITECTURES = ("cifar", "imagenet-resnet18")
AUGMENTATIONS = ("crop-flip", "flip", "none")
DEPARTURES = ("optimizer", "augment", "subtract_mean", "test_subtract_mean", "logit_relu", "bn_eps", "bn_momentum",
              "downsample", "architecture", "imagenet_head", "warmup_lr", "warmup_until_train_error")

# depth -> the paper's warm-up lr (§4.2, ResNet-110: "we use 0.01 to warm up the training until the training error
# is below 80% (about 400 iterations), and then go back to 0.1 and continue training"). The paper preset turns it
# on at these depths (cifar_core.cli.recipe_from_args); the dataclass default stays off, so that a run recorded
# before the warm-up existed reads as it ran.
PAPER_WARMUP_LR = {110: 0.01}

PRESETS = {
    # The paper: 64k iterations, ~182 epochs of 45k images; at --depth 110 with its warm-up (PAPER_WARMUP_LR).
    "paper": Recipe(),
    # A minute on a laptop CPU: the whole pipeline (data, train, eval, checkpoint, run directory) end to end.
    "smoke": Recipe(depth=8, iterations=60, eval_every=30, log_every=10),
}

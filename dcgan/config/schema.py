"""The config tree: one dataclass per section, each field with its default and a docstring (the reference in
docs/config.md is generated from them), each section validated by itself.

The defaults are the default recipe (`configs/mnist.yaml` restates them with comments, and a test keeps
the two equal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from dcgan.config.fields import check, check_architecture, may_change


@dataclass
class DataConfig:
    """The training images: which dataset, where it lives, how it is fed to the networks."""

    name: Literal["mnist", "fashion_mnist", "folder", "hf"] = "mnist"
    """Dataset: MNIST or Fashion-MNIST (IDX files, 28x28 grey), `folder`: your own images under `root`, or
    `hf`: a Hugging Face `datasets` dataset (`pip install 'dcgan[hf]'`)."""
    root: str = may_change("data")
    """mnist, fashion_mnist: a folder in torchvision's layout (`ROOT/MNIST/raw/*-ubyte`, `ROOT/FashionMNIST/raw/`);
    folder: the folder of images (png, jpg, jpeg, webp, bmp; searched recursively; when it holds no images
    itself, each first-level subfolder is a class); hf: a folder written by `save_to_disk`, a .parquet or
    .arrow file, or a Hub name (USER/NAME, its `train` split, through the Hugging Face cache). Where the data
    is, not what it is, so a resumed run may find it elsewhere (another node's mount); the number of images
    is still checked."""
    download: bool = may_change(True)
    """Download MNIST or Fashion-MNIST into `root` when the files are missing (main process only)."""
    pixel_range: Literal["signed", "unit"] = "signed"
    """`signed` feeds [-1, 1]; `unit` feeds [0, 1], as the tutorial did. With the default R1 penalty
    [-1, 1] trained best on MNIST; without R1, [0, 1] did, since this bias-free G's Tanh sits at 0 where
    its features are 0 (two seeds, 20 epochs each: docs/results.md)."""
    limit: int = 0
    """Use only the first `limit` training images (0 = all; a folder's in sorted path order, a dataset's in row
    order); for smoke tests and small-data runs."""
    image_size: int = 28
    """Side of the square images: 28, 32 or 64. Folder images are resized on their short side and
    centre-cropped to it once, at load; MNIST and Fashion-MNIST are 28."""
    channels: int = 1
    """1 (grey) or 3 (RGB); folder images are converted at load; MNIST and Fashion-MNIST have 1."""
    background: Literal["white", "black"] = "white"
    """folder, hf: the colour transparent pixels are composited over (RGBA, grey + alpha, palette images with
    transparency). White: transparent icons, logos and cut-out product photos are drawn for light pages.
    Changing it re-decodes the images (the cache is keyed by it)."""
    skip_bad_images: bool = False
    """folder, hf: skip unreadable or truncated images (counted, the first few named at start) instead of stopping."""
    image_column: str = "image"
    """hf: the column holding the images (an `Image` feature, or encoded bytes)."""
    label_column: str = "label"
    """hf: the column holding the class of each image (a `ClassLabel` gives the class names; integers are
    named by their value); a dataset without it is unlabelled."""
    host_budget_gb: float | None = may_change(None)
    """folder, hf: the most host memory the decoded images may take on a machine (as uint8, one copy per
    process of that machine); null: 90% of what is free at start. A larger set is memory-mapped from its
    cache file instead of read into memory (docs/data.md): the same batches, at the page cache's speed."""
    device_budget_gb: float = may_change(4.0)
    """Keep the training images on the training device when they take at most this many GB (as uint8);
    a larger set stays in host memory and each batch is copied over."""

    def validate(self) -> None:
        check(self.limit >= 0, "data.limit", "must be >= 0 (0 uses the whole split)")
        check(self.image_size in IMAGE_SIZES, "data.image_size", f"must be 28, 32 or 64, got {self.image_size}")
        check(self.channels in (1, 3), "data.channels", f"must be 1 (grey) or 3 (RGB), got {self.channels}")
        check(self.device_budget_gb >= 0, "data.device_budget_gb", "must be >= 0 (0 keeps the images in host memory)")
        check(
            self.host_budget_gb is None or self.host_budget_gb >= 0,
            "data.host_budget_gb",
            "must be >= 0 (0 memory-maps the images), or null for 90% of the free memory",
        )
        idx = self.name in ("mnist", "fashion_mnist")
        check(
            not idx or (self.image_size, self.channels) == (28, 1),
            "data.image_size" if self.image_size != 28 else "data.channels",
            f"{self.name} is 28x28 grey: use data.image_size=28 and data.channels=1 "
            "(other sizes: data.name=folder or hf)",
        )


IMAGE_SIZES = (28, 32, 64)
AUGMENTATIONS = ("xflip", "color", "translation", "cutout")  # dcgan/train/augment.py
NETWORKS = ("dataset", "inception")  # eval.network: dcgan/eval/networks.py scoring_network


@dataclass
class ModelConfig:
    """The generator and discriminator."""

    name: Literal["auto", "dcgan", "dcgan_paper", "mlp"] = "auto"
    """Architecture (dcgan/models/): `auto` follows data.image_size (dcgan at 28 px, dcgan_paper at 32 and 64);
    `dcgan` the tutorial's 28x28 DCGAN; `dcgan_paper` the DCGAN paper's G/D family for 32x32 and 64x64;
    `mlp` the tutorial's fully connected GAN (28x28 grey, Sigmoid output)."""
    z_dim: int = 100
    """Length of the generator's noise vector."""
    width: int = 64
    """dcgan_paper: base channel count, G's last hidden layer and D's first; the deeper layers have 2, 4
    (and at 64 px 8) times as many."""
    conditional: bool = False
    """Class-conditional GAN (dcgan/models/conditional.py): G and D take the class too, training draws the
    fake classes uniformly, and `dcgan sample --class K` draws one class. Needs labelled data (mnist,
    fashion_mnist, a folder with class subfolders)."""
    d_conditioning: Literal["channels", "projection"] = "channels"
    """How a conditional D takes the class: `channels` (one-hot planes beside the image) or `projection`
    (Miyato & Koyama 2018: the inner product of a class embedding with D's last features, added to its
    logit). Channels scored better on MNIST with two seeds (docs/results.md)."""
    class_dim: int = 10
    """Size of the conditional G's learned class embedding, joined to z."""
    output_bias: bool = False
    """dcgan, dcgan_paper: a learnable bias on G's output layer, one per image channel, starting at 0 (a
    deviation from the tutorial, whose G has no bias at all). Without it, G's Tanh output reaches an image
    in [-1, 1]'s background value only in its saturated tail; off is the tutorial's model."""
    d_spectral_norm: bool = False
    """Spectral normalisation (Miyato et al. 2018) of every conv and linear weight in D (and a projection
    D's class embedding): each layer's largest singular value is kept near 1 by one power iteration per
    forward. D's BatchNorm layers stay."""

    def validate(self) -> None:
        check(self.z_dim >= 1, "model.z_dim", "must be >= 1")
        check(self.width >= 1, "model.width", "must be >= 1")
        check(self.class_dim >= 1, "model.class_dim", "must be >= 1")
        check(
            not (self.conditional and self.name == "mlp"),
            "model.conditional",
            "the conditional GAN is built on the DCGANs (model.name auto, dcgan or dcgan_paper), not the mlp",
        )
        check(
            not (self.d_spectral_norm and self.name == "mlp"),
            "model.d_spectral_norm",
            "is for the DCGANs (model.name auto, dcgan or dcgan_paper), not the mlp",
        )
        check(
            not (self.output_bias and self.name == "mlp"),
            "model.output_bias",
            "is for the DCGANs; the mlp's output layer has its bias already",
        )


@dataclass
class OptimConfig:
    """Adam for each network; a resume takes these values, not the checkpoint's."""

    lr_g: float = 2e-4
    """G's learning rate."""
    lr_d: float = 2e-4
    """D's learning rate."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam's betas, both networks (the DCGAN paper's 0.5 for the first)."""
    clip_g: float = 0.0
    """Clip G's gradient norm to this inside G's own step (0 = off)."""
    clip_d: float = 0.0
    """Clip D's gradient norm to this inside D's own step (0 = off)."""
    lr_scaling: Literal["none", "sqrt", "linear"] = "linear"
    """How both learning rates follow the global batch (train.batch_size x processes) away from
    `base_batch`: `linear` multiplies them by global / base_batch (so 8 processes at 32 train at 8x the
    rates), `sqrt` by sqrt(global / base_batch), `none` keeps them. Linear kept fid_mnist at global
    batch 64 and 128 where the others lost it (docs/results.md)."""
    base_batch: int = 32
    """The global batch that lr_g and lr_d are meant for (the tutorial's 32): one process at batch 32
    trains at exactly lr_g and lr_d."""
    warmup_steps: int = 0
    """Ramp both learning rates linearly from 1/warmup_steps of their value to all of it over this many
    steps (0 = off)."""

    def validate(self) -> None:
        check(self.lr_g > 0, "optim.lr_g", "must be > 0")
        check(self.lr_d > 0, "optim.lr_d", "must be > 0")
        check(self.clip_g >= 0, "optim.clip_g", "must be >= 0 (0 = off)")
        check(self.clip_d >= 0, "optim.clip_d", "must be >= 0 (0 = off)")
        check(all(0 <= b < 1 for b in self.betas), "optim.betas", "both values must be in [0, 1)")
        check(self.base_batch >= 1, "optim.base_batch", "must be >= 1")
        check(self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0 (0 = off)")


@dataclass
class TrainConfig:
    """How long, how big, in what precision and order the GAN trains."""

    epochs: int = may_change(20)
    """Passes over the training images (each rank sees its shard; the remainder of each pass is dropped)."""
    max_steps: int | None = may_change(None)
    """Stop after this many optimisation steps (one D step plus one G step each), if set."""
    batch_size: int = 32
    """Per process: the global batch is batch_size x number of processes."""
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    """Autocast precision; part of the recipe (bf16 and fp16 round differently, fp16 adds a loss scaler). `auto`
    picks bf16 on a GPU or CPU that computes it natively (Ampere and later; AVX512-BF16, AMX, Arm BF16), fp16
    with gradient scaling on an older GPU, fp32 (`no`) elsewhere; the start line says what it picked and why,
    and a resumed run keeps the precision it started with."""
    allow_emulated_bf16: bool = may_change(False)
    """Run bf16 on a CPU without bf16 instructions (AVX512-BF16 or AMX) anyway. It is emulated there and
    several times slower than fp32 (docs/faults.md), so it is refused unless set: useful only to check
    bf16 numerics on a machine without them."""
    cpu: bool = may_change(False)
    """Run on the CPU even when a GPU is present."""
    sync_batchnorm: bool = False
    """SyncBatchNorm across GPUs (GPU only): BN statistics over the global batch instead of each rank's."""
    compile: bool = may_change(False)
    """torch.compile both networks (Inductor): the first steps compile, the rest run fused kernels."""
    compile_mode: Literal["auto", "default", "reduce-overhead", "max-autotune-no-cudagraphs"] = may_change("auto")
    """`auto`: reduce-overhead (CUDA graphs) on one GPU, default on a CPU or with several processes."""
    memory_format: Literal["auto", "channels_last", "contiguous"] = may_change("auto")
    """Activation layout. `auto`: channels_last (NHWC) on a CPU, where oneDNN runs this model 1.3-1.5x
    faster with it (bench/); contiguous (NCHW) on a GPU, where compile + channels_last hit an Inductor
    stride assertion in ConvTranspose's backward (H100, torch 2.11) and no gain was measured yet."""
    tf32: bool = may_change(True)
    """Allow TF32 matrix units for float32 convolutions and matmuls on Ampere and later GPUs."""
    loss: Literal["bce", "hinge", "least_squares"] = "bce"
    """D's and G's losses (dcgan/train/losses.py): `bce`, binary cross-entropy for D and the non-saturating
    -log D(G(z)) for G, as in the DCGAN paper and the tutorial; `hinge` (SAGAN, BigGAN); `least_squares`
    (LSGAN)."""
    g_first: bool = True
    """Step G before D in each iteration, as the tutorial does (false: D first, the usual order);
    G first scored better (docs/results.md)."""
    real_label: float = 0.9
    """Target for real images in D's loss: 0.9 (the tutorial's one-sided label smoothing) keeps D from
    running away from G (docs/results.md); 1.0 turns it off. For bce and least_squares; the hinge loss
    has a margin instead and ignores it."""
    d_loss_scale: float = 1.0
    """D's loss is scale x (real + fake); the tutorial halves it (0.5)."""
    ema_decay: float = 0.999
    """Sample, evaluate and export an exponential moving average of G's weights (dcgan/train/ema.py) with
    this decay per step; 0 uses the last iterate, as the tutorial does."""
    r1_gamma: float = 1.0
    """R1 gradient penalty on real images (Mescheder et al. 2018), gamma/2 x E||grad_x D(x)||^2 added to
    D's loss (0 = off). Lazy: computed every `r1_every` D steps and multiplied by r1_every (StyleGAN2).
    gamma is for [-1, 1] pixels whatever `data.pixel_range` is: on [0, 1] images the gradient per pixel is
    twice as large, so the code weighs it by a quarter, and switching the range keeps the penalty (checkpoints
    written before 2026-12-05, when a [0, 1] run's gamma was per [0, 1] pixel, are converted on resume).
    With train.compile, the R1 steps run D uncompiled (compiled graphs have no double backward)."""
    r1_every: int = 16
    """D steps between R1 penalties (1 = every step)."""
    diffaugment: tuple[str, ...] = ()
    """DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees, real
    and fake alike, in the D and the G step, e.g. [translation, cutout]; any of color, translation,
    cutout, xflip (dcgan/train/augment.py). At a fixed strength: for small data see `ada_target`."""
    ada_target: float = 0.0
    """Adaptive discriminator augmentation (dcgan/train/ada.py, StyleGAN2-ADA): 0 = off; else the target of
    the overfitting signal r_t = E[sign(D's logit on real images)] (the paper's 0.6). Each operation of
    `ada_augment` is applied to every image D sees, real and fake, with a probability p that rises while r_t
    is above the target and falls while it is below; p and r_t are logged as ada_p and ada_rt."""
    ada_augment: tuple[str, ...] = ("translation", "color", "cutout")
    """The operations adaptive augmentation applies, each with probability p (dcgan/train/augment.py).
    Add xflip only where a mirrored image is still a real one (not digits or text)."""
    ada_ramp_kimg: float = 100.0
    """How fast p moves: at most from 0 to 1 over this many thousand training images (global batch x steps).
    The paper's 500 is for runs of tens of millions of images; these runs see a few hundred thousand."""

    def validate(self) -> None:
        check(self.epochs >= 1, "train.epochs", "must be >= 1")
        check(self.max_steps is None or self.max_steps >= 1, "train.max_steps", "must be >= 1 or null")
        check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        check(0 < self.real_label <= 1, "train.real_label", "must be in (0, 1]")
        check(self.d_loss_scale > 0, "train.d_loss_scale", "must be > 0")
        check(0 <= self.ema_decay < 1, "train.ema_decay", "must be in [0, 1), 0 turns averaging off")
        check(self.r1_gamma >= 0, "train.r1_gamma", "must be >= 0 (0 = off)")
        check(self.r1_every >= 1, "train.r1_every", "must be >= 1")
        unknown = sorted(set(self.diffaugment) - set(AUGMENTATIONS))
        check(not unknown, "train.diffaugment", f"unknown {unknown}; choose from {', '.join(AUGMENTATIONS)}")
        check(0 <= self.ada_target < 1, "train.ada_target", "must be in [0, 1) (0 = off; the ADA paper's 0.6)")
        check(self.ada_ramp_kimg > 0, "train.ada_ramp_kimg", "must be > 0")
        unknown = sorted(set(self.ada_augment) - set(AUGMENTATIONS))
        check(not unknown, "train.ada_augment", f"unknown {unknown}; choose from {', '.join(AUGMENTATIONS)}")
        check(
            not (self.ada_target and self.diffaugment),
            "train.diffaugment",
            "augments at a fixed strength; with train.ada_target the strength adapts: set one of them",
        )


@dataclass
class LogConfig:
    """What a run reports, how often, and to which tracker."""

    tracker: Literal["wandb", "tensorboard", "none"] = "wandb"
    """Where metrics and sample grids go besides metrics.jsonl and samples/, through Accelerate's trackers.
    W&B without credentials (no WANDB_API_KEY, no `wandb login`) logs offline into the run folder and
    says how to upload it later."""
    every_steps: int = 100
    """Print (and send to the tracker) rank-averaged metrics this often; the only host syncs."""
    sample_every: int = 1000
    """A fixed-noise sample grid this often, and at every epoch end (0 = epoch ends only)."""
    project: str = "dcgan"
    """Tracker project name."""
    entity: str = ""
    """W&B entity (team or user); empty uses your default."""
    run_name: str = ""
    """Tracker run name; empty names the run after its folder (output_dir's last part)."""
    group: str = ""
    """W&B group; empty groups the tasks of a SLURM array job (`array-<job id>`), and no group otherwise."""
    tags: tuple[str, ...] = ()
    """W&B tags."""

    def validate(self) -> None:
        check(self.every_steps >= 1, "log.every_steps", "must be >= 1")
        check(self.sample_every >= 0, "log.sample_every", "must be >= 0")


@dataclass
class CheckpointConfig:
    """Full training state on disk, for exact resume."""

    every_steps: int = 500
    """Save full training state this often (and at each epoch end and at the end); 0 = epoch ends only."""
    keep_last: int = 3
    """How many checkpoints to keep; older ones are deleted after a newer one is complete."""

    def validate(self) -> None:
        check(self.every_steps >= 0, "checkpoint.every_steps", "must be >= 0")
        check(self.keep_last >= 1, "checkpoint.keep_last", "must be >= 1")


@dataclass
class FaultConfig:
    """Stopping safely: signals, diverged losses, dead peers, and who holds the run folder."""

    check_every: int = 10
    """Ranks agree on stopping (a signal, non-finite losses) every this many steps: one tiny all-reduce."""
    max_nonfinite_steps: int = 20
    """Stop when the losses stay non-finite this many consecutive steps (fp16 overflows are skipped before that)."""
    timeout_s: int = 600
    """Collective timeout: a rank waiting on a dead peer gives up after this long."""
    lock_wait_s: int = 0
    """How long to wait for another trainer to release the run folder before giving up (0: refuse at
    once). launch/slurm/train.sbatch sets it for requeued jobs, whose previous part may still be ending."""
    lock_stale_s: int = 60
    """A run folder locked from another host is taken over when its owner's heartbeat (refreshed every
    few seconds) is older than this: a crashed node does not lock its run for ever. Keep it well above
    the clock difference between your nodes. On the same host the owner's process is checked instead."""

    def validate(self) -> None:
        check(self.check_every >= 1, "fault.check_every", "must be >= 1")
        check(self.max_nonfinite_steps >= 1, "fault.max_nonfinite_steps", "must be >= 1")
        check(self.timeout_s >= 10, "fault.timeout_s", "must be >= 10 seconds")
        check(self.lock_wait_s >= 0, "fault.lock_wait_s", "must be >= 0 seconds")
        check(self.lock_stale_s >= 2, "fault.lock_stale_s", "must be >= 2 seconds")


@dataclass
class EvalConfig:
    """Sample-quality metrics during training."""

    every_epochs: int = 1
    """Score G (fid_<network>, KID, IS, coverage, precision/recall) every this many epochs and after the last;
    0 = off."""
    every_steps: int = 0
    """Also score G every this many steps (0 = only at epochs): a finer time-to-quality curve. Each
    evaluation logs `eval/train_s`, the run's training seconds so far with evaluations left out."""
    num_samples: int = 10_000
    """Generated images per evaluation, shared across ranks; metrics depend on it, so compare runs at equal N."""
    network: str = "dataset"
    """Which network's features the metrics are computed in: `dataset` (the data's own feature network:
    fid_mnist, fid_fashion_mnist, ... with IS, coverage, precision/recall) or `inception` (the standard
    Inception-v3 FID and KID of papers, fid_inception and kid_inception, for any data; its weights file is
    read from eval.inception_weights or torch hub's cache, never downloaded; see docs/metrics.md)."""
    classifier: str = ""
    """Feature network file behind the metrics (made by `dcgan train-classifier`); empty = the one shipped
    for data.name (mnist, fashion_mnist). A folder has none: evaluation is then off unless this is set or
    eval.network is inception."""
    inception_weights: str = ""
    """With eval.network=inception: the 2015-12-05 Inception weights file (torch-fidelity's
    weights-inception-2015-12-05-6726825d.pth); empty = torch hub's cache, where torch-fidelity keeps it."""

    def validate(self) -> None:
        check(self.network in NETWORKS, "eval.network", f"must be one of {', '.join(NETWORKS)}")
        check(self.every_epochs >= 0, "eval.every_epochs", "must be >= 0 (0 = off)")
        check(self.every_steps >= 0, "eval.every_steps", "must be >= 0 (0 = off)")
        check(self.num_samples >= 100, "eval.num_samples", "must be >= 100 (covariances and k-NN need many samples)")


@dataclass
class Config:
    """The run."""

    seed: int = 0
    """Seeds the initial weights, the data order and every noise stream."""
    output_dir: str = may_change("runs/mnist")
    """The run folder: config, checkpoints, samples, metrics, the exported generator. One trainer at a time."""
    resume: str = may_change("auto")
    """`auto` continues from the newest valid checkpoint in output_dir, `never` starts fresh, else a path."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = may_change(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = may_change(default_factory=LogConfig)
    checkpoint: CheckpointConfig = may_change(default_factory=CheckpointConfig)
    fault: FaultConfig = may_change(default_factory=FaultConfig)
    eval: EvalConfig = may_change(default_factory=EvalConfig)

    def validate(self) -> None:
        check(self.seed >= 0, "seed", "must be >= 0")
        check(bool(self.output_dir), "output_dir", "must not be empty")
        check(bool(self.resume), "resume", "must be auto, never or a checkpoint path")
        check(
            not (self.model.name == "mlp" and self.data.pixel_range == "signed"),
            "data.pixel_range",
            "the mlp generator ends in a Sigmoid and cannot produce [-1, 1] images; set data.pixel_range=unit",
        )
        flips = "xflip" in self.train.diffaugment or (self.train.ada_target and "xflip" in self.train.ada_augment)
        check(
            not (flips and self.data.name == "mnist"),
            "train.ada_augment" if self.train.ada_target else "train.diffaugment",
            "xflip mirrors images, and a mirrored digit is not a digit: leave xflip out on MNIST",
        )
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                section.validate()
        check_architecture(self.model.name, self.data.image_size, self.data.channels)

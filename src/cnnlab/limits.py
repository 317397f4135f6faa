"""The largest values cnnlab accepts for sizes, counts and rates, each with the reason for its value.

A value above one of these is a typo or a hostile config.json, not an experiment: left alone it
allocates terabytes, aborts the OpenMP runtime, or overflows a float inside the optimiser, and ends
in a traceback or a killed process. The places that check import these names, so that every command
refuses the same values with the same numbers. Imports nothing of the package.
"""

from __future__ import annotations

__all__ = [
    "MAX_SIDE", "MAX_LR", "MAX_WEIGHT_DECAY", "MAX_GRAD_CLIP", "MAX_PCA_LIGHTING", "MAX_BATCH_SIZE",
    "MAX_EPOCHS", "MAX_ITERATIONS", "MAX_LR_MULT", "MAX_L1", "MAX_SWEEP_RUNS", "MAX_FOLDS", "MAX_SEED",
    "MAX_THREADS", "MAX_SAMPLES", "MAX_IMAGE_SIDE", "MAX_IMAGE_PIXELS",
    "MAX_INPUT_BATCH_BYTES", "MAX_PREDICT_IMAGES", "PREDICT_CHUNK", "MAX_CLASSES", "MAX_REPEATS",
    "MAX_UPLOAD_BYTES", "check_seed", "check_threads",
]

# --- tensors
MAX_SIDE = 2048  # a model input's height or width: ImageNet models take 224-299, FCNs at most ~1024 in
#                  the papers we follow; larger is a typo (and one 3x2048x2048 fp32 image is 48 MiB)
MAX_INPUT_BATCH_BYTES = 1 << 30  # one input batch of fp32 (bench): activations need several times more
MAX_IMAGE_SIDE = 4096  # an image the foundations commands (convolve, filters, pyramid) read: filters
#                        keep a float64 copy per response (4096^2 * 8 B = 128 MiB each)
MAX_IMAGE_PIXELS = 89_478_485  # pixels of any image cnnlab decodes, read from its header first: PIL's own
#                               decompression-bomb threshold (a quarter GiB as RGBA); a 100 kB PNG can declare
#                               more pixels than the machine has bytes

# --- recipes (cnnlab.training.recipes.Recipe)
MAX_LR = 1e3  # the largest base rates in print are ~30 (LARS at batch 32k); fp32 weights overflow
#               once lr * grad passes 3e38, so a bound far above any paper and far below that
MAX_WEIGHT_DECAY = 1.0  # papers use 1e-5 .. 5e-4 (SGD) and up to 0.3 (ViT's AdamW); >= 1 erases the weights
MAX_GRAD_CLIP = 1e6  # clipping norms in print are 0.1 .. 10; a larger "clip" is no clip (use None)
MAX_PCA_LIGHTING = 10.0  # AlexNet's colour noise std is 0.1; 10 already shifts pixels by many stds
MAX_BATCH_SIZE = 1 << 17  # 131,072: the largest ImageNet batches in print are 64k (Ying et al. 2018)
MAX_EPOCHS = 100_000  # the longest schedules in print are ~1,000 epochs (CIFAR SSL); more is a typo
MAX_ITERATIONS = 10**9  # updates; also bounds warm-up steps, patience and --max-steps
MAX_LR_MULT = 100.0  # a parameter group's learning-rate multiplier: fine-tuning uses 0.1 for the pretrained
#                      layers and up to 10 for new ones (Caffe's fine-tuning examples); 100x is far past both
MAX_L1 = 1.0  # the L1 coefficient: papers use 1e-6 .. 1e-3 on the weights; at 1 the penalty of a net's
#               weights (sum |w| is in the hundreds) drowns the cross-entropy (ln 10 = 2.3 at chance)

# --- sweeps (cnnlab.training.sweep)
MAX_SWEEP_RUNS = 500  # training runs in one sweep (grid points x folds), run one after another: 500 runs of
#                       the one-minute main job are over eight hours; more is a typo in a grid
MAX_FOLDS = 20  # k of k-fold cross-validation: 5 and 10 are the usual choices; leave-one-out is not a sweep

# --- runs and commands
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer; larger seeds overflow in C
MAX_THREADS = 1024  # torch / ONNX Runtime threads: libgomp aborts the process (not an exception) when
#                     asked for a million; the largest CPUs have a few hundred hardware threads
MAX_SAMPLES = 10_000  # images in one grid (`sample --n`, `eval --mistakes`, `viz --k/--count`): a 100x100
#                      grid is already unreadable
MAX_PREDICT_IMAGES = 100_000  # images one Predictor.predict call takes: decoded, 100k MNIST digits are 400 MB
MAX_CLASSES = 100_000  # classes of a classifier: ImageNet-21k has 21,841; a class name is built for each
MAX_REPEATS = 10_000  # passes repeated over the same inputs (MC-dropout samples, ERF samples averaged,
#                       benchmark rounds): papers average 10-100 dropout samples; each pass costs a full forward
MAX_UPLOAD_BYTES = 16 << 20  # one image sent to `cnnlab explore`: a 12-megapixel JPEG is 3-8 MB
PREDICT_CHUNK = 256  # `cnnlab predict` decodes and predicts this many files at a time, printing as it goes


def check_seed(seed: object, *, name: str = "seed") -> str | None:
    """Why ``seed`` is not a usable random seed (an integer in 0..MAX_SEED), or None."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        return f"{name} must be an integer in 0..2**63-1, got {seed!r}"
    return None


def check_threads(threads: object, *, name: str = "threads") -> str | None:
    """Why ``threads`` is not a usable thread count (an integer in 1..MAX_THREADS), or None."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        return f"{name} must be an integer in 1..{MAX_THREADS}, got {threads!r}"
    return None

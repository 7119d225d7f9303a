"""Change detection against a memory of the patrol: the place looked up, then compared pixel by pixel.

A robot patrols the same corridors, so the best picture of what a frame should show is the
frames it took there before. :class:`PatrolMemory` keeps normal frames of the patrol (uint8, in
the bundle) and, for every new frame:

1. finds the ``neighbours`` memory frames whose 16x16 thumbnails are closest to the frame's;
   frames are compared in an opponent colour space (brightness, red-green, yellow-blue) whose
   two colour axes count ``chroma_weight`` times: floors and walls mostly vary in brightness,
   while a puddle, a sheet of paper or an open door also changes the colour; with
   ``texture_window``, the brightness's local spread over that window is compared as a fourth
   channel, so that a flat sheet on a busy floor is not explained pixel by pixel by the floor's
   specks of the same brightness;
2. takes, per pixel, the smallest squared difference to any of those frames shifted by up to
   ``shift`` pixels each way (a pixel is changed only when no nearby pixel of any similar
   frame explains it, which absorbs pose jitter and parallax);
3. averages that map over a ``window`` x ``window`` box and expresses it in standard units of
   what normal frames show at that pixel (``pixel_mean``, ``pixel_scale``), fitted by training
   on normal frames kept out of the lookup.

The frame's change score is the peak of that z-map. Pure PyTorch (exported to ONNX with the rest
of the scoring graph), no trained weights: the memory and the per-pixel statistics are buffers,
fitted on normal frames by :func:`fit_memory`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional

from .preprocessing import PreprocessingConfig, Preprocessor

THUMBNAIL_SIDE = 16
SCALE_FLOOR = 0.1  # per-pixel scales never drop below this fraction of their median
RESIDUAL_FLOOR = 0.05  # added to the per-pixel spread of normal residuals (normalized pixel units)
HELD_OUT_FOLDS = 10  # folds of the statistics frames for their held-out peaks


def first_minimum(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum of (N, K, ...) ``values`` over K and the first index that reaches it, by pairwise
    element-wise steps (ONNX Runtime reduces over a non-last axis an element at a time)."""
    index = torch.arange(values.shape[1], device=values.device).view(1, -1, *[1] * (values.ndim - 2))
    index = index.expand_as(values)
    while values.shape[1] > 1:
        half = values.shape[1] // 2
        left, right = values[:, :half], values[:, half : 2 * half]
        left_index, right_index = index[:, :half], index[:, half : 2 * half]
        take_right = (right < left) | ((right == left) & (right_index < left_index))
        merged = torch.where(take_right, right, left)
        merged_index = torch.where(take_right, right_index, left_index)
        values = torch.cat([merged, values[:, 2 * half :]], dim=1)
        index = torch.cat([merged_index, index[:, 2 * half :]], dim=1)
    return values[:, 0], index[:, 0]


def opponent_colours(chroma_weight: float | None) -> torch.Tensor:
    """(3, 3) map from normalized RGB to orthonormal opponent axes (brightness, red-green, yellow-blue),
    the two colour axes scaled by ``chroma_weight``; None gives the identity (RGB as it is)."""
    if chroma_weight is None:
        return torch.eye(3)
    w = chroma_weight
    return torch.tensor(
        [
            [3**-0.5, 3**-0.5, 3**-0.5],
            [w * 2**-0.5, -w * 2**-0.5, 0.0],
            [w * 6**-0.5, w * 6**-0.5, -2.0 * w * 6**-0.5],
        ]
    )


@dataclass(frozen=True)
class MemoryConfig:
    """How :class:`PatrolMemory` compares a frame with its memory; stored in the bundle.

    ``chroma_weight`` None compares the normalized RGB channels as they are (bundles written before
    the opponent colour space was introduced); ``texture_window`` None compares no local spread
    (bundles written before it was introduced).
    """

    neighbours: int = 8
    shift: int = 2
    window: int = 5
    chroma_weight: float | None = None
    texture_window: int | None = None

    def __post_init__(self) -> None:
        if self.neighbours < 1 or self.shift < 0 or self.window < 1 or self.window % 2 == 0:
            raise ValueError(f'memory needs neighbours >= 1, shift >= 0 and an odd window >= 1, got {self}')
        if self.chroma_weight is not None and not 0.0 < self.chroma_weight <= 100.0:
            raise ValueError(f'memory chroma_weight must be in (0, 100] or None, got {self.chroma_weight!r}')
        texture = self.texture_window
        if texture is not None and (not isinstance(texture, int) or not 3 <= texture <= 15 or texture % 2 == 0):
            raise ValueError(f'memory texture_window must be an odd integer in 3..15 or None, got {texture!r}')

    def to_dict(self) -> dict:
        return asdict(self)


class PatrolMemory(torch.nn.Module):
    """Normal patrol frames and per-pixel statistics -> a per-pixel change z-map of new frames."""

    def __init__(
        self,
        frames: torch.Tensor,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        config: MemoryConfig | None = None,
    ) -> None:
        """``frames``: (M, S, S, 3) uint8 RGB normal frames; ``normalize``: the model's input normalization."""
        super().__init__()
        self.config = config or MemoryConfig()
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(
                f'a patrol memory needs (M, S, S, 3) uint8 frames, got {tuple(frames.shape)} {frames.dtype}'
            )
        if len(frames) < self.config.neighbours:
            raise ValueError(f'a patrol memory of {len(frames)} frames cannot give {self.config.neighbours} neighbours')
        self.normalize = normalize
        side = frames.shape[1]
        self.register_buffer('frames', frames.contiguous())
        transform = opponent_colours(self.config.chroma_weight)[:, :, None, None]
        self.register_buffer('colour_transform', transform, persistent=False)
        thumbnails = self.thumbnails(self.colours(normalize(frames)))
        self.register_buffer('memory_thumbnails', thumbnails, persistent=False)
        self.register_buffer('memory_norms', thumbnails.square().sum(dim=1), persistent=False)
        self.register_buffer('pixel_mean', torch.zeros(side, side))
        self.register_buffer('pixel_scale', torch.ones(side, side))
        self.register_buffer('residual_scale', torch.ones(3, side, side))
        # change peaks of the statistics frames, each under statistics fitted without it (fit_memory
        # sets them; a memory loaded from a bundle has none)
        self.held_out_peaks: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Number of frames in the memory."""
        return len(self.frames)

    def colours(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalized images in the colour space frames are looked up and compared in."""
        return functional.conv2d(images, self.colour_transform)

    def comparable(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) normalized images as they are compared: the colours, and with a ``texture_window``
        the local spread of their brightness as a fourth channel."""
        colours = self.colours(images)
        if self.config.texture_window is None:
            return colours
        brightness = images.mean(dim=1, keepdim=True) * 3**0.5  # the opponent space's first axis
        return torch.cat([colours, local_spread(brightness, self.config.texture_window)], dim=1)

    @staticmethod
    def thumbnails(images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalized images -> (N, 3 * 16 * 16) area-averaged thumbnails."""
        return functional.adaptive_avg_pool2d(images, THUMBNAIL_SIDE).flatten(1)

    def nearest(self, images: torch.Tensor, excluded: torch.Tensor | None = None) -> torch.Tensor:
        """(N, neighbours) indices of the memory frames closest to ``images``; ``excluded`` (N, M) bool
        masks memory frames out (for statistics on frames that are themselves in the memory)."""
        queries = self.thumbnails(self.colours(images))
        distances = self.memory_norms - 2.0 * queries @ self.memory_thumbnails.T  # + |q|^2, same for every j
        if excluded is not None:
            distances = distances.masked_fill(excluded, float('inf'))
        return distances.topk(self.config.neighbours, dim=1, largest=False).indices

    def difference_map(
        self, images: torch.Tensor, indices: torch.Tensor, residual: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, S, S) smallest channel-mean squared difference of each pixel to the ``indices`` frames, shifts
        included, and with ``residual`` the (N, 3, S, S) signed colour difference to that best-matching pixel
        (else None), both in the comparison colour space.

        One shift at a time, all K neighbours together, keeping each neighbour's best error and shift
        so far (a few cache-sized, element-wise operations per shift), then the best neighbour; the
        residual is gathered for that one match. Ties go to the earlier neighbour, then the earlier
        shift. 3-4x faster eagerly, and a third faster in ONNX Runtime (whose reductions over long
        axes are slow, hence no min/argmin over them), than comparing all 200 shifted images at once.
        """
        count, _, side, _ = images.shape
        k, r = indices.shape[1], self.config.shift
        padded_side = side + 2 * r
        images = self.comparable(images)
        channels = images.shape[1]
        neighbours = self.comparable(self.normalize(self.frames[indices.flatten()]))
        padded = functional.pad(neighbours, (r, r, r, r), mode='replicate')
        padded = padded.view(count, k, channels, padded_side, padded_side)
        offsets = [(dy, dx) for dy in range(2 * r + 1) for dx in range(2 * r + 1)]
        best = shift_of = None  # (N, K, S, S): each neighbour's smallest error so far, and at which shift
        for shift, (dy, dx) in enumerate(offsets):
            error = (images[:, None] - padded[..., dy : dy + side, dx : dx + side]).square().sum(dim=2)
            if best is None:
                best, shift_of = error, torch.zeros_like(error)
                continue
            if residual:  # arithmetic, not where(): several times faster in ONNX Runtime
                shift_of = shift_of + (error < best).to(error.dtype) * (shift - shift_of)
            best = torch.minimum(error, best)
        best, neighbour = first_minimum(best)
        best = best / channels
        if not residual:
            return best, None
        shift = shift_of.gather(1, neighbour[:, None])[:, 0].long()
        return best, images[:, :3] - self._gather_matches(padded[:, :, :3], shift, neighbour, side)

    @staticmethod
    def _gather_matches(padded: torch.Tensor, shift: torch.Tensor, neighbour: torch.Tensor, side: int) -> torch.Tensor:
        """(N, 3, S, S) pixels of the (N, K, 3, P, P) ``padded`` neighbours at each pixel's best ``neighbour``
        and ``shift`` (both (N, S, S); shifts in (dy, dx) row-major order)."""
        count, k, _, padded_side, _ = padded.shape
        span = padded_side - side + 1
        rows = torch.arange(side, device=shift.device).view(1, side, 1) + shift // span
        columns = torch.arange(side, device=shift.device).view(1, 1, side) + shift % span
        flat = (neighbour * padded_side + rows) * padded_side + columns  # into (K, P, P)
        source = padded.transpose(1, 2).reshape(count, 3, k * padded_side * padded_side)
        index = flat.view(count, 1, side * side).expand(count, 3, side * side)
        return source.gather(2, index).view(count, 3, side, side)

    def smooth(self, differences: torch.Tensor) -> torch.Tensor:
        """(N, S, S) difference maps averaged over the window."""
        return box_mean(differences[:, None], self.config.window)[:, 0]

    def smoothed_map(self, images: torch.Tensor, excluded: torch.Tensor | None = None) -> torch.Tensor:
        """(N, S, S) difference map averaged over the window, before the per-pixel statistics."""
        return self.smooth(self.difference_map(images, self.nearest(images, excluded))[0])

    def evidence(self, images: torch.Tensor, excluded: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The change z-map (N, S, S) and the (N, 4, S, S) change evidence an outlier-exposure encoder reads:
        the z-map and the signed residual to the best-matching memory pixel in per-pixel standard units,
        both clipped and brought to about unit range."""
        differences, residual = self.difference_map(images, self.nearest(images, excluded), residual=True)
        z_map = (self.smooth(differences) - self.pixel_mean) / self.pixel_scale
        channels = [
            z_map.clamp(-5.0, 50.0)[:, None] / 5.0,
            (residual / self.residual_scale).clamp(-10.0, 10.0) / 3.0,
        ]
        return z_map, torch.cat(channels, dim=1)

    def set_pixel_statistics(self, smoothed_normal_maps: torch.Tensor, normal_residuals: torch.Tensor) -> None:
        """Fit the per-pixel mean and scale on (N, S, S) smoothed difference maps of normal frames, and the
        per-pixel, per-channel scale of their (N, 3, S, S) best-match residuals."""
        if len(smoothed_normal_maps) < 2:
            raise ValueError('per-pixel statistics need at least 2 normal frames')
        mean, scale = pixel_statistics(smoothed_normal_maps.to(self.pixel_mean))
        self.pixel_mean.copy_(mean)
        self.pixel_scale.copy_(scale)
        self.residual_scale.copy_(normal_residuals.to(self.residual_scale).std(dim=0) + RESIDUAL_FLOOR)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalized images -> (N, S, S) change z-map."""
        return (self.smoothed_map(images) - self.pixel_mean) / self.pixel_scale


def box_mean(images: torch.Tensor, window: int) -> torch.Tensor:
    """(N, C, S, S) mean of each channel over a ``window`` x ``window`` box around each pixel (the box cut at
    the border): box sums by convolution, divided by each box's pixel count, which ONNX Runtime runs about
    four times faster than an average pool that leaves the padding out."""
    box = images.new_ones(1, 1, window, window)
    count = functional.conv2d(images.new_ones(1, 1, *images.shape[-2:]), box, padding=window // 2)
    sums = functional.conv2d(images.reshape(-1, 1, *images.shape[-2:]), box, padding=window // 2)
    return (sums / count).reshape(images.shape)


def local_spread(channel: torch.Tensor, window: int) -> torch.Tensor:
    """(N, 1, S, S) standard deviation of ``channel`` over a ``window`` x ``window`` box around each pixel
    (the box cut at the border)."""
    means = box_mean(torch.cat([channel, channel.square()], dim=1), window)
    return (means[:, 1:] - means[:, :1].square()).clamp_min(0.0).sqrt()


def pixel_statistics(smoothed_normal_maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and scale of (N, S, S) smoothed difference maps of normal frames (the scale floored)."""
    std = smoothed_normal_maps.std(dim=0)
    return smoothed_normal_maps.mean(dim=0), std + SCALE_FLOOR * std.median().clamp_min(1e-12)


def held_out_peaks(smoothed_normal_maps: torch.Tensor) -> np.ndarray:
    """Change peak of each of (N, S, S) smoothed normal maps (in patrol order) under per-pixel statistics
    fitted without it: the frames are dealt round ``HELD_OUT_FOLDS`` folds one by one, so each frame's
    neighbours in the patrol stay in its statistics, as a new frame's stay in the memory's.

    A frame's peak under statistics that include the frame itself is capped by its own share of the
    spread, so in-sample peaks understate the tail of new frames; these do not, and they cover the
    whole patrol, where validation frames cover a few stretches of it.
    """
    fold = torch.arange(len(smoothed_normal_maps)) % HELD_OUT_FOLDS
    peaks = torch.empty(len(smoothed_normal_maps), dtype=torch.float64)
    for k in range(min(HELD_OUT_FOLDS, len(smoothed_normal_maps))):
        mean, scale = pixel_statistics(smoothed_normal_maps[fold != k])
        peaks[fold == k] = ((smoothed_normal_maps[fold == k] - mean) / scale).amax(dim=(1, 2)).double()
    return peaks.numpy()


@dataclass(frozen=True)
class MemoryFitConfig:
    """Whether a run fits a patrol memory, how many frames it keeps and how its statistics are fitted."""

    enabled: bool = True
    frames: int = 1200  # the memory keeps this many training frames, evenly spread over the patrol
    neighbours: int = 8
    shift: int = 2
    window: int = 5
    chroma_weight: float | None = 3.0  # None: compare RGB as it is
    texture_window: int | None = 5  # None: compare no local brightness spread
    statistics_frames: int = 1200  # training frames the per-pixel statistics are fitted on
    exclude_steps: int = 2  # a frame is compared without the memory frames this close to it (in memory steps)
    batch_size: int = 32

    def __post_init__(self) -> None:
        self.memory_config()  # validates neighbours, shift, window, chroma_weight, texture_window
        if self.frames < self.neighbours or self.statistics_frames < 2 or self.exclude_steps < 0 or self.batch_size < 1:
            raise ValueError(
                f'memory needs frames >= neighbours, statistics_frames >= 2, exclude_steps >= 0 and '
                f'batch_size >= 1, got {self}'
            )

    def memory_config(self) -> MemoryConfig:
        return MemoryConfig(self.neighbours, self.shift, self.window, self.chroma_weight, self.texture_window)


def evenly_spaced(count: int, keep: int) -> np.ndarray:
    """Indices of ``min(count, keep)`` positions spread evenly over ``range(count)``."""
    return np.unique(np.linspace(0, count - 1, min(count, keep)).round().astype(np.int64))


def leave_out_masks(count: int, memory_size: int, queries: np.ndarray, exclude_steps: int) -> np.ndarray:
    """(Q, M) bool: for each of ``queries`` (positions in a patrol of ``count`` frames whose memory kept
    ``memory_size`` of them by :func:`evenly_spaced`), the memory frames within ``exclude_steps`` memory
    steps of it, which a comparison leaves out so that no frame finds itself or its near-copies."""
    kept = evenly_spaced(count, memory_size)
    return np.abs(np.asarray(queries)[:, None] - kept[None, :]) <= exclude_steps * count / len(kept)


def fit_memory(
    train: np.ndarray, preprocessing: PreprocessingConfig, config: MemoryFitConfig | None = None
) -> PatrolMemory:
    """A patrol memory of (N, S, S, 3) uint8 normal ``train`` frames, in patrol order, with its statistics.

    The per-pixel statistics come from training frames compared with the memory *without* the
    memory frames taken near them in the patrol (``exclude_steps`` memory steps either side), so
    that, like a frame of a later patrol, none of them finds itself or its near-copies there. Their
    change peaks under statistics fitted without them become the memory's
    ``held_out_peaks``: normal frames over the whole patrol that calibration adds to the validation
    frames (:func:`held_out_peaks`).
    """
    config = config or MemoryFitConfig()
    kept = evenly_spaced(len(train), config.frames)
    normalize = Preprocessor(preprocessing).normalize_tensor
    memory = PatrolMemory(torch.from_numpy(np.ascontiguousarray(train[kept])), normalize, config.memory_config())
    queries = evenly_spaced(len(train), config.statistics_frames)
    excluded = torch.from_numpy(leave_out_masks(len(train), len(kept), queries, config.exclude_steps))
    maps, residuals = [], []
    with torch.inference_mode():
        for start in range(0, len(queries), config.batch_size):
            batch = slice(start, start + config.batch_size)
            images = normalize(torch.from_numpy(np.ascontiguousarray(train[queries[batch]])))
            indices = memory.nearest(images, excluded[batch])
            differences, residual = memory.difference_map(images, indices, residual=True)
            maps.append(memory.smooth(differences))
            residuals.append(residual)
    maps = torch.cat(maps)
    memory.set_pixel_statistics(maps, torch.cat(residuals))
    if len(queries) >= HELD_OUT_FOLDS:
        memory.held_out_peaks = held_out_peaks(maps.to(memory.pixel_mean))
    return memory

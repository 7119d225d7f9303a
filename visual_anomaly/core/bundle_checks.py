"""Checks that the pieces of a model bundle agree, made before anything is built from them.

A bundle's metadata declares the architecture and the preprocessing; its tensors (``.pt``) or its
graph (``.onnx``) must match them. A file whose metadata and weights disagree is refused here,
from shapes alone, instead of building whatever the metadata asks for (a tiny file declaring a
1024-channel network would otherwise allocate gigabytes before failing). A ``.pt`` bundle also
carries a SHA-256 checksum of its metadata and tensors, an ``.onnx`` one of its whole file
(:func:`~visual_anomaly.core.onnx_backend.seal`), both verified on load. Every failure is a
:class:`BundleError` naming the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

WEIGHT_PARTS = ('autoencoder', 'oe_head', 'memory')
CHECKSUM_KEY = 'sha256'
BASE_OUTPUTS = ('mse', 'local_peak', 'error_map', 'embedding')
MEMORY_OUTPUTS = ('change_peak', 'change_map')


class BundleError(ValueError):
    """A model bundle is missing, unreadable or not compatible; the message names the file."""


def checksum(payload: dict[str, Any]) -> str:
    """SHA-256 (hex) of a ``.pt`` payload's metadata and of every tensor's name, dtype, shape and bytes."""
    import torch

    digest = hashlib.sha256(payload['metadata'].encode())
    for part in WEIGHT_PARTS:
        for name, tensor in sorted(payload[part].items()):
            digest.update(f'{part}.{name}:{tensor.dtype}:{tuple(tensor.shape)};'.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verify_checksum(path: Path, payload: dict[str, Any]) -> bool:
    """Raise :class:`BundleError` when ``payload`` does not match its stored checksum; False when it has none."""
    stored = payload.get(CHECKSUM_KEY)
    if stored is None:
        return False
    try:
        actual = checksum(payload)
    except (KeyError, TypeError, AttributeError, RuntimeError) as error:
        raise BundleError(f'{path}: damaged model bundle, its tensors cannot be read ({error})') from error
    if actual != stored:
        raise BundleError(
            f'{path}: damaged or altered model bundle, its weights and metadata do not match the checksum '
            'stored with them (use an intact copy)'
        )
    return True


def check_tensors(path: Path, part: str, build: Callable[[], Any], stored: dict[str, Any]) -> None:
    """Raise :class:`BundleError` unless ``stored`` tensors have exactly the names, shapes and dtypes of
    the module ``build`` makes; the module is built on PyTorch's meta device, which allocates nothing."""
    import torch

    try:
        with torch.device('meta'):
            expected = {name: (tuple(t.shape), t.dtype) for name, t in build().state_dict().items()}
    except (ValueError, TypeError, RuntimeError, OverflowError) as error:
        raise BundleError(f'{path}: inconsistent model bundle, its {part} cannot be built ({error})') from error
    if not isinstance(stored, dict) or not all(isinstance(t, torch.Tensor) for t in stored.values()):
        raise BundleError(f'{path}: inconsistent model bundle, its {part} weights are not a set of tensors')
    got = {name: (tuple(t.shape), t.dtype) for name, t in stored.items()}
    if got == expected:
        return
    missing, unexpected = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    wrong = [name for name in expected if name in got and got[name] != expected[name]]
    if missing or unexpected:
        detail = f'missing {missing[:3]}, unexpected {unexpected[:3]}'
    else:
        (shape, dtype), (implied, implied_dtype) = got[wrong[0]], expected[wrong[0]]
        detail = f'{len(wrong)} differ, the first: {wrong[0]} is {list(shape)} {dtype}, the metadata implies '
        detail += f'{list(implied)} {implied_dtype}'
    raise BundleError(
        f'{path}: inconsistent model bundle, the {part} weights do not match the architecture in its metadata '
        f'({detail})'
    )


def check_pieces_agree(path: Path, metadata: dict[str, Any], memory_side: int | None) -> None:
    """Raise :class:`BundleError` unless the preprocessing, the autoencoder, the OE head and the patrol
    memory (frames of side ``memory_side``) of ``.pt`` bundle metadata fit together."""
    size = metadata['preprocessing']['image_size']
    network = metadata['autoencoder']
    head = metadata['oe_head']
    if network.get('image_size', 64) != size:
        _disagree(path, f'frames are resized to {size} px but the network takes {network.get("image_size", 64)} px')
    if network.get('in_channels', 3) != 3:
        _disagree(path, f'the network takes {network["in_channels"]} channels, frames have 3 (RGB)')
    if memory_side is not None and memory_side != size:
        _disagree(path, f'the patrol memory holds {memory_side} px frames, the network takes {size} px')
    if head is not None and head.get('input', 'embedding') == 'change' and memory_side is None:
        _disagree(path, 'its outlier-exposure head reads the change evidence but it has no patrol memory')
    embedding = network.get('embedding_dim', 128)
    if head is not None and head.get('input', 'embedding') == 'embedding' and head['embedding_dim'] != embedding:
        _disagree(
            path, f'its outlier-exposure head reads {head["embedding_dim"]}-d embeddings, the network gives {embedding}'
        )


def check_onnx_interface(path: Path, session: Any, metadata: dict[str, Any]) -> None:
    """Raise :class:`BundleError` unless an ``.onnx`` bundle's graph takes (batch, S, S, 3) uint8 ``frames``
    with S the preprocessing size and gives the outputs its metadata implies, of the expected shapes."""
    size = metadata['preprocessing']['image_size']
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != 'frames' or inputs[0].type != 'tensor(uint8)':
        found = ', '.join(f'{i.name} {i.type}' for i in inputs)
        _disagree(path, f'the graph must take one uint8 input named frames, it takes {found or "none"}')
    if list(inputs[0].shape[1:]) != [size, size, 3]:
        _disagree(path, f'the graph takes frames of shape {inputs[0].shape}, the preprocessing gives {size}x{size}x3')
    outputs = {output.name: output.shape for output in session.get_outputs()}
    needed = (
        BASE_OUTPUTS
        + (MEMORY_OUTPUTS if metadata.get('memory') else ())
        + (('oe_logit',) if metadata.get('oe_head') else ())
    )
    missing = [name for name in needed if name not in outputs]
    if missing:
        _disagree(path, f'the graph lacks the output(s) {", ".join(missing)} (it gives {", ".join(outputs)})')
    ranks = {'error_map': [size, size], 'change_map': [size, size], 'mse': [], 'local_peak': [], 'change_peak': []}
    for name, tail in ranks.items():
        if name in outputs and list(outputs[name][1:]) != tail:
            _disagree(path, f'the graph gives {name} of shape {outputs[name]}, expected {["batch", *tail]}')


def _disagree(path: Path, reason: str) -> None:
    raise BundleError(f'{path}: inconsistent model bundle, {reason}')

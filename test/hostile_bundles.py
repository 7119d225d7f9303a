"""Hostile model bundles for the tests: small files whose pieces disagree, or whose graph fails at run time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import TensorProto, helper

from visual_anomaly.core import bundle as bundle_module
from visual_anomaly.core.bundle_checks import CHECKSUM_KEY, checksum
from visual_anomaly.core.onnx_backend import seal, serialize_sealed


def save_sealed_onnx(model: onnx.ModelProto, out: Path) -> Path:
    """Save an edited ONNX bundle with its checksum made to match the edit, as a careful forger would."""
    onnx.save(model, out)
    out.write_bytes(seal(out.read_bytes()))
    return out


def rewritten_pt(source: Path, out: Path, seal: bool = True, **sections: dict[str, Any]) -> Path:
    """A copy of ``.pt`` bundle ``source`` whose metadata ``sections`` are updated (``autoencoder={...}``),
    with a checksum that matches (``seal``) as a careful forger would write, or the original one."""
    payload = torch.load(source, weights_only=True)
    metadata = json.loads(payload['metadata'])
    for section, changes in sections.items():
        metadata[section] = changes if changes is None else {**(metadata[section] or {}), **changes}
    payload['metadata'] = json.dumps(metadata)
    if seal:
        payload[CHECKSUM_KEY] = checksum(payload)
    torch.save(payload, out)
    return out


def onnx_allocating_at_run_time(out: Path, metadata: dict[str, Any], side: int = 64) -> Path:
    """An ``.onnx`` bundle with the outputs a model without memory or OE head gives, which asks for
    2^40 floats (4 TiB) when it runs: every check on the file passes, the first frame fails."""
    floats = helper.make_tensor('one_float', TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node('Cast', ['frames'], ['x'], to=TensorProto.FLOAT),
        helper.make_node('ReduceMean', ['x'], ['error_map'], axes=[3], keepdims=0),
        helper.make_node('ReduceMean', ['error_map'], ['mean'], axes=[1, 2], keepdims=0),
        helper.make_node('Shape', ['frames'], ['shape']),
        helper.make_node('Slice', ['shape', 'one', 'three'], ['sides']),
        helper.make_node('Mul', ['sides', 'huge'], ['huge_shape']),  # depends on the input: not folded at load
        helper.make_node('ConstantOfShape', ['huge_shape'], ['huge_tensor'], value=floats),
        helper.make_node('ReduceSum', ['huge_tensor'], ['total'], keepdims=0),
        helper.make_node('Add', ['mean', 'total'], ['mse']),
        helper.make_node('Identity', ['mse'], ['local_peak']),
        helper.make_node('ReduceMean', ['error_map'], ['embedding'], axes=[2], keepdims=0),
    ]
    constants = [
        helper.make_tensor(name, TensorProto.INT64, [1], [value])
        for name, value in (('one', 1), ('three', 3), ('huge', 2**20 // side))
    ]

    def tensor(name: str, shape: list, kind: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, kind, shape)

    outputs = [tensor('mse', ['batch']), tensor('local_peak', ['batch']), tensor('error_map', ['batch', side, side])]
    graph = helper.make_graph(
        nodes,
        'hungry',
        [tensor('frames', ['batch', side, side, 3], TensorProto.UINT8)],
        [*outputs, tensor('embedding', ['batch', side])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)], ir_version=8)
    metadata = {**metadata, 'memory': None, 'oe_head': None, 'decision_score': 'local'}
    for key, value in {
        bundle_module.ONNX_FORMAT_KEY: '1',
        bundle_module.ONNX_METADATA_KEY: json.dumps(metadata),
    }.items():
        model.metadata_props.add(key=key, value=value)
    out.write_bytes(serialize_sealed(model))  # sealed, as a careful forger would: only running it can tell
    return out

"""A tiny graph-pass interface, modelled on onnx-ir's passes but on plain ``onnx.ModelProto``.

The converter chains passes on protos because that is what exporters produce and what
onnxruntime and the checker consume; a pass may use onnx-ir internally. Passes are
functional (input in, new model out) so that a caller can always compare the model before
and after a pass, which is how parity checks find the pass that broke a model.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import onnx


@dataclass(frozen=True)
class PassResult:
    """The model a pass produced, and whether it differs from the pass's input."""

    model: onnx.ModelProto
    modified: bool


class GraphPass(abc.ABC):
    """A transformation of an ONNX model.

    ``call`` must not mutate its input model: it returns a new ``ModelProto`` (a copy when
    there is nothing to do), so the input stays available as the reference to compare with.
    """

    name: str

    @abc.abstractmethod
    def call(self, model: onnx.ModelProto) -> PassResult:
        """Return the transformed model; raise an ``EdgeInferError`` to refuse the model."""

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        return self.call(model)


def count_ops(model: onnx.ModelProto, op_type: str) -> int:
    """Number of nodes of ``op_type`` in the main graph, its subgraphs and local functions."""
    nodes = [*model.graph.node]
    for function in model.functions:
        nodes.extend(function.node)
    return sum(node.op_type == op_type for node in _walk(nodes))


def _walk(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:
    """Yield nodes and, recursively, the nodes of their subgraph attributes (If, Loop, Scan)."""
    for node in nodes:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _walk(attribute.g.node)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for graph in attribute.graphs:
                    yield from _walk(graph.node)

"""The protocol's message classes, made from ``oip.proto``'s compiled
descriptor (``descriptor.py``; their types are in ``messages.pyi``).

In a pool of their own, not protobuf's default one: every OIP client
library (tritonclient.grpc, KServe's) registers the same message names
(``inference.ModelInferRequest``...) in the default pool, and a second
registration there is an error. A model's own code may import such a
library; the server must not then fail to start.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .descriptor import FILE

POOL = descriptor_pool.DescriptorPool()
DESCRIPTOR = POOL.Add(descriptor_pb2.FileDescriptorProto.FromString(FILE))


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"inference.{name}"))


ServerLiveRequest = _message("ServerLiveRequest")
ServerLiveResponse = _message("ServerLiveResponse")
ServerReadyRequest = _message("ServerReadyRequest")
ServerReadyResponse = _message("ServerReadyResponse")
ModelReadyRequest = _message("ModelReadyRequest")
ModelReadyResponse = _message("ModelReadyResponse")
ServerMetadataRequest = _message("ServerMetadataRequest")
ServerMetadataResponse = _message("ServerMetadataResponse")
ModelMetadataRequest = _message("ModelMetadataRequest")
ModelMetadataResponse = _message("ModelMetadataResponse")
ModelInferRequest = _message("ModelInferRequest")
ModelInferResponse = _message("ModelInferResponse")
InferParameter = _message("InferParameter")
InferTensorContents = _message("InferTensorContents")

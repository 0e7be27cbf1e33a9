"""The Open Inference Protocol over gRPC: the protocol's messages
(``oip.proto``, generated into ``oip_pb2``) and their translation to and
from the tensors the data plane works with (``codec``)."""

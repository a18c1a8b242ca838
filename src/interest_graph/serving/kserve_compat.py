"""KServe, imported without letting it read this process's command line.

``kserve.model_server`` parses ``sys.argv`` when first imported; options of our own
commands (``query --protocol grpc``) would trip its parser. Every serving module
takes KServe names from here.
"""

from __future__ import annotations

import sys

_argv = sys.argv
sys.argv = _argv[:1]
try:
    import kserve
    from kserve import InferInput, InferOutput, InferRequest, InferResponse, Model
    from kserve import model_server as model_server
    from kserve.errors import InvalidInput
    from kserve.model import InferenceVerb
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as grpc_pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as grpc_services
    from kserve.protocol.grpc.interceptors import (
        ExceptionToStatusInterceptor,
        LoggingInterceptor,
    )
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.grpc.servicer import InferenceServicer
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
finally:
    sys.argv = _argv

__all__ = [
    "DataPlane",
    "ExceptionToStatusInterceptor",
    "GRPCServer",
    "InferenceServicer",
    "LoggingInterceptor",
    "ModelRepository",
    "ModelRepositoryExtension",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InferenceVerb",
    "InvalidInput",
    "Model",
    "grpc_pb",
    "grpc_services",
    "kserve",
    "model_server",
]

"""A stand-in Terraform provider served from a schema file: plugin protocol 6 over gRPC.

    python -m tools.tfstandin.server --schema tools/tfstandin/schemas/google.json

Terraform starts it as the provider's executable (the gate's launcher script execs this).
Only the go-plugin handshake line goes to stdout; logs go to stderr, where Terraform shows them
under TF_LOG. The package ``tf`` (gate venv only) supplies just the generated protobuf and
gRPC stubs: the handshake, the TLS setup and the servicer are here. What the provider does is
in provider.py.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import functools
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from tools.tfstandin import values
from tools.tfstandin.provider import AttrPath, Problem, StandIn

# Imported by name: ``tf`` is installed only in the gate's venv, not where mypy runs.
pb: Any = importlib.import_module("tf.gen.tfplugin_pb2")
rpc: Any = importlib.import_module("tf.gen.tfplugin_pb2_grpc")
controller_pb: Any = importlib.import_module("tf.gen.grpc_controller_pb2")
controller_rpc: Any = importlib.import_module("tf.gen.grpc_controller_pb2_grpc")
stdio_rpc: Any = importlib.import_module("tf.gen.grpc_stdio_pb2_grpc")

log = logging.getLogger("tfstandin")

# go-plugin's handshake with Terraform: the cookie proves Terraform started us, and the line we
# print names the core protocol (1), the plugin protocol (6), where we listen and our
# certificate, which Terraform then trusts alone (auto mTLS).
MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"

_NESTING = {"single": 1, "list": 2, "set": 3, "map": 4, "group": 5}


# --------------------------------------------------------------------------- schema


def _description(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": spec.get("description", ""),
        "description_kind": 1 if spec.get("description_kind") == "markdown" else 0,
        "deprecated": bool(spec.get("deprecated")),
    }


def _attribute_pb(name: str, spec: dict[str, Any]) -> Any:
    flags = {f: bool(spec.get(f)) for f in ("required", "optional", "computed", "sensitive")}
    if "nested_type" in spec:
        nt = spec["nested_type"]
        nested = pb.Schema.Object(
            attributes=[_attribute_pb(n, s) for n, s in sorted(nt["attributes"].items())],
            nesting=_NESTING[nt["nesting_mode"]],
            min_items=nt.get("min_items", 0),
            max_items=nt.get("max_items", 0),
        )
        return pb.Schema.Attribute(name=name, nested_type=nested, **flags, **_description(spec))
    return pb.Schema.Attribute(
        name=name, type=values.type_json(spec["type"]), **flags, **_description(spec)
    )


def _block_pb(spec: dict[str, Any]) -> Any:
    return pb.Schema.Block(
        attributes=[_attribute_pb(n, s) for n, s in sorted((spec.get("attributes") or {}).items())],
        block_types=[
            pb.Schema.NestedBlock(
                type_name=name,
                block=_block_pb(bt.get("block") or {}),
                nesting=_NESTING[bt["nesting_mode"]],
                min_items=bt.get("min_items", 0),
                max_items=bt.get("max_items", 0),
            )
            for name, bt in sorted((spec.get("block_types") or {}).items())
        ],
        **_description(spec),
    )


def _schema_pb(spec: dict[str, Any]) -> Any:
    return pb.Schema(version=spec.get("version", 0), block=_block_pb(spec["block"]))


# --------------------------------------------------------------------------- values


def _decode(ty: values.CtyType, dv: Any) -> Any:
    if dv.msgpack:
        return values.decode(ty, dv.msgpack)
    if dv.json:
        return values.from_json(ty, json.loads(dv.json))
    return None


def _encode(ty: values.CtyType, value: Any) -> Any:
    return pb.DynamicValue(msgpack=values.encode(ty, value))


def _path_pb(path: AttrPath) -> Any:
    steps = []
    for kind, key in path:
        if kind == "attr":
            steps.append(pb.AttributePath.Step(attribute_name=key))
        elif kind == "index":
            steps.append(pb.AttributePath.Step(element_key_int=key))
        else:
            steps.append(pb.AttributePath.Step(element_key_string=key))
    return pb.AttributePath(steps=steps)


def _error(summary: str, detail: str = "") -> Any:
    return pb.Diagnostic(severity=pb.Diagnostic.ERROR, summary=summary, detail=detail)


def _guarded(response: Callable[[], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn a failure into an error diagnostic of the RPC's response, which Terraform shows
    with the resource's address, instead of a bare gRPC error."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(self: Servicer, request: Any, context: Any) -> Any:
            try:
                return method(self, request, context)
            except Problem as problem:
                return response()(diagnostics=[_error(problem.summary, problem.detail)])
            except Exception as err:  # any bug must reach Terraform's output
                log.exception("%s failed", method.__name__)
                summary = f"{self.standin.name} stand-in provider failed in {method.__name__}"
                return response()(diagnostics=[_error(summary, repr(err))])

        return guarded

    return wrap


# --------------------------------------------------------------------------- servicer


class Servicer:
    """tfplugin6.Provider: every RPC, as add_ProviderServicer_to_server looks them up."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin
        self._schema: Any = None
        self._lock = threading.Lock()

    def _resource_type(self, type_name: str) -> values.CtyType:
        return self.standin.resource(type_name).implied_type()

    @_guarded(lambda: pb.GetMetadata.Response)
    def GetMetadata(self, request: Any, context: Any) -> Any:
        spec = self.standin.spec
        return pb.GetMetadata.Response(
            server_capabilities=pb.ServerCapabilities(
                plan_destroy=True, get_provider_schema_optional=True
            ),
            resources=[
                pb.GetMetadata.ResourceMetadata(type_name=n) for n in spec["resource_schemas"]
            ],
            data_sources=[
                pb.GetMetadata.DataSourceMetadata(type_name=n) for n in spec["data_source_schemas"]
            ],
        )

    @_guarded(lambda: pb.GetProviderSchema.Response)
    def GetProviderSchema(self, request: Any, context: Any) -> Any:
        with self._lock:  # built once per process: the google schema is large
            if self._schema is None:
                spec = self.standin.spec
                self._schema = pb.GetProviderSchema.Response(
                    provider=_schema_pb(spec["provider"]),
                    resource_schemas={
                        n: _schema_pb(s) for n, s in spec["resource_schemas"].items()
                    },
                    data_source_schemas={
                        n: _schema_pb(s) for n, s in spec["data_source_schemas"].items()
                    },
                    server_capabilities=pb.ServerCapabilities(
                        plan_destroy=True, get_provider_schema_optional=True
                    ),
                )
            return self._schema

    @_guarded(lambda: pb.ValidateProviderConfig.Response)
    def ValidateProviderConfig(self, request: Any, context: Any) -> Any:
        _decode(self.standin.provider.implied_type(), request.config)
        return pb.ValidateProviderConfig.Response()

    @_guarded(lambda: pb.ValidateResourceConfig.Response)
    def ValidateResourceConfig(self, request: Any, context: Any) -> Any:
        _decode(self._resource_type(request.type_name), request.config)
        return pb.ValidateResourceConfig.Response()

    @_guarded(lambda: pb.ValidateDataResourceConfig.Response)
    def ValidateDataResourceConfig(self, request: Any, context: Any) -> Any:
        _decode(self.standin.data_source(request.type_name).implied_type(), request.config)
        return pb.ValidateDataResourceConfig.Response()

    @_guarded(lambda: pb.ConfigureProvider.Response)
    def ConfigureProvider(self, request: Any, context: Any) -> Any:
        self.standin.configure(_decode(self.standin.provider.implied_type(), request.config))
        return pb.ConfigureProvider.Response()

    @_guarded(lambda: pb.UpgradeResourceState.Response)
    def UpgradeResourceState(self, request: Any, context: Any) -> Any:
        ty = self._resource_type(request.type_name)
        if not request.raw_state.json:
            raise Problem("Unsupported state", "the stand-in reads only JSON state")
        state = values.from_json(ty, json.loads(request.raw_state.json))
        return pb.UpgradeResourceState.Response(upgraded_state=_encode(ty, state))

    @_guarded(lambda: pb.ReadResource.Response)
    def ReadResource(self, request: Any, context: Any) -> Any:
        # Nothing exists but the state: what was applied is what is there.
        return pb.ReadResource.Response(new_state=request.current_state, private=request.private)

    @_guarded(lambda: pb.PlanResourceChange.Response)
    def PlanResourceChange(self, request: Any, context: Any) -> Any:
        ty = self._resource_type(request.type_name)
        planned, replace = self.standin.plan(
            request.type_name,
            _decode(ty, request.prior_state),
            _decode(ty, request.proposed_new_state),
        )
        return pb.PlanResourceChange.Response(
            planned_state=_encode(ty, planned),
            requires_replace=[_path_pb(p) for p in replace],
            planned_private=request.prior_private,
            # Unlike SDKv2 (true), so that core holds the plan and the applied state strictly
            # to the configuration instead of only logging the differences.
            legacy_type_system=False,
        )

    @_guarded(lambda: pb.ApplyResourceChange.Response)
    def ApplyResourceChange(self, request: Any, context: Any) -> Any:
        ty = self._resource_type(request.type_name)
        new = self.standin.apply(request.type_name, _decode(ty, request.planned_state))
        return pb.ApplyResourceChange.Response(
            new_state=_encode(ty, new), private=request.planned_private, legacy_type_system=False
        )

    @_guarded(lambda: pb.ImportResourceState.Response)
    def ImportResourceState(self, request: Any, context: Any) -> Any:
        block = self.standin.resource(request.type_name)
        if "id" not in block.attributes:
            raise Problem("Resource Import Not Implemented", request.type_name)
        ty = block.implied_type()
        state = values.from_json(ty, {"id": request.id})
        return pb.ImportResourceState.Response(
            imported_resources=[
                pb.ImportResourceState.ImportedResource(
                    type_name=request.type_name, state=_encode(ty, state)
                )
            ]
        )

    @_guarded(lambda: pb.MoveResourceState.Response)
    def MoveResourceState(self, request: Any, context: Any) -> Any:
        raise Problem(
            "Move Resource State Not Supported",
            f"The {self.standin.name} stand-in does not move state between resource types.",
        )

    @_guarded(lambda: pb.ReadDataSource.Response)
    def ReadDataSource(self, request: Any, context: Any) -> Any:
        ty = self.standin.data_source(request.type_name).implied_type()
        state = self.standin.read(request.type_name, _decode(ty, request.config))
        return pb.ReadDataSource.Response(state=_encode(ty, state))

    @_guarded(lambda: pb.GetFunctions.Response)
    def GetFunctions(self, request: Any, context: Any) -> Any:
        return pb.GetFunctions.Response()

    def CallFunction(self, request: Any, context: Any) -> Any:
        return pb.CallFunction.Response(
            error=pb.FunctionError(text=f"{self.standin.name} stand-in has no functions")
        )

    def StopProvider(self, request: Any, context: Any) -> Any:
        # "Stop what is in flight", not "exit": nothing here runs long enough to stop.
        return pb.StopProvider.Response()


class Controller:
    """go-plugin's GRPCController: Shutdown is how Terraform ends the plugin."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping

    def Shutdown(self, request: Any, context: Any) -> Any:
        self.stopping.set()
        return controller_pb.Empty()


class Stdio:
    """go-plugin's GRPCStdio: our output goes to the real stderr, so the stream is empty."""

    def StreamStdio(self, request: Any, context: Any) -> Any:
        return iter(())


# --------------------------------------------------------------------------- transport


def _certificate() -> bytes:
    """A fresh self-signed certificate for "localhost" and its key, in PEM."""
    # Imported here: loading cryptography is a third of a start-up, and _identity() mostly
    # finds the certificate already made.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        # Terraform pins this certificate as its only root, so it must be a CA as well.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key_pem


def _identity() -> tuple[bytes, bytes, bytes]:
    """(certificate PEM, key PEM, certificate DER) to serve TLS with. Terraform starts a
    provider some nine times a command, so the gate names a file (TFSTANDIN_TLS_FILE) where the
    first start leaves its certificate for the others."""
    cache = os.environ.get("TFSTANDIN_TLS_FILE")
    if cache and Path(cache).is_file():
        pem = Path(cache).read_bytes()
    else:
        pem = _certificate()
        if cache:  # one file, replaced at once: a reader never pairs a cert with another key
            partial = f"{cache}.{os.getpid()}"
            with os.fdopen(
                os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb"
            ) as f:
                f.write(pem)
            Path(partial).replace(cache)
    cert_end = pem.index(b"-----END CERTIFICATE-----\n") + len(b"-----END CERTIFICATE-----\n")
    cert_pem, key_pem = pem[:cert_end], pem[cert_end:]
    cert_der = base64.b64decode(b"".join(cert_pem.strip().splitlines()[1:-1]))
    return cert_pem, key_pem, cert_der


def _watch_parent(stopping: threading.Event) -> None:
    """Stop when Terraform is gone (killed before it could shut us down): never linger."""
    parent = os.getppid()
    while not stopping.wait(1.0):
        if os.getppid() != parent:
            log.warning("parent process %d is gone, stopping", parent)
            stopping.set()


def serve(standin: StandIn) -> None:
    stopping = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rpc.add_ProviderServicer_to_server(Servicer(standin), server)
    controller_rpc.add_GRPCControllerServicer_to_server(Controller(stopping), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(Stdio(), server)
    if os.environ.get("PLUGIN_CLIENT_CERT"):
        cert_pem, key_pem, cert_der = _identity()
        # TLS as Terraform expects, but without asking for its client certificate: go-plugin's
        # has a P-521 key, which gRPC's BoringSSL does not list as acceptable, so Go sends none
        # and the handshake fails (PEER_DID_NOT_RETURN_A_CERTIFICATE). We listen on the
        # loopback only, for one Terraform command.
        credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
        # go-plugin decodes the certificate as unpadded base64.
        cert_field = base64.b64encode(cert_der).decode().rstrip("=")
    else:
        port = server.add_insecure_port("127.0.0.1:0")
        cert_field = ""
    server.start()
    sys.stdout.write(f"1|6|tcp|127.0.0.1:{port}|grpc|{cert_field}\n")
    sys.stdout.flush()
    threading.Thread(target=_watch_parent, args=(stopping,), daemon=True).start()
    stopping.wait()
    server.stop(grace=0.2).wait()
    log.info("%s stand-in stopped after %.2fs of CPU", standin.name, time.process_time())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", type=Path, required=True, help="the provider's schema file")
    args = parser.parse_args(argv)
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(
            "This binary is a plugin. These are not meant to be executed directly.\n"
            "Terraform runs it as a provider (see tools/tfstandin/gate.py).\n"
        )
        return 1
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("TFSTANDIN_LOG", "WARNING").upper(),
        format="[tfstandin] %(levelname)s %(message)s",
    )
    serve(StandIn(json.loads(args.schema.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

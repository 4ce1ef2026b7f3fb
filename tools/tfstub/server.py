#!/usr/bin/env python3
"""A schema-only Terraform provider: speaks plugin protocol 6 and serves a provider's schema, so that
`terraform validate` and `terraform plan` run offline against the real resource schemas.

    server.py SCHEMA.json [CERT_CACHE]   (started by Terraform from the filesystem mirror tools/tfstub/mirror.py
                                         makes; CERT_CACHE keeps its TLS certificate between starts)

It serves the schema in SCHEMA.json (written by tools/tfstub/extract.py from the provider's cdktf package),
and answers:
  - validation: Terraform itself checks arguments, required ones, types and block counts against the
    schema; the stub adds the provider's enum checks ("Possible values" of the provider's docs), which the
    real provider makes in its own validation;
  - plan: the proposed values, with every computed attribute left unset made unknown ("known after
    apply"), as a real provider plans a create;
  - data sources: the configuration, with computed attributes filled with placeholders;
  - apply and import: refused. Nothing here ever talks to Google Cloud.

It runs in its own virtual environment (tools/tfstub-requirements.txt: the `tf` package, whose generated
protocol modules it uses, with grpcio, msgpack and cryptography).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sys
import tempfile
from concurrent import futures

import grpc
import msgpack
from tf.gen import grpc_controller_pb2 as controller_pb
from tf.gen import grpc_controller_pb2_grpc as controller_rpc
from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc
from tf.gen import tfplugin_pb2 as pb
from tf.gen import tfplugin_pb2_grpc as rpc

MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"


class Unknown:
    """cty's unknown value (msgpack extension 0)."""

    def __init__(self, payload: bytes = b""):
        self.payload = payload

    def __repr__(self) -> str:
        return "Unknown"


UNKNOWN = Unknown()


def _ext_hook(code: int, data: bytes):
    return Unknown(data) if code == 0 else msgpack.ExtType(code, data)


def _default(obj):
    if isinstance(obj, Unknown):
        return msgpack.ExtType(0, obj.payload)
    raise TypeError(f"cannot encode {obj!r}")


def decode(value: pb.DynamicValue):
    if value.msgpack:
        return msgpack.unpackb(value.msgpack, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    if value.json:
        return json.loads(value.json)
    return None


def encode(value) -> pb.DynamicValue:
    return pb.DynamicValue(msgpack=msgpack.packb(value, default=_default, use_bin_type=True))


# --- Schema -----------------------------------------------------------------------------------------------

NESTING = {
    "single": pb.Schema.NestedBlock.SINGLE, "list": pb.Schema.NestedBlock.LIST,
    "set": pb.Schema.NestedBlock.SET, "map": pb.Schema.NestedBlock.MAP, "group": pb.Schema.NestedBlock.GROUP,
}


def block_pb(block: dict) -> pb.Schema.Block:
    attributes = [
        pb.Schema.Attribute(
            name=name, type=json.dumps(a["type"]).encode(), description=a.get("description", ""),
            required=bool(a.get("required")), optional=bool(a.get("optional")),
            computed=bool(a.get("computed")), sensitive=bool(a.get("sensitive")),
        )
        for name, a in sorted(block.get("attributes", {}).items())
    ]
    block_types = [
        pb.Schema.NestedBlock(
            type_name=name, block=block_pb(bt["block"]), nesting=NESTING[bt["nesting_mode"]],
            min_items=bt.get("min_items", 0), max_items=bt.get("max_items", 0),
        )
        for name, bt in sorted(block.get("block_types", {}).items())
    ]
    return pb.Schema.Block(attributes=attributes, block_types=block_types,
                           description=block.get("description", ""))


def schema_pb(schema: dict) -> pb.Schema:
    return pb.Schema(version=schema.get("version", 0), block=block_pb(schema["block"]))


# --- Values -----------------------------------------------------------------------------------------------


def _nested(bt: dict, value, fn):
    if value is None or isinstance(value, Unknown):
        return value
    mode = bt["nesting_mode"]
    if mode in ("single", "group"):
        return fn(bt["block"], value)
    if mode == "map":
        return {k: fn(bt["block"], v) for k, v in value.items()}
    return [fn(bt["block"], v) for v in value]


def plan_object(block: dict, proposed):
    """A create's planned value: computed attributes left unset become unknown."""
    if proposed is None or isinstance(proposed, Unknown):
        return proposed
    out = dict(proposed)
    for name, a in block.get("attributes", {}).items():
        if out.get(name) is None and a.get("computed"):
            out[name] = UNKNOWN
    for name, bt in block.get("block_types", {}).items():
        out[name] = _nested(bt, out.get(name), plan_object)
    return out


def placeholder(typ, name: str):
    if typ == "string":
        return f"stub-{name}"
    if typ == "number":
        return 0
    if typ == "bool":
        return False
    if isinstance(typ, list):
        if typ[0] in ("list", "set", "tuple"):
            return []
        if typ[0] == "map":
            return {}
        if typ[0] == "object":
            return {k: placeholder(t, k) for k, t in typ[1].items()}
    return None  # dynamic: null


def read_object(block: dict, config):
    """A data source's result: the configuration, computed attributes filled with placeholders."""
    if config is None or isinstance(config, Unknown):
        return config
    out = dict(config)
    for name, a in block.get("attributes", {}).items():
        if out.get(name) is None and a.get("computed"):
            out[name] = placeholder(a["type"], name)
    for name, bt in block.get("block_types", {}).items():
        out[name] = _nested(bt, out.get(name), read_object)
    return out


def enum_errors(block: dict, value, path: list) -> list[pb.Diagnostic]:
    """The provider's own enum checks (its docs' "Possible values"), on known string values."""
    if not isinstance(value, dict):
        return []
    errors = []
    for name, a in block.get("attributes", {}).items():
        v = value.get(name)
        allowed = a.get("possible_values")
        if allowed and isinstance(v, str) and v != "" and v not in allowed:
            errors.append(pb.Diagnostic(
                severity=pb.Diagnostic.ERROR,
                summary=f"expected {name} to be one of {json.dumps(allowed)}, got {v}",
                attribute=pb.AttributePath(steps=[*path, pb.AttributePath.Step(attribute_name=name)]),
            ))
    for name, bt in block.get("block_types", {}).items():
        v = value.get(name)
        step = [*path, pb.AttributePath.Step(attribute_name=name)]
        if isinstance(v, dict) and bt["nesting_mode"] in ("single", "group"):
            errors += enum_errors(bt["block"], v, step)
        elif isinstance(v, dict):
            for key, item in v.items():
                errors += enum_errors(bt["block"], item, [*step, pb.AttributePath.Step(element_key_string=key)])
        elif isinstance(v, list):
            for i, item in enumerate(v):
                errors += enum_errors(bt["block"], item, [*step, pb.AttributePath.Step(element_key_int=i)])
    return errors


def error(summary: str, detail: str = "") -> list[pb.Diagnostic]:
    return [pb.Diagnostic(severity=pb.Diagnostic.ERROR, summary=summary, detail=detail)]


# --- The provider service ---------------------------------------------------------------------------------


class StubProvider(rpc.ProviderServicer):
    def __init__(self, schema: dict):
        self.schema = schema
        self.resources = schema.get("resource_schemas", {})
        self.data_sources = schema.get("data_source_schemas", {})
        self._response = pb.GetProviderSchema.Response(
            provider=schema_pb(schema["provider"]),
            provider_meta=pb.Schema(block=pb.Schema.Block()),
            resource_schemas={n: schema_pb(s) for n, s in self.resources.items()},
            data_source_schemas={n: schema_pb(s) for n, s in self.data_sources.items()},
            server_capabilities=pb.ServerCapabilities(plan_destroy=True),
        )

    def GetMetadata(self, request, context):
        return pb.GetMetadata.Response(
            server_capabilities=pb.ServerCapabilities(plan_destroy=True),
            resources=[pb.GetMetadata.ResourceMetadata(type_name=n) for n in self.resources],
            data_sources=[pb.GetMetadata.DataSourceMetadata(type_name=n) for n in self.data_sources],
        )

    def GetProviderSchema(self, request, context):
        return self._response

    def ValidateProviderConfig(self, request, context):
        return pb.ValidateProviderConfig.Response()

    def ValidateResourceConfig(self, request, context):
        block = self.resources[request.type_name]["block"]
        return pb.ValidateResourceConfig.Response(diagnostics=enum_errors(block, decode(request.config), []))

    def ValidateDataResourceConfig(self, request, context):
        block = self.data_sources[request.type_name]["block"]
        return pb.ValidateDataResourceConfig.Response(diagnostics=enum_errors(block, decode(request.config), []))

    def UpgradeResourceState(self, request, context):
        return pb.UpgradeResourceState.Response(upgraded_state=pb.DynamicValue(json=request.raw_state.json))

    def ConfigureProvider(self, request, context):
        return pb.ConfigureProvider.Response()

    def ReadResource(self, request, context):
        return pb.ReadResource.Response(new_state=request.current_state, private=request.private)

    def PlanResourceChange(self, request, context):
        block = self.resources[request.type_name]["block"]
        proposed = decode(request.proposed_new_state)
        prior = decode(request.prior_state)
        if proposed is None:  # destroy
            return pb.PlanResourceChange.Response(planned_state=request.proposed_new_state)
        if prior is None:
            planned = plan_object(block, proposed)
        else:  # update: what is unset and computed keeps its prior value
            planned = dict(proposed)
            for name, a in block.get("attributes", {}).items():
                if planned.get(name) is None and a.get("computed"):
                    planned[name] = prior.get(name)
        return pb.PlanResourceChange.Response(planned_state=encode(planned), legacy_type_system=True)

    def ApplyResourceChange(self, request, context):
        return pb.ApplyResourceChange.Response(diagnostics=error(
            "This provider is a schema-only stub", "It validates and plans offline; it cannot apply."))

    def ImportResourceState(self, request, context):
        return pb.ImportResourceState.Response(diagnostics=error("This provider is a schema-only stub"))

    def MoveResourceState(self, request, context):
        return pb.MoveResourceState.Response(diagnostics=error("This provider is a schema-only stub"))

    def ReadDataSource(self, request, context):
        block = self.data_sources[request.type_name]["block"]
        return pb.ReadDataSource.Response(state=encode(read_object(block, decode(request.config))))

    def GetFunctions(self, request, context):
        return pb.GetFunctions.Response()

    def CallFunction(self, request, context):
        return pb.CallFunction.Response(error=pb.FunctionError(text="This provider is a schema-only stub"))

    def StopProvider(self, request, context):
        return pb.StopProvider.Response()


# --- go-plugin handshake ----------------------------------------------------------------------------------


def _certificate() -> tuple[bytes, bytes, bytes]:
    """A throw-away self-signed server certificate: (DER, PEM, key PEM). Terraform pins it from the
    handshake line (go-plugin's automatic mutual TLS)."""
    from cryptography import x509  # noqa: PLC0415 - only when no cached certificate is usable (below)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.DER), cert.public_bytes(serialization.Encoding.PEM), key_pem


def cached_certificate(cache: str | None) -> tuple[bytes, bytes, bytes]:
    """_certificate(), kept for half its day in `cache` (a file the mirror names): Terraform starts each
    provider several times per command, and generating a certificate means importing `cryptography`,
    a good part of a start. Written atomically, so providers starting together at most each make one."""
    if cache:
        try:
            with open(cache) as fh:
                kept = json.load(fh)
            if kept["expires"] > dt.datetime.now(dt.UTC).timestamp():
                return base64.b64decode(kept["der"]), kept["cert"].encode(), kept["key"].encode()
        except (OSError, ValueError, KeyError):
            pass
    der, cert_pem, key_pem = _certificate()
    if cache:
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)).timestamp()
        tmp = f"{cache}.{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump({"der": base64.b64encode(der).decode(), "cert": cert_pem.decode(), "key": key_pem.decode(),
                       "expires": expires}, fh)
        os.replace(tmp, cache)
    return der, cert_pem, key_pem


def serve(schema: dict, cert_cache: str | None = None) -> None:
    stopped = []

    class Controller(controller_rpc.GRPCControllerServicer):
        def Shutdown(self, request, context):
            stopped.append(True)
            return controller_pb.Empty()

    class Stdio(stdio_rpc.GRPCStdioServicer):
        def StreamStdio(self, request, context):
            return iter([])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rpc.add_ProviderServicer_to_server(StubProvider(schema), server)
    controller_rpc.add_GRPCControllerServicer_to_server(Controller(), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(Stdio(), server)
    der, cert_pem, key_pem = cached_certificate(cert_cache)
    with tempfile.TemporaryDirectory(prefix="tfstub-") as tmp:
        socket = os.path.join(tmp, "plugin.sock")
        server.add_secure_port(f"unix://{socket}", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
        server.start()
        cert = base64.b64encode(der).decode().rstrip("=")
        print(f"1|6|unix|{socket}|grpc|{cert}", flush=True)
        try:
            while not stopped:
                if server.wait_for_termination(0.05) is False:
                    break
        except KeyboardInterrupt:
            pass
        server.stop(grace=0.2)


def main(argv: list[str]) -> int:
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE:
        print("This is a Terraform provider plugin (a schema-only stub); Terraform starts it.", file=sys.stderr)
        return 1
    if len(argv) not in (2, 3):
        print("usage: server.py SCHEMA.json [CERT_CACHE]", file=sys.stderr)
        return 2
    with open(argv[1]) as fh:
        schema = json.load(fh)
    serve(schema, argv[2] if len(argv) == 3 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

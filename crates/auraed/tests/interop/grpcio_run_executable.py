"""An independent gRPC implementation (Python grpcio) calling auraed.

Generates the stubs from the repository's .proto files with grpc_tools, calls
runtime.Core/RunExecutable over the Unix socket with mutual TLS, and prints
the reply's wire bytes (hex) and decoded fields as JSON for the Rust test.

On a Unix socket grpcio needs the server name given twice: for certificate
verification (grpc.ssl_target_name_override) and for the :authority header
(grpc.default_authority); otherwise it uses the socket path as authority,
which no certificate names.
"""

import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc


def main():
    proto_dir, socket, ca, crt, key, command = sys.argv[1:7]
    out = tempfile.mkdtemp(prefix="aurae-grpcio-")
    protos = ["meta.proto", "runtime.proto"]
    # The well-known types (google/protobuf/wrappers.proto) ship with
    # grpc_tools, as `python3 -m grpc_tools.protoc` adds them itself.
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", *protos])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    import runtime_pb2  # noqa: E402
    import runtime_pb2_grpc  # noqa: E402

    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(crt, "rb").read(),
    )
    name = "server.unsafe.aurae.io"
    options = [("grpc.ssl_target_name_override", name), ("grpc.default_authority", name)]
    with grpc.secure_channel(f"unix://{os.path.abspath(socket)}", creds, options=options) as channel:
        stub = runtime_pb2_grpc.CoreStub(channel)
        reply = stub.RunExecutable(runtime_pb2.Executable(command=command, comment="grpcio"), timeout=30)
    print(json.dumps({
        "bytes_hex": reply.SerializeToString().hex(),
        "stdout": reply.stdout,
        "exit_code": reply.exit_code,
        "status": reply.status,
        "pid": reply.proc.pid,
    }))


if __name__ == "__main__":
    main()

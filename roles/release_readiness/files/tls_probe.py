# Read-only TLS probe run on the target by the release_readiness role (python3 -c, argument: JSON).
# Prints JSON: {"der": base64 DER of the leaf certificate, "verified": bool, "verify_error": str|null}
# or {"error": "..."} when no certificate could be read. The controller parses the dates.
import base64
import json
import socket
import ssl
import sys

spec = json.loads(sys.argv[1])
out = {"der": None, "verified": None, "verify_error": None}
try:
    if spec.get("path"):
        with open(spec["path"]) as handle:
            out["der"] = base64.b64encode(ssl.PEM_cert_to_DER_cert(handle.read())).decode("ascii")
    else:
        address = (spec["host"], int(spec["port"]))
        name = spec.get("server_name") or spec["host"]
        # first read the certificate whatever its trust, so an untrusted but expiring one is still reported
        grab = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        grab.check_hostname = False
        grab.verify_mode = ssl.CERT_NONE
        with socket.create_connection(address, timeout=spec.get("timeout", 5)) as sock:
            with grab.wrap_socket(sock, server_hostname=name) as tls:
                out["der"] = base64.b64encode(tls.getpeercert(binary_form=True)).decode("ascii")
        verify = ssl.create_default_context(cafile=spec.get("ca_path") or None)
        try:
            with socket.create_connection(address, timeout=spec.get("timeout", 5)) as sock:
                with verify.wrap_socket(sock, server_hostname=name):
                    out["verified"] = True
        except ssl.SSLError as exc:
            out["verified"] = False
            out["verify_error"] = getattr(exc, "verify_message", None) or str(exc)
except (OSError, ValueError, KeyError) as exc:
    out = {"error": "%s: %s" % (type(exc).__name__, exc)}
print(json.dumps(out))

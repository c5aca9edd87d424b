#!/usr/bin/env python3
"""Independent check of a certseal licence document: a COSE_Sign1 decoded with cbor2 and its
signature verified with `cryptography`, using only the seal certificate found (by kid) in the
registry's trust list. No certseal code is involved.

usage: verify_licence.py TRUST_LIST DOCUMENT EXPECTED.json
EXPECTED holds licence_id, issuer, type_code, template_version, seal_id, holder {kind, id, name},
fields {name: value}, nbf, exp and iat (seconds; exp null without expiry) and prev (or null). Prints "OK" or exits non-zero with the reason.
"""
import hashlib
import json
import sys

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def fail(why):
    print("FAIL: " + why)
    sys.exit(1)


def sign1(data):
    obj = cbor2.loads(data)
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != 18:
        fail("not a tagged COSE_Sign1")
    protected, _unprotected, payload, signature = obj.value
    return protected, cbor2.loads(protected), payload, signature


def main():
    trust_list_bytes = open(sys.argv[1], "rb").read()
    document = open(sys.argv[2], "rb").read()
    expected = json.load(open(sys.argv[3], encoding="utf-8"))

    # The trust list's payload: the seals and their certificates.
    _, _, tl_payload, _ = sign1(trust_list_bytes)
    trust_list = cbor2.loads(tl_payload)

    protected_bytes, protected, payload, signature = sign1(document)
    alg, kid, content_type = protected[1], protected[4], protected[3]
    if content_type != "application/certseal-licence+cbor; v=1":
        fail("content type " + repr(content_type))
    candidates = [s for s in trust_list["seals"] if s["kid"] == kid]
    if not candidates:
        fail("no certificate in the trust list has kid " + kid.hex())

    sig_structure = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    verified = None
    for seal in candidates:
        der = seal["cert"]
        if hashlib.sha256(der).digest()[:8] != kid:
            fail("kid is not SHA-256(certificate)[:8]")
        key = x509.load_der_x509_certificate(der).public_key()
        try:
            if alg == -8 and isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, sig_structure)
            elif alg == -7 and isinstance(key, ec.EllipticCurvePublicKey):
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                key.verify(encode_dss_signature(r, s), sig_structure, ec.ECDSA(hashes.SHA256()))
            else:
                continue
            verified = seal
            break
        except Exception:
            continue
    if verified is None:
        fail("the signature does not verify with any certificate of that kid")

    claims = cbor2.loads(payload)
    body = claims[-70001]
    checks = {
        "iss": (claims[1], expected["issuer"]),
        "cti": (claims[7].decode(), expected["licence_id"]),
        "type": (body["type"], expected["type_code"]),
        "tv": (body["tv"], expected["template_version"]),
        "seal": (body["seal"], expected["seal_id"]),
        "seal in trust list": (verified["id"], expected["seal_id"]),
        "holder": (body["holder"], expected["holder"]),
        "fields": (body["fields"], expected["fields"]),
        "prev": (body.get("prev"), expected.get("prev")),
    }
    for name, (got, want) in checks.items():
        if got != want:
            fail(f"{name}: document says {got!r}, expected {want!r}")
    for claim, name in ((5, "nbf"), (4, "exp"), (6, "iat")):
        if claims.get(claim) != expected.get(name):
            fail(f"{name}: document says {claims.get(claim)!r}, expected {expected.get(name)!r}")
    # Deterministic encoding: re-encoding canonically gives the same bytes.
    if cbor2.dumps(claims, canonical=True) != payload:
        fail("the payload is not in deterministic CBOR")
    print("OK")


if __name__ == "__main__":
    main()

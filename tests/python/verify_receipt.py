#!/usr/bin/env python3
"""Independent check of a certseal receipt: a COSE_Sign1 decoded with cbor2 and verified with
`cryptography` using only the certificate it carries (x5chain, header 33), which must be issued
by the given CA. Prints the receipt's payload as JSON.

usage: verify_receipt.py RECEIPT CA.der
"""
import json
import sys

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519


def main():
    obj = cbor2.loads(open(sys.argv[1], "rb").read())
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != 18:
        sys.exit("FAIL: not a tagged COSE_Sign1")
    protected_bytes, _, payload, signature = obj.value
    protected = cbor2.loads(protected_bytes)
    versions = {"application/certseal-receipt+cbor; v=1": 1, "application/certseal-receipt+cbor; v=2": 2}
    if protected.get(3) not in versions or protected[1] != -8:
        sys.exit("FAIL: header " + repr(protected))
    cert = x509.load_der_x509_certificate(protected[33])
    ca = x509.load_der_x509_certificate(open(sys.argv[2], "rb").read())
    # The receipt certificate is issued by the seal CA (ECDSA P-256 signature).
    ca.public_key().verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )
    key = cert.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        sys.exit("FAIL: not an Ed25519 key")
    key.verify(signature, cbor2.dumps(["Signature1", protected_bytes, b"", payload]))
    receipt = cbor2.loads(payload)
    # The content type names the payload's version; version 2 names the check's basis.
    if receipt["v"] != versions[protected[3]] or (receipt["v"] == 2) != ("basis" in receipt):
        sys.exit("FAIL: payload version " + repr(receipt.get("v")))
    receipt["document"] = receipt["document"].hex()
    print(json.dumps(receipt, ensure_ascii=False, sort_keys=True))


if __name__ == "__main__":
    main()

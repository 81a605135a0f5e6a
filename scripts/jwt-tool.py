#!/usr/bin/env python3
"""jwt-tool.py - test keys and tokens for ringway's JWT consumers (PyJWT + cryptography).

  jwt-tool.py keys DIR
      writes es256.pem (P-256), rs256.pem (RSA 2048), other-es256.pem (a key nobody trusts),
      jwks.json (the public halves of es256 and rs256, kids "es-1" and "rs-1") and hs256.key
      (a 48-byte random secret, hex) into DIR.
  jwt-tool.py sign ALG KEYFILE [--kid KID] [--claims JSON] [--exp-in SECONDS]
      prints a token signed with KEYFILE (a PEM private key, or the secret file for HS*).
      Claims default to {"sub": "test"}; exp is now + --exp-in (default 300; negative: expired).
"""
import argparse, json, os, secrets, sys, time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def keys(d):
    os.makedirs(d, exist_ok=True)
    es, rs, other = ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048), \
        ec.generate_private_key(ec.SECP256R1())
    for name, k in (("es256.pem", es), ("rs256.pem", rs), ("other-es256.pem", other)):
        with open(os.path.join(d, name), "wb") as f:
            f.write(pem(k))
    jwks = []
    for kid, alg, k, algo in (("es-1", "ES256", es, jwt.algorithms.ECAlgorithm),
                              ("rs-1", "RS256", rs, jwt.algorithms.RSAAlgorithm)):
        j = json.loads(algo.to_jwk(k.public_key()))
        j.update(kid=kid, alg=alg, use="sig")
        jwks.append(j)
    with open(os.path.join(d, "jwks.json"), "w") as f:
        json.dump({"keys": jwks}, f)
    with open(os.path.join(d, "hs256.key"), "w") as f:
        f.write(secrets.token_hex(48) + "\n")


def sign(alg, keyfile, kid, claims, exp_in):
    with open(keyfile, "rb") as f:
        key = f.read()
    if alg.startswith("HS"):
        key = key.strip()
    body = {"sub": "test"}
    body.update(json.loads(claims) if claims else {})
    if "exp" not in body:
        body["exp"] = int(time.time()) + exp_in
    headers = {"kid": kid} if kid else None
    print(jwt.encode(body, key, algorithm=alg, headers=headers))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keys")
    k.add_argument("dir")
    s = sub.add_parser("sign")
    s.add_argument("alg")
    s.add_argument("keyfile")
    s.add_argument("--kid")
    s.add_argument("--claims")
    s.add_argument("--exp-in", type=int, default=300)
    a = ap.parse_args()
    if a.cmd == "keys":
        keys(a.dir)
    else:
        sign(a.alg, a.keyfile, a.kid, a.claims, a.exp_in)


if __name__ == "__main__":
    sys.exit(main())

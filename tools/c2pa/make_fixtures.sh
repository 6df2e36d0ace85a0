#!/usr/bin/env bash
# Writes crates/media/tests/fixtures/c2pa/: a "bring your own" credential set
# made with OpenSSL rather than rcgen, so the tests check that Easel signs
# with a chain it did not generate (P-384, so ES384 is picked from the key):
#   byo-ca.pem     a root CA (P-384, 100 years)
#   byo-chain.pem  the end-entity certificate (digitalSignature, EKU
#                  emailProtection, AKI + SKI, 100 years) followed by the CA
#   byo-signer.key its PKCS#8 key
# Test credentials only: the keys are public in the repository.
# Usage: tools/c2pa/make_fixtures.sh   (needs openssl 3)
set -euo pipefail
out="$(dirname "$0")/../../crates/media/tests/fixtures/c2pa"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -sha384 -days 36500 \
  -subj "/O=Easel tests/CN=Easel test BYO CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
  -addext "subjectKeyIdentifier=hash" \
  -out "$out/byo-ca.pem"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$out/byo-signer.key"
openssl req -new -key "$out/byo-signer.key" -subj "/O=Easel tests/CN=Easel test BYO signer" \
  -out "$tmp/signer.csr"
cat > "$tmp/ext.cnf" <<'CNF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=emailProtection
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
CNF
openssl x509 -req -in "$tmp/signer.csr" -CA "$out/byo-ca.pem" -CAkey "$tmp/ca.key" \
  -CAcreateserial -CAserial "$tmp/ca.srl" -sha384 -days 36500 \
  -extfile "$tmp/ext.cnf" -out "$tmp/signer.pem"
cat "$tmp/signer.pem" "$out/byo-ca.pem" > "$out/byo-chain.pem"
ls -l "$out"

#!/usr/bin/env bash
# make_test_ca.sh DIR: throwaway test PKI for the TLS tests (CA, front/node certs it signs, rogue cert from an unrelated CA).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"
umask 077
days=2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs openssl quietly; shows its output only when it fails.
ossl() {
  if ! openssl "$@" >"$work/log" 2>&1; then
    echo "make_test_ca.sh: openssl $1 failed:" >&2
    cat "$work/log" >&2
    exit 1
  fi
}

# make_ca NAME: self-signed CA certificate NAME.pem with key NAME.key.
make_ca() {
  ossl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.pem" -days "$days" -subj "/CN=smsp test $1" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# make_cert NAME CA: certificate NAME.pem/NAME.key for 127.0.0.1 and localhost,
# signed by CA.pem/CA.key, usable as TLS server and client.
make_cert() {
  ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$work/$1.csr" -subj "/CN=$1"
  cat >"$work/$1.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
  ossl x509 -req -in "$work/$1.csr" -CA "$2.pem" -CAkey "$2.key" \
    -CAcreateserial -CAserial "$work/$2.srl" -days "$days" \
    -extfile "$work/$1.ext" -out "$1.pem"
}

make_ca ca
make_cert front ca
make_cert node ca
make_ca rogue-ca
make_cert rogue rogue-ca
ossl verify -CAfile ca.pem front.pem node.pem
if openssl verify -CAfile ca.pem rogue.pem >/dev/null 2>&1; then
  echo "make_test_ca.sh: rogue.pem verifies against ca.pem" >&2
  exit 1
fi
chmod 644 ./*.pem

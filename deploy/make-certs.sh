#!/usr/bin/env bash
# A lab's own certificates for ibsweep over TLS, with openssl (docs/security.md):
#   deploy/make-certs.sh DIR HOST [HOST...]
# writes DIR/ca.pem + ca.key (keep ca.key offline), DIR/server.pem + server.key for the
# coordinator (subject alternative names: every HOST, IP addresses as IP entries), and
# DIR/worker.pem + worker.key, a client certificate for mutual TLS (`serve --tls-client-ca`).
# Nothing is downloaded; re-running replaces the files.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 DIR HOST [HOST...]   (e.g. $0 certs coordinator.lab.example 10.0.0.5)" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "make-certs: openssl is missing (apt-get install openssl)" >&2; exit 1; }
dir=$1; shift
mkdir -p "$dir"
sans=""
for host in "$@"; do
    if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then entry="IP:$host"; else entry="DNS:$host"; fi
    sans="${sans:+$sans,}$entry"
done
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=ibsweep lab CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
issue() { # name subject extensions
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$dir/$1.key" -out "$dir/$1.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 825 -extfile <(printf '%s\n' "$3") -out "$dir/$1.pem" 2>/dev/null
    rm -f "$dir/$1.csr"
}
issue server "$1" "subjectAltName=$sans
extendedKeyUsage=serverAuth"
issue worker "ibsweep worker" "extendedKeyUsage=clientAuth"
chmod 644 "$dir/ca.pem" "$dir/server.pem" "$dir/worker.pem"
echo "make-certs: wrote $dir/{ca,server,worker}.{pem,key} for $*"

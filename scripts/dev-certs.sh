#!/usr/bin/env bash
# Generates a throwaway dev CA and a serving certificate for the webhook.
# Names: localhost, 127.0.0.1, ::1 and the in-cluster Service names.
set -euo pipefail
dir=${1:-certs-dev}
mkdir -p "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "openssl is required (apt-get install openssl)"; exit 1; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -keyout ca.key -out ca.crt -subj "/CN=portcullis dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout tls.key -out tls.csr -subj "/CN=portcullis.portcullis-system.svc" 2>/dev/null
cat > ext.cnf <<'EXT'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,DNS:portcullis,DNS:portcullis.portcullis-system,DNS:portcullis.portcullis-system.svc,DNS:portcullis.portcullis-system.svc.cluster.local
EXT
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out tls.crt -extfile ext.cnf 2>/dev/null
rm -f tls.csr ext.cnf ca.srl
chmod 600 ca.key tls.key
echo "dev certificates written to $dir/ (CA: $dir/ca.crt)"

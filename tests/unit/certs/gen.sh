#!/bin/sh
# gen.sh DIR - the X.509 material test_cert.c needs, made fresh on every run with the openssl CLI
# (and faketime for the expired and not-yet-valid leaves). Nothing here is a real secret.
set -eu
dir=$1
cd "$dir"

cat >ext.cnf <<'CNF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[int]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:mx1.example.com, DNS:mx2.example.com, DNS:*.relay.example.com
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
subjectAltName = DNS:client.example.com
[nosan]
basicConstraints = CA:FALSE
[self]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:self.example.com
CNF

rsa() { openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${2:-2048}" -out "$1" 2>/dev/null; }
ec() { openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$2" -out "$1"; }
# sign NAME KEY SUBJECT ISSUER SECTION [faketime args...]: NAME.pem issued by ISSUER.pem/.key
sign() {
	name=$1 key=$2 subj=$3 issuer=$4 section=$5
	shift 5
	openssl req -new -key "$key" -subj "$subj" -out "$name.csr"
	"$@" openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" \
		-set_serial "0x$(openssl rand -hex 8)" -days 365 -extfile ext.cnf -extensions "$section" \
		-out "$name.pem" 2>/dev/null
	rm -f "$name.csr"
}
# selfsign NAME KEY SUBJECT SECTION: a self-signed NAME.pem with exactly the SECTION extensions
# (`openssl req -x509` would add the config's CA:TRUE)
selfsign() {
	openssl req -new -key "$2" -subj "$3" -out "$1.csr"
	openssl x509 -req -in "$1.csr" -signkey "$2" -set_serial "0x$(openssl rand -hex 8)" \
		-days 3650 -extfile ext.cnf -extensions "$4" -out "$1.pem" 2>/dev/null
	rm -f "$1.csr"
}

rsa ca.key
selfsign ca ca.key "/O=smtptlsd tests/CN=smtptlsd Test Root CA" ca
rsa int.key
sign int int.key "/O=smtptlsd tests/CN=smtptlsd Test Intermediate" ca int
rsa other_ca.key
selfsign other_ca other_ca.key "/CN=Unrelated CA" ca

# the good RSA leaf, with a fixed serial
rsa leaf.key
openssl req -new -key leaf.key -subj "/O=smtptlsd tests/CN=mx1.example.com" -out leaf.csr
openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -set_serial 0x1A2B -days 365 \
	-extfile ext.cnf -extensions leaf -out leaf.pem 2>/dev/null
rm -f leaf.csr
openssl rsa -in leaf.key -traditional -out leaf.rsa.key 2>/dev/null
openssl pkey -in leaf.key -aes256 -passout pass:x -out enc8.key
openssl rsa -in leaf.key -aes256 -passout pass:x -traditional -out enclegacy.key 2>/dev/null

# EC P-256 with the EC PARAMETERS block `openssl ecparam -genkey` writes in front of the key
openssl ecparam -name prime256v1 -genkey -out ec.key
sign ec ec.key "/CN=mx-ec.example.com" int leaf
ec ec224.key P-224
sign ec224 ec224.key "/CN=mx-p224.example.com" int leaf
openssl genpkey -algorithm ED25519 -out ed.key
sign ed ed.key "/CN=mx-ed.example.com" int leaf
rsa rsa1024.key 1024
sign rsa1024 rsa1024.key "/CN=weak.example.com" int leaf
rsa other.key

sign expired leaf.key "/CN=mx1.example.com" int leaf faketime 2020-01-01
sign future leaf.key "/CN=mx1.example.com" int leaf faketime -f +730d
sign client leaf.key "/CN=client.example.com" int client
sign nosan leaf.key "/CN=legacy.example.com" int nosan
selfsign self leaf.key "/CN=self.example.com" self
# a subject in UTF-8
openssl req -new -utf8 -key leaf.key -subj "/O=Société Générale/CN=Müller Mail" -out utf8.csr
openssl x509 -req -in utf8.csr -signkey leaf.key -days 365 -extfile ext.cnf -extensions self \
	-out utf8.pem 2>/dev/null
rm -f utf8.csr
# a CA certificate that shares the leaf's key (a bundle must still pick leaf.pem)
selfsign leafca leaf.key "/CN=Leaf Key CA" ca

# independent references for the fingerprints
openssl x509 -in leaf.pem -noout -fingerprint -sha256 | sed 's/.*=//' >leaf.fp
openssl x509 -in leaf.pem -noout -pubkey | openssl pkey -pubin -outform DER |
	openssl dgst -sha256 -r | cut -d' ' -f1 >leaf.spki

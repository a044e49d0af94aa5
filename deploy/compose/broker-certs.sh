#!/bin/sh
# Make the broker's TLS files for docker-compose.yml, once: a private CA and a server certificate for the names the
# clients connect to (the compose service `mosquitto`, plus SHOPFLOOR_MQTT_TLS_NAMES for agents outside the compose
# network, e.g. "DNS:broker.factory.lan,IP:192.168.10.5"). Run by the mqtt-init service as the image's user.
#
#   broker-certs.sh BROKER_CERTS_DIR CA_OUT_DIR
#
# BROKER_CERTS_DIR gets ca.crt, server.crt and server.key (the paths deploy/mosquitto/mosquitto.conf names under
# /mosquitto/config/certs/); CA_OUT_DIR gets ca.crt alone, for the clients (--mqtt-ca). Files already there are
# kept: to use your own CA, put your ca.crt, server.crt and server.key into the broker's config volume (see the
# README, "docker compose"); to start over, delete the volume. The CA's key never leaves this script: it signs the
# one server certificate and is deleted, so nobody can issue a certificate under it later.
set -eu

certs=${1:?usage: broker-certs.sh BROKER_CERTS_DIR CA_OUT_DIR}
ca_out=${2:?usage: broker-certs.sh BROKER_CERTS_DIR CA_OUT_DIR}
names="DNS:mosquitto,DNS:localhost,IP:127.0.0.1${SHOPFLOOR_MQTT_TLS_NAMES:+,$SHOPFLOOR_MQTT_TLS_NAMES}"

mkdir -p "$certs" "$ca_out"
if [ -s "$certs/ca.crt" ] && [ -s "$certs/server.crt" ] && [ -s "$certs/server.key" ]; then
    echo "broker-certs: keeping the certificates in $certs"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    umask 077
    openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=Shopfloor broker CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
    openssl req -newkey rsa:3072 -nodes -subj "/CN=mosquitto" \
        -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n' "$names" > "$work/server.ext"
    openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
        -days 825 -extfile "$work/server.ext" -out "$work/server.crt" 2>/dev/null
    # The broker reads these as its own user, through the group it shares with this one (mqtt-init's `user:`).
    chmod 0644 "$work/ca.crt" "$work/server.crt"
    chmod 0640 "$work/server.key"
    mv "$work/ca.crt" "$work/server.crt" "$work/server.key" "$certs/"
    echo "broker-certs: made a CA and a server certificate for $names in $certs"
fi
cp "$certs/ca.crt" "$ca_out/ca.crt"
chmod 0644 "$ca_out/ca.crt"

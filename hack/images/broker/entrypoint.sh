#!/bin/sh
# Makes the broker's password file from the Docker secret (Mosquitto keeps
# salted PBKDF2-SHA512 hashes, made by its own tool), then runs the broker.
#   AIART_BROKER_PASSWORD_FILE  the secret: user aiart's password
set -eu
umask 077
secret=${AIART_BROKER_PASSWORD_FILE:-/run/secrets/aiart-broker-password}
[ -s "$secret" ] || { echo "no broker password in $secret" >&2; exit 2; }
rm -f /mosquitto/run/passwd
/usr/bin/mosquitto_passwd -c -b /mosquitto/run/passwd aiart "$(cat "$secret")"
exec /usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf "$@"

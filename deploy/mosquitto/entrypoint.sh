#!/bin/sh
# Add (or update) the service accounts in the password file, then run mosquitto.
# The file lives in the mosquitto-auth volume, so per-meter accounts added with
# `mosquitto_passwd -b /mosquitto/auth/passwd <meter_id> <password>` survive restarts.
set -eu
: "${MQTT_TAPWATCH_PASSWORD:?set MQTT_TAPWATCH_PASSWORD in .env}"
PASSWD=/mosquitto/auth/passwd
touch "$PASSWD"
mosquitto_passwd -b "$PASSWD" tapwatch "$MQTT_TAPWATCH_PASSWORD"
if [ -n "${MQTT_SIMULATOR_PASSWORD:-}" ]; then
  mosquitto_passwd -b "$PASSWD" simulator "$MQTT_SIMULATOR_PASSWORD"
fi
chown -R mosquitto:mosquitto /mosquitto/data /mosquitto/auth
chmod 0600 "$PASSWD"
exec /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf

#!/bin/sh
# Build the broker's password file and ACL, then run mosquitto; on SIGHUP build them again and make
# mosquitto reload them (`docker compose kill -s HUP mosquitto`), without dropping connections.
#
# Accounts: the meters' accounts and ACL written by `tapwatch broker-credentials --out /var/lib/tapwatch-broker`
# (the broker-accounts volume, read-only here), the monitor's account from MQTT_TAPWATCH_PASSWORD, and
# the demo's "simulator" account, which may publish for EVERY meter: only with ALLOW_SIMULATOR_ACCOUNT=yes.
# Paths can be overridden for tests (tests/deploy/test_deploy_broker.py runs this script for real).
set -eu
: "${MQTT_TAPWATCH_PASSWORD:?set MQTT_TAPWATCH_PASSWORD in .env}"
AUTH_DIR=${MOSQUITTO_AUTH_DIR:-/mosquitto/auth}
CONFIG=${MOSQUITTO_CONFIG:-/mosquitto/config/mosquitto.conf}
BASE_ACL=${MOSQUITTO_BASE_ACL:-/mosquitto/config/acl}
GENERATED=${BROKER_ACCOUNTS_DIR:-/tapwatch/broker}
MOSQUITTO=${MOSQUITTO_BIN:-/usr/sbin/mosquitto}
PASSWD=$AUTH_DIR/passwd
ACL=$AUTH_DIR/acl
# The compose healthcheck's login: mosquitto_sub reads its default options from $XDG_CONFIG_HOME/mosquitto_sub, so
# the password is on no command line (`ps` on the host shows every container's to any user there).
HEALTHCHECK_DIR=$AUTH_DIR/healthcheck
HEALTHCHECK_OPTIONS=$HEALTHCHECK_DIR/mosquitto_sub

case "${ALLOW_SIMULATOR_ACCOUNT:-no}" in
  yes) simulator=yes ;;
  no | "") simulator=no ;;
  *) echo "ALLOW_SIMULATOR_ACCOUNT must be yes or no, not '$ALLOW_SIMULATOR_ACCOUNT'" >&2; exit 64 ;;
esac
if [ -n "${MQTT_SIMULATOR_PASSWORD:-}" ] && [ "$simulator" != yes ]; then
  echo "refusing to start: MQTT_SIMULATOR_PASSWORD is set, but the simulator account may publish readings for" \
    "every meter. On a production broker, empty MQTT_SIMULATOR_PASSWORD in .env; for the demo, also set" \
    "ALLOW_SIMULATOR_ACCOUNT=yes (docs/deploy.md)." >&2
  exit 64
fi
if [ "$simulator" = yes ] && [ -z "${MQTT_SIMULATOR_PASSWORD:-}" ]; then
  echo "ALLOW_SIMULATOR_ACCOUNT=yes needs MQTT_SIMULATOR_PASSWORD in .env" >&2
  exit 64
fi

# grep -v exits 1 when it keeps no line (a file of only these accounts), which is no failure; 2 is one.
without_own_accounts() {
  grep -v -e '^tapwatch:' -e '^simulator:' "$1" > "$PASSWD.new" || [ $? -eq 1 ]
}

# The new files beside the old ones. Every step is checked here, not left to `set -e`: on SIGHUP build runs as
# `if build`, where the shell ignores it, and a step that failed went on to a half-made file moved into place.
make_new_files() {
  if [ -f "$GENERATED/passwd" ]; then
    # the registry's accounts replace the file whole: retired meters lose their account
    without_own_accounts "$GENERATED/passwd" || return 1
  elif [ -f "$PASSWD" ]; then
    # accounts added by hand before `tapwatch broker-credentials` was run: keep them, minus the simulator
    without_own_accounts "$PASSWD" || return 1
  else
    : > "$PASSWD.new" || return 1
  fi
  mosquitto_passwd -b "$PASSWD.new" tapwatch "$MQTT_TAPWATCH_PASSWORD" || return 1
  if [ "$simulator" = yes ]; then
    mosquitto_passwd -b "$PASSWD.new" simulator "$MQTT_SIMULATOR_PASSWORD" || return 1
  fi
  acl_source=$BASE_ACL
  if [ -f "$GENERATED/acl" ]; then acl_source=$GENERATED/acl; fi
  cat "$acl_source" > "$ACL.new" || return 1
  if [ "$simulator" = yes ]; then
    printf '\n# ALLOW_SIMULATOR_ACCOUNT=yes: the demo simulator publishes for all meters\nuser simulator\ntopic write public/tapwatch/meters/#\n' >> "$ACL.new" || return 1
  fi
  if [ "$(id -u)" = 0 ]; then
    chown mosquitto:mosquitto "$PASSWD.new" "$ACL.new" || return 1
  fi
  chmod 0600 "$PASSWD.new" && chmod 0644 "$ACL.new" || return 1
  # printf is the shell's own: the password is in no process's arguments here either
  mkdir -p "$HEALTHCHECK_DIR" && chmod 0700 "$HEALTHCHECK_DIR" || return 1
  printf '%s\n' "-u tapwatch" "-P $MQTT_TAPWATCH_PASSWORD" > "$HEALTHCHECK_OPTIONS.new" || return 1
  chmod 0600 "$HEALTHCHECK_OPTIONS.new"
}

# Build the password file and ACL; if a step fails, the ones in place stay as they were, and it says so.
build() {
  umask 077
  if ! make_new_files; then
    rm -f "$PASSWD.new" "$ACL.new" "$HEALTHCHECK_OPTIONS.new"
    echo "entrypoint: rebuilding the broker accounts failed (the error above): $PASSWD and $ACL are left as they were" >&2
    return 1
  fi
  if ! { mv "$PASSWD.new" "$PASSWD" && mv "$ACL.new" "$ACL" && mv "$HEALTHCHECK_OPTIONS.new" "$HEALTHCHECK_OPTIONS"; }; then
    echo "entrypoint: could not move the new broker accounts into $AUTH_DIR (the error above)" >&2
    return 1
  fi
  echo "entrypoint: $(grep -c : "$PASSWD") broker accounts, simulator account: $simulator"
}

build || exit 1
if [ "$(id -u)" = 0 ]; then
  chown -R mosquitto:mosquitto "${MOSQUITTO_DATA_DIR:-/mosquitto/data}" "$AUTH_DIR"
fi
# The traps come before mosquitto starts: a HUP or TERM that arrives while it starts must not kill this shell.
child=
trap 'if build && [ -n "$child" ]; then kill -HUP "$child"; fi' HUP
trap 'if [ -n "$child" ]; then kill -TERM "$child"; else exit 143; fi' TERM INT
"$MOSQUITTO" -c "$CONFIG" &
child=$!
# `wait` returns early when a trapped signal arrives: keep waiting while mosquitto runs
status=0
while kill -0 "$child" 2>/dev/null; do
  wait "$child" && status=0 || status=$?
done
exit "$status"

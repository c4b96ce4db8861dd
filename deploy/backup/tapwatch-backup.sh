#!/bin/bash
# Encrypted backups of tapwatch's relational store, restores, and the restore drill (docs/deploy.md, "Backups").
#
#   tapwatch-backup.sh backup             dump the store, encrypt it to the age recipients, drop old backups
#   tapwatch-backup.sh restore FILE       decrypt FILE and restore it into the target database (see below), or,
#                                         for a FILE of broker accounts (*.broker.tar.age), where they were read
#   tapwatch-backup.sh drill [FILE]       restore FILE (default: the newest backup) into a scratch database and
#                                         compare its row counts with those recorded at backup time
#   tapwatch-backup.sh counts             row counts per table of the target database
#
# Settings (environment; the systemd unit reads /etc/tapwatch/backup.env, see backup.env.example):
#   BACKUP_DATABASE        the store: postgresql://user:password@host:port/db, or sqlite:////abs/path/tapwatch.db
#                          (TAPWATCH_DATABASE_URL's form with +psycopg is accepted too, and libpq's ?password=
#                          and ?sslpassword=; no secret is put on a command line)
#   BACKUP_COMPOSE         instead of BACKUP_DATABASE, for the Docker Compose stack: the compose command, e.g.
#                          "docker compose -f /opt/tapwatch/docker-compose.yml"; pg_dump and pg_restore then run in
#                          the postgres container against the database "tapwatch"
#   BACKUP_DIR             where encrypted backups go (default /var/backups/tapwatch)
#   BACKUP_AGE_RECIPIENTS  file of age public keys (age1...): this host can encrypt but never decrypt
#   BACKUP_AGE_IDENTITY    the age private key file: only for restore and drill, kept off this host otherwise
#   BACKUP_KEEP_DAYS       backups older than this are deleted (default 35)
#   BACKUP_BROKER_DIR      the meters' broker accounts (`tapwatch broker-credentials --out`), saved beside the store:
#                          without them every meter needs a new password. In compose mode they are read from the
#                          tapwatch service's /var/lib/tapwatch-broker, in a container of its own (`compose run`):
#                          tapwatch need not be running. A restore writes them back there, the same way.
#   RESTORE_DATABASE       restore/drill target (default for drill: the scratch database "tapwatch_drill" in
#                          compose mode; required otherwise). A SQLite target must not exist yet.
set -euo pipefail
umask 077

BACKUP_DIR=${BACKUP_DIR:-/var/backups/tapwatch}
BACKUP_KEEP_DAYS=${BACKUP_KEEP_DAYS:-35}
BACKUP_COMPOSE=${BACKUP_COMPOSE:-}

die() { echo "tapwatch-backup: $*" >&2; exit 1; }
# plain dumps exist only here, readable by this user only, and go when the script ends however it ends
WORK=$(mktemp -d)
PART=
trap 'rm -rf "$WORK"; [ -z "$PART" ] || rm -f "$PART"' EXIT

# A target is a URL (postgresql://, postgresql+psycopg://, sqlite:////abs/path) or "compose:DBNAME".
kind_of() {
  case "$1" in
    postgresql://* | postgresql+*://* | postgres://*) echo postgresql ;;
    sqlite:///*) echo sqlite ;;
    compose:*) [ -n "$BACKUP_COMPOSE" ] && echo compose || die "compose target without BACKUP_COMPOSE" ;;
    *) die "unsupported database (postgresql://..., sqlite:///... or BACKUP_COMPOSE): ${1%%://*}" ;;
  esac
}
libpq_url() { echo "$1" | sed -E 's#^postgresql\+[a-z0-9]+://#postgresql://#'; }
sqlite_path() { echo "${1#sqlite:///}"; }
# A URL's secrets as the password of postgresql://user:password@host and of its parameters (libpq's keywords):
# password= (which tapwatch's URL takes too), the client key's sslpassword=, and a future libpq's OAuth secret.
SECRET_PARAMETERS="password sslpassword oauth_client_secret"
# a target as messages show it: each secret replaced by ***
shown() {
  local url name
  url=$(echo "$1" | sed -E -e 's#^([^:/]+://[^:@/]*):[^@]*@#\1:***@#')
  for name in $SECRET_PARAMETERS; do url=$(echo "$url" | sed -E "s#([?&]$name=)[^&]*#\1***#"); done
  echo "$url"
}
# Percent-decoded as tapwatch (SQLAlchemy) reads the URL: only a % before two hex digits is an escape ("100%sure"
# is the password itself), and in the parameters (after the ?) a + is a space.
percent_decoded() { printf '%b' "$(printf '%s\n' "$1" | sed -E -e 's/\\/\\\\/g' -e 's/%([0-9A-Fa-f]{2})/\\x\1/g')"; }
parameter() { percent_decoded "$(echo "$1" | sed -nE "s#^[^?]*\?(.*&)?$2=([^&]*).*#\2#p" | tr + ' ')"; }
without_parameter() { echo "$1" | sed -E -e "s#([?&])$2=[^&]*&?#\1#" -e 's#[?&]$##'; }
# No secret goes on a command line: every local user can read those (ps, /proc/PID/cmdline) for as long as a
# dump or restore runs. The password reaches libpq as PGPASSWORD; the others have no environment variable in any
# libpq (Debian 12's is 15), and reach it through a service file in this run's private $WORK (umask 077).
url_password() {
  local encoded
  encoded=$(echo "$1" | sed -nE 's#^[^:/]+://[^:@/]*:([^@]*)@.*#\1#p')
  if [ -n "$encoded" ]; then percent_decoded "$encoded"; else parameter "$1" password; fi
}
without_password() { without_parameter "$(echo "$1" | sed -E -e 's#^([^:/]+://[^:@/]*):[^@]*@#\1@#')" password; }

# pg tools, on this host against a URL or inside the compose stack's postgres container against a database name
pg() {
  local tool=$1 target=$2 kind
  shift 2
  kind=$(kind_of "$target")
  if [ "$kind" = compose ]; then
    $BACKUP_COMPOSE exec -T postgres "$tool" -U tapwatch -d "${target#compose:}" "$@"
  else
    local url password name value service=
    url=$(libpq_url "$target")
    password=$(url_password "$url")
    url=$(without_password "$url")
    for name in $SECRET_PARAMETERS; do
      [ "$name" != password ] || continue
      value=$(parameter "$url" "$name")
      [ -n "$value" ] || continue
      case "$value" in *$'\n'* | *$'\r'*) die "the $name of $(shown "$target") holds a line break" ;; esac
      service+="$name=$value"$'\n'
      url=$(without_parameter "$url" "$name")
    done
    if [ -n "$service" ]; then
      # libpq takes a service= of the URL before PGSERVICE: the secrets written here would not be read
      [ -z "$(parameter "$url" service)" ] || die "$(shown "$target") names a service: put its secrets in that service's file"
      printf '[tapwatch-backup]\n%s' "$service" > "$WORK/pg_service.conf"
    fi
    (
      # exported in a subshell, not `env NAME=secret tool`: env's own command line would show them
      [ -z "$password" ] || export PGPASSWORD=$password
      [ -z "$service" ] || export PGSERVICEFILE=$WORK/pg_service.conf PGSERVICE=tapwatch-backup
      exec "$tool" -d "$url" "$@"
    )
  fi
}
# a pg tool that needs no database (pg_restore to a script): where the pg tools are
pg_offline() {
  if [ -n "$BACKUP_COMPOSE" ] && [ -z "${BACKUP_DATABASE:-}" ]; then $BACKUP_COMPOSE exec -T postgres "$@"; else "$@"; fi
}
psql_at() { pg psql "$1" -X -q -A -t -v ON_ERROR_STOP=1 -c "$2"; }

# row counts, one "table count" line per table, sorted: the drill compares these
counts() {
  local target=$1 table kind
  kind=$(kind_of "$target")
  case "$kind" in
    sqlite)
      local path
      path=$(sqlite_path "$target")
      for table in $(sqlite3 "$path" "select name from sqlite_master where type='table' and name not like 'sqlite_%' order by name"); do
        echo "$table $(sqlite3 "$path" "select count(*) from \"$table\"")"
      done
      ;;
    *)
      for table in $(psql_at "$target" "select tablename from pg_tables where schemaname='public' order by tablename"); do
        echo "$table $(psql_at "$target" "select count(*) from public.\"$table\"")"
      done
      ;;
  esac
}

target_of() {
  if [ -n "${BACKUP_DATABASE:-}" ]; then echo "$BACKUP_DATABASE"
  elif [ -n "$BACKUP_COMPOSE" ]; then echo compose:tapwatch
  else die "set BACKUP_DATABASE (or BACKUP_COMPOSE)"
  fi
}

backup_broker_accounts() {
  local stamp=$1 recipients=$2 out
  out="$BACKUP_DIR/tapwatch-$stamp.broker.tar.age"
  PART="$out.part"
  if [ -n "${BACKUP_BROKER_DIR:-}" ]; then
    tar -C "$BACKUP_BROKER_DIR" -cf "$WORK/broker.tar" .
  elif [ -n "$BACKUP_COMPOSE" ] && [ -z "${BACKUP_DATABASE:-}" ]; then
    # In a container of its own, with the tapwatch service's volumes: `exec` needs tapwatch running, and a
    # night it was stopped (an upgrade, a crash loop) the backup failed after the store's dump.
    $BACKUP_COMPOSE run --rm --no-deps -T --entrypoint tar tapwatch -C /var/lib/tapwatch-broker -cf - . \
      > "$WORK/broker.tar"
  else
    PART=
    return 0
  fi
  age -R "$recipients" -o "$out.part" "$WORK/broker.tar"
  mv "$out.part" "$out"
  PART=
  echo "backup: $out (broker accounts; restore: age -d -i KEY $out | tar -x -C DIR)"
}

cmd_backup() {
  local source kind recipients stamp out
  source=$(target_of)
  kind=$(kind_of "$source")
  recipients=${BACKUP_AGE_RECIPIENTS:?set BACKUP_AGE_RECIPIENTS to a file of age public keys}
  [ -s "$recipients" ] || die "no age recipients in $recipients"
  mkdir -p "$BACKUP_DIR"
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  case "$kind" in
    sqlite)
      out="$BACKUP_DIR/tapwatch-$stamp.sqlite.age"
      PART="$out.part"
      # sqlite3 would create a store that is not there, and back up an empty one every night
      [ -f "$(sqlite_path "$source")" ] || die "no SQLite store at $(sqlite_path "$source") (BACKUP_DATABASE)"
      # .backup copies a consistent snapshot while tapwatch keeps writing
      sqlite3 "$(sqlite_path "$source")" ".backup '$WORK/snapshot.db'"
      counts "sqlite:///$WORK/snapshot.db" > "$BACKUP_DIR/tapwatch-$stamp.counts"
      age -R "$recipients" -o "$out.part" "$WORK/snapshot.db"
      ;;
    *)
      out="$BACKUP_DIR/tapwatch-$stamp.pgdump.age"
      PART="$out.part"
      # pg_dump reads one snapshot; the counts are read from the dump itself, so they describe what it holds
      pg pg_dump "$source" --format=custom --no-owner > "$WORK/dump"
      pg_offline pg_restore -f - < "$WORK/dump" | awk '
        /^COPY public\./ { split($2, t, "."); table = t[2]; n = 0; copying = 1; next }
        copying && /^\\\.$/ { print table, n; copying = 0; next }
        copying { n++ }' | sort > "$BACKUP_DIR/tapwatch-$stamp.counts"
      age -R "$recipients" -o "$out.part" "$WORK/dump"
      ;;
  esac
  mv "$out.part" "$out"
  PART=
  backup_broker_accounts "$stamp" "$recipients"
  find "$BACKUP_DIR" -maxdepth 1 -name 'tapwatch-*' -mtime +"$BACKUP_KEEP_DAYS" -delete
  echo "backup: $out ($(wc -c < "$out") bytes)"
}

# The meters' broker accounts back where the backup read them. In compose mode in a container of its own, with the
# tapwatch service's volumes: a restore stops tapwatch first, and `exec` into it then failed.
restore_broker_accounts() {
  local file=$1 identity
  identity=${BACKUP_AGE_IDENTITY:?set BACKUP_AGE_IDENTITY to the age private key file}
  [ -f "$file" ] || die "no backup file $file"
  age -d -i "$identity" -o "$WORK/broker.tar" "$file"
  if [ -n "${BACKUP_BROKER_DIR:-}" ]; then
    tar -x -C "$BACKUP_BROKER_DIR" -f "$WORK/broker.tar"
  elif [ -n "$BACKUP_COMPOSE" ]; then
    $BACKUP_COMPOSE run --rm --no-deps -T --entrypoint tar tapwatch -x -C /var/lib/tapwatch-broker \
      < "$WORK/broker.tar"
  else
    die "set BACKUP_BROKER_DIR (or BACKUP_COMPOSE) to restore the broker accounts"
  fi
  echo "restored $file (broker accounts): have the broker read them (docker compose kill -s HUP mosquitto)"
}

cmd_restore() {
  local file=$1 target kind identity
  case "$file" in *.broker.tar.age) restore_broker_accounts "$file"; return ;; esac
  target=${RESTORE_DATABASE:-}
  if [ -z "$target" ]; then
    [ -n "$BACKUP_COMPOSE" ] || die "set RESTORE_DATABASE"
    target=compose:tapwatch
  fi
  kind=$(kind_of "$target")
  identity=${BACKUP_AGE_IDENTITY:?set BACKUP_AGE_IDENTITY to the age private key file}
  [ -f "$file" ] || die "no backup file $file"
  # age authenticates the whole file: a damaged or altered backup fails here, before anything is touched
  age -d -i "$identity" -o "$WORK/plain" "$file"
  case "$file" in
    *.sqlite.age)
      [ "$kind" = sqlite ] || die "a SQLite backup restores into a sqlite:/// target"
      local path
      path=$(sqlite_path "$target")
      [ ! -e "$path" ] || die "$path exists: restore into a new file, then move it into place with tapwatch stopped"
      [ "$(sqlite3 "$WORK/plain" 'pragma integrity_check')" = ok ] || die "the backup fails SQLite's integrity check"
      mv "$WORK/plain" "$path"
      # Restored as root (sudo, as documented) the store was root's, mode 0600, and tapwatch, running as its own
      # user, could not open it: it takes the owner of the directory it goes into, tapwatch's data dir.
      [ "$(id -u)" != 0 ] || chown --reference="$(dirname "$path")" "$path"
      ;;
    *.pgdump.age)
      [ "$kind" != sqlite ] || die "a PostgreSQL backup restores into PostgreSQL"
      # The backup replaces the store whole: --clean drops only the tables the dump holds, and one a later
      # migration made would stay beside the older alembic_version, so tapwatch died at start making it again.
      psql_at "$target" "DO \$\$ DECLARE t text; BEGIN
        FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
          EXECUTE format('DROP TABLE IF EXISTS public.%I CASCADE', t);
        END LOOP; END \$\$"
      pg pg_restore "$target" --clean --if-exists --no-owner --exit-on-error < "$WORK/plain"
      ;;
    *) die "not a tapwatch backup: $file" ;;
  esac
  echo "restored $file into $(shown "$target")"
}

cmd_drill() {
  local file=${1:-} target expected
  if [ -z "$file" ]; then
    local candidates
    shopt -s nullglob
    candidates=("$BACKUP_DIR"/tapwatch-*.sqlite.age "$BACKUP_DIR"/tapwatch-*.pgdump.age)
    shopt -u nullglob
    [ ${#candidates[@]} -gt 0 ] || die "no backup in $BACKUP_DIR"
    file=$(printf '%s\n' "${candidates[@]}" | sort | tail -n 1)
  fi
  expected="${file%.*.age}.counts"
  [ -f "$expected" ] || die "no row counts $expected recorded with $file"
  if [ -n "${RESTORE_DATABASE:-}" ]; then
    target=$RESTORE_DATABASE
  elif [ -n "$BACKUP_COMPOSE" ]; then
    target=compose:tapwatch_drill
    $BACKUP_COMPOSE exec -T postgres dropdb -U tapwatch --if-exists tapwatch_drill
    $BACKUP_COMPOSE exec -T postgres createdb -U tapwatch tapwatch_drill
  else
    die "set RESTORE_DATABASE to a scratch database for the drill"
  fi
  RESTORE_DATABASE=$target cmd_restore "$file"
  if diff <(sort "$expected") <(counts "$target" | sort); then
    echo "drill passed: $file restores with the row counts it was taken with ($(wc -l < "$expected") tables)"
  else
    die "drill FAILED: the restored row counts differ from those recorded at backup time (above)"
  fi
}

case "${1:-}" in
  backup) cmd_backup ;;
  restore) [ $# -eq 2 ] || die "usage: $0 restore FILE"; cmd_restore "$2" ;;
  drill) cmd_drill "${2:-}" ;;
  counts) counts "${RESTORE_DATABASE:-$(target_of)}" | sort ;;
  *) die "usage: $0 backup | restore FILE | drill [FILE] | counts" ;;
esac

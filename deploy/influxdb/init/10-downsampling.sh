#!/bin/sh
# First start of the influxdb container only (docker-entrypoint-initdb.d): create the downsampled
# buckets and the tasks that fill them. The raw bucket (DOCKER_INFLUXDB_INIT_BUCKET) was created by
# the image's setup with DOCKER_INFLUXDB_INIT_RETENTION. See docs/influx.md.
set -eu
ORG="$DOCKER_INFLUXDB_INIT_ORG"
RAW="$DOCKER_INFLUXDB_INIT_BUCKET"
DAY_OFFSET="${INFLUXDB_DAY_OFFSET:-16h}"  # local midnight at UTC+8 is 16:00 UTC

influx bucket create --org "$ORG" --name "${RAW}_hourly" --retention "${INFLUXDB_HOURLY_RETENTION:-1825d}"
influx bucket create --org "$ORG" --name "${RAW}_daily" --retention "${INFLUXDB_DAILY_RETENTION:-0}"

for task in /tapwatch/tasks/readings_1h.flux /tapwatch/tasks/readings_1d.flux; do
  sed -e "s|{{RAW}}|$RAW|g" -e "s|{{HOURLY}}|${RAW}_hourly|g" -e "s|{{DAILY}}|${RAW}_daily|g" \
      -e "s|{{ORG}}|$ORG|g" -e "s|{{DAY_OFFSET}}|$DAY_OFFSET|g" "$task" > /tmp/task.flux
  influx task create --org "$ORG" --file /tmp/task.flux
done
rm -f /tmp/task.flux

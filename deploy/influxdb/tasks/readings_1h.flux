// Hourly aggregates of half-hourly readings, per meter (tags kept): usage_l (sum of known use),
// readings (how many), total_l (last register value). {{RAW}}, {{HOURLY}} and {{ORG}} are filled in
// by deploy/influxdb/init/10-downsampling.sh.
//
// Each run re-aggregates the last 4 whole hours-aligned days: readings may arrive up to 72 h late
// (TAPWATCH_LATE_WINDOW_HOURS), and writing an hour again overwrites it (same series and time).
import "date"

option task = {name: "tapwatch readings 1h", every: 1h, offset: 5m}

start = date.truncate(t: date.sub(d: 4d, from: now()), unit: 1h)
data =
    from(bucket: "{{RAW}}")
        |> range(start: start)
        |> filter(fn: (r) => r._measurement == "readings")

usage =
    data
        |> filter(fn: (r) => r._field == "usage_l")
        |> aggregateWindow(every: 1h, fn: sum, createEmpty: false, timeSrc: "_start")
count =
    data
        |> filter(fn: (r) => r._field == "total_l")
        |> aggregateWindow(every: 1h, fn: count, createEmpty: false, timeSrc: "_start")
        |> set(key: "_field", value: "readings")
last =
    data
        |> filter(fn: (r) => r._field == "total_l")
        |> aggregateWindow(every: 1h, fn: last, createEmpty: false, timeSrc: "_start")

union(tables: [usage, count, last])
    |> to(bucket: "{{HOURLY}}", org: "{{ORG}}")

// Daily aggregates from the hourly ones, per meter: usage_l and readings summed, total_l last.
// Days are local days: windows start at epoch + {{DAY_OFFSET}} (16h = local midnight at UTC+8,
// the same alignment as the API's daily buckets). Each run redoes the last 5 whole days (late data).
import "date"

option task = {name: "tapwatch readings 1d", every: 1h, offset: 10m}

start = date.add(d: {{DAY_OFFSET}}, to: date.truncate(t: date.sub(d: 6d, from: now()), unit: 1d))
data =
    from(bucket: "{{HOURLY}}")
        |> range(start: start)
        |> filter(fn: (r) => r._measurement == "readings")

sums =
    data
        |> filter(fn: (r) => r._field == "usage_l" or r._field == "readings")
        |> aggregateWindow(every: 1d, offset: {{DAY_OFFSET}}, fn: sum, createEmpty: false, timeSrc: "_start")
last =
    data
        |> filter(fn: (r) => r._field == "total_l")
        |> aggregateWindow(every: 1d, offset: {{DAY_OFFSET}}, fn: last, createEmpty: false, timeSrc: "_start")

union(tables: [sums, last])
    |> to(bucket: "{{DAILY}}", org: "{{ORG}}")

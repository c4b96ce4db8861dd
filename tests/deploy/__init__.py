"""Tests of deploy/ and docker-compose.yml: compose files, backup, broker, proxy, Prometheus rules, docs/deploy.md."""

"""Tests of api/: routes, auth and scoping, hardening, server-sent events, the dashboard (also in headless Chromium)."""

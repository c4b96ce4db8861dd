"""Tests of store/: migrations, behaviour on SQLite and PostgreSQL alike, retention."""

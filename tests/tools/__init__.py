"""Tests of tools/ and bench/ helpers: the import-graph check (tools/check_layers.py) and bench/svgplot.py."""

"""tapwatch: shared vocabulary, settings, storage and the command line.

Data flows ``ingest -> detect -> alerts``; ``api`` reads and steers it. This
package holds only what all of them share (records, settings, the store) and
the wiring that starts them (``tapwatch.cli``, ``tapwatch.service``).
"""

__version__ = "0.1.0"

"""The connectors: one module per source kind (SPEC, snapshot, count_rows, load, settings)."""

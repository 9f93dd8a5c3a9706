"""Phase 1 and 2: connectors that snapshot sources to the evidence store, and the COPY loader."""

"""Phase 3: the dbt runner and the control evidence of each mart."""

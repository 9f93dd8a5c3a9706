"""Phase 4 and 5: the auditor's workbook and the signed audit-log bundle."""

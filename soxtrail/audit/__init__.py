"""The auditor tools: verify, diff, access-as-of, OSCAL and the read-only auditor role."""

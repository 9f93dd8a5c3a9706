"""The kernel: what every layer may import; it imports nothing else of soxtrail."""

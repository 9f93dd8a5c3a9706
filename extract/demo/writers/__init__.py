"""Writers of the demo estate's sources in their real formats, one module per source family."""

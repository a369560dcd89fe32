"""The metrics layer: the catalogue of families, the response encoding, and the exporter's own series."""

"""Site adapters: how to read one city's appointment site (``base.SiteAdapter``), one module per city."""

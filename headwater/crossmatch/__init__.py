"""Cross-matching positions against catalogs and watchlists."""

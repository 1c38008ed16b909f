"""The web tier: `GET /` calls the API tier through one pooled, traced httpx client and renders
the answer."""

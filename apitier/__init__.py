"""The API tier: `GET /` runs span `api-handler` with child `fast-query` and says hello."""

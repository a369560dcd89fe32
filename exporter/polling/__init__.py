"""Polling 8x8: the API client, the records and their fold, rendering, the scraper, and the read of
the webhook registrations."""

"""Ingest: Office 365 Management Activity API → event store. Knows HTTP, tokens, windows and checkpoints;
knows nothing of Streamlit."""

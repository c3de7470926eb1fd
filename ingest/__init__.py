"""Ingest: Microsoft's audit APIs → event store. Three sources, each an API client with a cursor of its own: the
live feed (Management Activity API: api.py, windows.py, sync.py, blobs.py, fanout.py; its cursor in feedstate.py),
the backfill (Microsoft Graph audit log queries: auditquery.py; its cursor in backfill.py) and the workspace (a Log
Analytics workspace that Microsoft Sentinel fills: workspace.py, API, mapping and cursor). They share the connection
rules (api.ApiClient), the one normalization (normalize.py) and the store's `store_events` (deduped on the record
Id); status.py says what each has done. Knows nothing of Streamlit."""

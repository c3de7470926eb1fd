"""Detections: the leads the rules find in the dashboard's index (leads.py, rules as data in rules.toml) and the
incidents that join them into one investigation each (incidents.py). No Streamlit here: the dashboard's pages, its
command line and the benchmarks all use the same engine.

The index (dashboard.index.ActivityIndex) is read through `index.sql(...)` only, over two tables:
- `ev`: one row per stored event — ts (UTC, naive), seq (its position in the store), user_id, client_ip, operation,
  workload, content_type, record_type, result_status, object_id, application, user_agent, site_url, file_name;
- `places`: client_ip → country, owner, asn, lat, lon (where an address is, from the IP sources).
The original records (for a rule's details) come from the store by position."""

"""The Streamlit dashboard: reads the event store through an in-memory index; never writes events."""

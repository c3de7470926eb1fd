"""The Streamlit dashboard: reads the event store through its on-disk index; never writes events."""

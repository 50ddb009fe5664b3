"""Prediction beyond one photo: many photos to a CSV or JSON lines file (batch) and the JSON summary of a
prediction that the API and MCP tools return (summary)."""

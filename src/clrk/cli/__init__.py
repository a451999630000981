"""The clrk command line."""

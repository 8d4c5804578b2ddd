"""`atlas report`: the evidence an auditor asks for, read from the catalog."""

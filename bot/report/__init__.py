"""What Atlas says: Slack messages and their Block Kit, and the terminal's rendering."""

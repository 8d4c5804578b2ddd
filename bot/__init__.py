"""Atlas: PostgreSQL backups that are proven to restore, run from Slack and a CLI."""

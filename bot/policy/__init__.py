"""Pure decisions, values in and values out: approvals, retention, reminders, rotation, access."""

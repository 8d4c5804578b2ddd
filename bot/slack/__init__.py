"""The Slack layer: Bolt, the HTTP endpoint, the Web API client and its checks."""

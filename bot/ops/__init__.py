"""Running Atlas: the schedule, housekeeping, status, doctor, metrics, provider checks."""

"""Cron: expressions (croniter and a policy layer), the scheduler, the runner's cron API."""

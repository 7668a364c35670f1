"""Polling triggers: the `@trigger` declaration, the poller and its dedup, the runner's trigger API."""

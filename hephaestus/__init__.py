"""Hephaestus: an asyncio workflow runner with built-in telemetry."""

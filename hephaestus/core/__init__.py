"""The pure core: steps, workflows, instances and the engine. No I/O, no clock, no asyncio."""

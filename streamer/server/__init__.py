"""The aiohttp server: routes, wire protocol, metrics."""

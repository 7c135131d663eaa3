"""The aiohttp API: the application factory and one module per resource."""

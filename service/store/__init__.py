"""SQL, one module per aggregate: `async def fn(conn, ...)` with the SQL beside it."""

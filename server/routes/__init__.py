"""One module per resource; each route parses, calls one function, returns a schema."""
